"""The formats an export is written in, and the pieces that turn rows into their bytes.

CSV and NDJSON come straight from PostgreSQL (`COPY ... TO STDOUT`), which formats rows
faster than Python can; a JSON array is NDJSON with its line breaks turned into commas;
Parquet is built here with pyarrow, a row group at a time, so memory stays flat however many
rows there are. The same rows always give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

Format = Literal["csv", "ndjson", "json", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "ndjson", "json", "parquet")
# Without parameters: litestar adds "; charset=utf-8" to every text/* type itself.
CONTENT_TYPES: dict[Format, str] = {
    "csv": "text/csv",
    "ndjson": "application/x-ndjson",
    "json": "application/json",
    "parquet": "application/vnd.apache.parquet",
}
ROW_GROUP = 50_000  # Parquet rows per group: the most an export holds in memory at once


def json_array(lines: Iterable[bytes]) -> Iterator[bytes]:
    """NDJSON chunks (each line a JSON value) as one JSON array, streamed."""
    yield b"["
    pending = b""
    first = True
    for chunk in lines:
        data = pending + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            pending = data
            continue
        complete, pending = data[:cut], data[cut + 1 :]
        body = complete.replace(b"\n", b",\n")
        yield body if first else b",\n" + body
        first = False
    if pending:
        yield pending if first else b",\n" + pending
    yield b"]\n"


class _Sink(io.RawIOBase):
    """Where pyarrow writes; the bytes are taken out as they come."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        taken, self._parts = b"".join(self._parts), []
        return taken


def parquet(schema: pa.Schema, batches: Iterable[Sequence[Sequence[Any]]]) -> Iterator[bytes]:
    """Rows (in batches of tuples, in `schema`'s column order) as a Parquet file, streamed."""
    sink = _Sink()
    # No creation time or other run-dependent metadata: the same rows give the same file.
    writer = pq.ParquetWriter(sink, schema, compression="zstd", write_statistics=True)
    names = schema.names
    try:
        for rows in batches:
            columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
            table = pa.Table.from_arrays(
                [pa.array(column, type=schema.field(i).type) for i, column in enumerate(columns)],
                schema=schema,
            )
            writer.write_table(table, row_group_size=ROW_GROUP)
            if chunk := sink.take():
                yield chunk
    finally:
        writer.close()
    if chunk := sink.take():
        yield chunk
