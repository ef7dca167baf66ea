"""Data keys made in this process whose rows are not stored yet.

Sealing makes a subject's key where it first needs one, with no I/O. The key's row is
stored in the transaction that stores the first events sealed under it, so no stored event
names a key that is not stored. Until such a transaction commits, every commit of events
sealed under the key carries its row. A transaction claims the rows it writes, so that no
two write the same row at once, and settles them when it ends: stored, or left for the next.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import NamedTuple


class KeyRow(NamedTuple):
    """A data key made here, as `subject_keys` stores it."""

    raw_id: bytes  # the key's id, 16 bytes
    tenant_id: str
    subject_kind: str
    subject_hash: bytes
    wrapped: bytes
    master_key_id: str


KEY_COLUMNS = "key_id, tenant_id, subject_kind, subject_hash, wrapped, master_key_id"
# Binary COPY sends a uuid as its 16 bytes, which is how it sends a bytea: the raw id goes as
# it is, without building a UUID object per key.
KEY_COPY_TYPES = ["bytea", "text", "text", "bytea", "bytea", "text"]


class MadeKeys:
    def __init__(self) -> None:
        self._rows: dict[bytes, KeyRow] = {}
        self._claimed: set[bytes] = set()
        self._settled = threading.Condition()

    def add(self, row: KeyRow) -> None:
        self._rows[row.raw_id] = row

    def __contains__(self, raw_id: bytes) -> bool:
        return raw_id in self._rows

    def claim(self, raw_ids: Iterable[bytes]) -> tuple[list[KeyRow], bool]:
        """The rows among `raw_ids` still to be stored, now the caller's to write; and
        whether others among them are being written by another transaction (then settle
        these, wait for that one, and claim again)."""
        rows = []
        busy = False
        with self._settled:
            for raw_id in raw_ids:
                row = self._rows.get(raw_id)
                if row is None:
                    continue
                if raw_id in self._claimed:
                    busy = True
                    continue
                self._claimed.add(raw_id)
                rows.append(row)
        return rows, busy

    def settle(self, rows: Iterable[KeyRow], stored: bool) -> None:
        """The transaction that claimed `rows` ended: committed (`stored`) or not."""
        with self._settled:
            for row in rows:
                self._claimed.discard(row.raw_id)
                if stored:
                    self._rows.pop(row.raw_id, None)
            self._settled.notify_all()

    def wait(self, timeout_s: float) -> None:
        """Until some transaction settles its claim (or `timeout_s`)."""
        with self._settled:
            self._settled.wait(timeout_s)

    def forget(self, tenant_id: str, kind: str, subject_hash: bytes) -> list[bytes]:
        """Drop the subject's keys not stored yet (its keys are being destroyed): events
        sealed under them read as erased. Returns their ids."""
        name = (tenant_id, kind, subject_hash)
        with self._settled:
            gone = [r for r, row in self._rows.items() if row[1:4] == name]
            for raw_id in gone:
                del self._rows[raw_id]
        return gone
