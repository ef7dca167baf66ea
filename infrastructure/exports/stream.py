"""What an export is asked for (`ExportSpec`), what it yields (`ExportStream`: its bytes, and
once they are all out, their count, size and SHA-256), and the manifest that describes a file."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Literal

import msgspec

from infrastructure.exports.formats import Format

Kind = Literal["notifications", "events", "audit-logs"]
KINDS: tuple[Kind, ...] = ("notifications", "events", "audit-logs")


class ExportSpec(msgspec.Struct, frozen=True, kw_only=True):
    kind: Kind
    format: Format
    tenant: str
    start: datetime | None = None  # `from`: rows at or after, by their time
    end: datetime | None = None  # `to`: rows before
    status: str | None = None  # notifications
    channel: str | None = None  # notifications
    action: str | None = None  # audit logs
    actor: str | None = None  # audit logs
    position: int | None = None  # the log position to export at; None: the latest reached
    include_archived: bool = False

    def filters(self) -> dict[str, str]:
        """The filters given, as text, for manifests and the audit trail."""
        chosen = {
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "status": self.status,
            "channel": self.channel,
            "action": self.action,
            "actor": self.actor,
            "include_archived": "true" if self.include_archived else None,
        }
        return {name: value for name, value in chosen.items() if value is not None}


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    kind: Kind
    format: Format
    tenant: str
    position: int  # the read model exactly as of this log position
    filters: dict[str, str]
    rows: int
    bytes: int
    sha256: str


class ExportStream:
    """The bytes of one export, read once. `rows` comes from `count_rows`, asked when the
    last chunk is out; `close` releases whatever the export holds (a transaction)."""

    def __init__(
        self,
        spec: ExportSpec,
        position: int,
        chunks: Iterator[bytes],
        count_rows: Callable[[], int],
        close: Callable[[], None],
    ) -> None:
        self.spec = spec
        self.position = position
        self._chunks = chunks
        self._count_rows = count_rows
        self._close = close
        self._hash = hashlib.sha256()
        self.bytes = 0
        self.rows: int | None = None  # known once every chunk is out

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._chunks:
                self._hash.update(chunk)
                self.bytes += len(chunk)
                yield chunk
            self.rows = self._count_rows()
        finally:
            self.close()

    def close(self) -> None:
        self._close()

    @property
    def complete(self) -> bool:
        return self.rows is not None

    def manifest(self) -> Manifest:
        if self.rows is None:
            raise RuntimeError("the export has not been read to its end")
        return Manifest(
            kind=self.spec.kind,
            format=self.spec.format,
            tenant=self.spec.tenant,
            position=self.position,
            filters=self.spec.filters(),
            rows=self.rows,
            bytes=self.bytes,
            sha256=self._hash.hexdigest(),
        )


class PositionNotReachedError(Exception):
    """The export asked for a log position its read model has not reached yet."""

    def __init__(self, asked: int, reached: int) -> None:
        self.asked, self.reached = asked, reached
        super().__init__(f"the read model reflects the log up to {reached}, not yet {asked}")
