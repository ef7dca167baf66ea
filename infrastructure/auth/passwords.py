"""bcrypt password hashing, with a constant-time answer for accounts that do not exist."""

from __future__ import annotations

import bcrypt


class PasswordHasher:
    def __init__(self, rounds: int) -> None:
        self._rounds = rounds
        self._dummy: bytes | None = None

    def hash(self, password: str) -> str:
        return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(self._rounds)).decode()

    def verify(self, password: str, hashed: str | None) -> bool:
        """Check `password` against `hashed`; with no hash, spend the same time and say no.

        Running bcrypt against a dummy hash when the account is unknown keeps a login for a
        missing email as slow as a wrong password, so timing does not reveal which emails exist.
        """
        target = hashed.encode() if hashed else self._dummy_hash()
        try:
            matches = bcrypt.checkpw(password.encode("utf-8"), target)
        except ValueError:  # longer than bcrypt's 72 bytes: never a valid password here
            bcrypt.checkpw(b"", target)
            matches = False
        return matches and hashed is not None

    def _dummy_hash(self) -> bytes:
        if self._dummy is None:
            self._dummy = bcrypt.hashpw(
                b"no account has this password", bcrypt.gensalt(self._rounds)
            )
        return self._dummy
