"""Sealing one personal field under its subject's data key, as text.

A sealed field is `PREFIX` then URL-safe base64 of: the data key's id (16 bytes), a nonce
(12), and the AES-256-GCM ciphertext with its tag. It stays a string, so events keep their
shape; the key id inside says which key opens it. A field whose key was destroyed opens to
`ERASED`, never an error: replays, exports and archives carry on around erased subjects.
"""

from __future__ import annotations

import base64
import binascii
import os
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "\x1bhx1:"  # ESC first: no address and no sane text starts so
ERASED = "[erased]"
_NONCE = 12
_ID = 16


class SealedFieldError(Exception):
    """A sealed field is damaged: its ciphertext does not open under its own key."""


class DataKey:
    """A subject's data key, ready to seal and open, named by its id's 16 bytes (the
    associated data of everything sealed under it)."""

    __slots__ = ("aead", "raw_id")

    def __init__(self, key_id: UUID | bytes, aead: AESGCM) -> None:
        self.raw_id = key_id if isinstance(key_id, bytes) else key_id.bytes
        self.aead = aead

    @property
    def key_id(self) -> UUID:
        return UUID(bytes=self.raw_id)


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def seal(key: DataKey, plaintext: str) -> str:
    nonce = os.urandom(_NONCE)
    body = key.aead.encrypt(nonce, plaintext.encode(), key.raw_id)
    raw = key.raw_id + nonce + body
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def key_id_of(value: str) -> UUID | None:
    """The id of the key that opens `value`; None when it is not sealed."""
    if not value.startswith(PREFIX):
        return None
    return UUID(bytes=_raw(value)[:_ID])


def open_sealed(key: DataKey | None, value: str) -> str:
    """The plaintext of `value` (as it is, when not sealed); ERASED when its key is gone."""
    if not value.startswith(PREFIX):
        return value
    return open_raw(key, raw_of(value))


def raw_of(value: str) -> bytes:
    """The bytes of a sealed field: the key's id (its first 16 bytes), nonce, ciphertext."""
    return _raw(value)


def open_raw(key: DataKey | None, raw: bytes) -> str:
    """The plaintext of a sealed field's bytes; ERASED when its key is gone."""
    if key is None:
        return ERASED
    key_id, nonce, body = raw[:_ID], raw[_ID : _ID + _NONCE], raw[_ID + _NONCE :]
    if key_id != key.raw_id:
        raise SealedFieldError(f"sealed under key {UUID(bytes=key_id)}, not {key.key_id}")
    try:
        return key.aead.decrypt(nonce, body, key_id).decode()
    except InvalidTag:
        raise SealedFieldError(f"a field sealed under key {key.key_id} does not open") from None


def _raw(value: str) -> bytes:
    text = value[len(PREFIX) :]
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SealedFieldError("a sealed field is not base64") from None
