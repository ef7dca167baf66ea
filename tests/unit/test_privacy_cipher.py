"""The cipher and the master keys, without servers: round trips, tampering, wrong keys and
rotation."""

from __future__ import annotations

import os
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from infrastructure.privacy.cipher import (
    ERASED,
    DataKey,
    SealedFieldError,
    is_sealed,
    key_id_of,
    open_sealed,
    seal,
)
from infrastructure.privacy.master import (
    KEY_BYTES,
    LocalMasterKey,
    MasterKeyError,
    MasterKeys,
    generate_master_key,
    master_keys,
    parse_master_key,
)


def _key() -> DataKey:
    return DataKey(uuid.uuid4(), AESGCM(os.urandom(KEY_BYTES)))


@given(st.text())
def test_a_sealed_field_opens_to_what_was_sealed_and_shows_none_of_it(plaintext: str) -> None:
    key = _key()
    sealed = seal(key, plaintext)
    assert is_sealed(sealed)
    assert key_id_of(sealed) == key.key_id
    assert open_sealed(key, sealed) == plaintext
    if len(plaintext) >= 4:
        assert plaintext not in sealed
    assert seal(key, plaintext) != sealed  # a fresh nonce each time


def test_a_field_whose_key_is_gone_opens_to_the_placeholder_and_plain_text_stays() -> None:
    sealed = seal(_key(), "ada@example.com")
    assert open_sealed(None, sealed) == ERASED
    assert open_sealed(None, "not sealed") == "not sealed"
    assert key_id_of("not sealed") is None


def test_a_damaged_or_misdirected_field_is_an_error_not_a_wrong_answer() -> None:
    key = _key()
    sealed = seal(key, "hello there")
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealedFieldError):
        open_sealed(key, tampered)
    with pytest.raises(SealedFieldError, match="sealed under key"):
        open_sealed(_key(), sealed)


def test_a_wrong_master_key_is_refused() -> None:
    right, wrong = LocalMasterKey(os.urandom(32)), LocalMasterKey(os.urandom(32))
    wrapped = right.wrap(b"k" * 32, b"context")
    with pytest.raises(MasterKeyError):
        wrong.unwrap(wrapped, b"context")
    with pytest.raises(MasterKeyError):
        right.unwrap(wrapped, b"another context")
    keys = MasterKeys(wrong)
    with pytest.raises(MasterKeyError, match="neither HERALD_MASTER_KEY"):
        keys.unwrap(right.key_id, wrapped, b"context")


def test_after_a_rotation_keys_wrapped_by_the_previous_master_key_still_open() -> None:
    old, new = generate_master_key(), generate_master_key()
    before = master_keys(old, None)
    key_id, wrapped = before.wrap(b"d" * 32, b"ctx")
    after = master_keys(new, old)
    assert after.unwrap(key_id, wrapped, b"ctx") == b"d" * 32
    assert after.wrap(b"d" * 32, b"ctx")[0] == after.current.key_id != key_id


@pytest.mark.parametrize(
    ("text", "why"),
    [("not base64!!", "not base64"), ("c2hvcnQ", "must be 32 bytes")],
)
def test_a_master_key_that_is_not_32_bytes_of_base64_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_master_key(text)
    assert len(parse_master_key(generate_master_key())) == KEY_BYTES
