"""The master key: it wraps every data key, and nothing else.

`MasterKey` is the small interface a KMS can implement instead (wrap and unwrap a data key,
bound to a context). `LocalMasterKey` keeps the key in the process, from HERALD_MASTER_KEY.
`MasterKeys` wraps with the current key and unwraps with whichever key wrapped the data key,
so that after a rotation (the old key moved to HERALD_MASTER_KEY_PREVIOUS) everything still
opens. Data keys stay wrapped by the key that made them: retire an old master key only once
no data key needs it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12


class MasterKeyError(Exception):
    """A data key cannot be unwrapped: the master key that wrapped it is not configured, or
    the one configured under its id is not the same key."""


class MasterKey(Protocol):
    @property
    def key_id(self) -> str: ...

    def wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


class LocalMasterKey:
    """AES-256-GCM under a key held in this process; the context is authenticated, so a
    wrapped key only opens for the subject it was made for."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise ValueError(f"a master key is {KEY_BYTES} bytes, not {len(secret)}")
        self._aead = AESGCM(secret)
        # Names the key without revealing it: which master key wrapped a data key.
        self._key_id = hashlib.sha256(b"herald master key\x00" + secret).hexdigest()[:16]

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context)
        except InvalidTag:
            raise MasterKeyError(f"master key {self._key_id} does not open this data key") from None


class MasterKeys:
    """The current master key, and the previous ones still accepted for unwrapping."""

    def __init__(self, current: MasterKey, previous: Sequence[MasterKey] = ()) -> None:
        self.current = current
        self._by_id = {key.key_id: key for key in (*previous, current)}

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]:
        """The data key wrapped by the current master key, and that key's id."""
        return self.current.key_id, self.current.wrap(data_key, context)

    def unwrap(self, master_key_id: str, wrapped: bytes, context: bytes) -> bytes:
        key = self._by_id.get(master_key_id)
        if key is None:
            raise MasterKeyError(
                f"the data key was wrapped by master key {master_key_id}, which is neither "
                "HERALD_MASTER_KEY nor one of HERALD_MASTER_KEY_PREVIOUS"
            )
        return key.unwrap(wrapped, context)


def parse_master_key(text: str) -> bytes:
    """A master key from its base64 text (standard or URL-safe, padded or not); ValueError
    saying what is wrong."""
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError):
        raise ValueError("is not base64") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"must be {KEY_BYTES} bytes of base64 ({len(raw)} given)")
    return raw


def generate_master_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode().rstrip("=")


def master_keys(current: str, previous: str | None) -> MasterKeys:
    """The master keys from the settings' texts (previous: comma-separated)."""
    older = [p for p in (previous or "").split(",") if p.strip()]
    return MasterKeys(
        LocalMasterKey(parse_master_key(current)),
        [LocalMasterKey(parse_master_key(p)) for p in older],
    )
