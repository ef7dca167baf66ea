"""Turning one SELECT, inside an export's snapshot, into the bytes of its format.

CSV and NDJSON are PostgreSQL's own `COPY ... TO STDOUT`; a JSON array is NDJSON with commas;
Parquet is fetched through a server-side cursor, a batch at a time, and built with pyarrow.
Rows come in the SELECT's order; none is held in memory longer than its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from infrastructure.exports.formats import Format, json_array, parquet

BATCH = 10_000  # rows a Parquet or events batch fetches at once
CHUNK = 1024 * 1024  # bytes a COPY chunk gathers before it goes out
TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Column:
    name: str  # as the export names it
    expression: str  # SQL over the source's columns
    type: pa.DataType


def rendered(
    conn: psycopg.Connection[Any],
    fmt: Format,
    columns: Sequence[Column],
    source: sql.Composed | sql.SQL,
    *,
    params: dict[str, Any],
    order: str,
) -> tuple[Iterator[bytes], Callable[[], int]]:
    """The bytes of `SELECT columns FROM (source) ORDER BY order` in `fmt`, and how to learn
    the row count once they are all out."""
    select = sql.SQL("SELECT {} FROM ({}) AS source ORDER BY {}").format(
        sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(sql.SQL(c.expression), sql.Identifier(c.name))
            for c in columns
        ),
        source,
        sql.SQL(order),
    )
    counted: list[int] = []
    if fmt == "parquet":
        schema = pa.schema([(c.name, c.type) for c in columns])
        return parquet(schema, _batches(conn, select, params, counted)), lambda: sum(counted)
    if fmt == "csv":
        statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(select)
    else:
        # One JSON object a line. CSV format with a delimiter and a quote character that JSON
        # never contains raw (it escapes control characters) writes each line as it is;
        # COPY's text format would double every backslash.
        statement = sql.SQL(
            "COPY (SELECT row_to_json(row) FROM ({}) AS row) TO STDOUT"
            " WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"
        ).format(select)
    chunks = _copied(conn, statement, params, counted)
    if fmt == "json":
        chunks = json_array(chunks)
    return chunks, lambda: sum(counted)


def _copied(
    conn: psycopg.Connection[Any],
    statement: sql.Composed,
    params: dict[str, Any],
    counted: list[int],
) -> Iterator[bytes]:
    # COPY hands over a row at a time; each chunk costs the HTTP side a thread hop and a
    # send, so rows go out in chunks of about CHUNK bytes.
    with conn.cursor() as cursor:
        with cursor.copy(statement, params) as copy:
            pending: list[bytes] = []
            size = 0
            for data in copy:
                pending.append(bytes(data))
                size += len(data)
                if size >= CHUNK:
                    yield b"".join(pending)
                    pending, size = [], 0
            if pending:
                yield b"".join(pending)
        counted.append(cursor.rowcount)  # COPY's own count, known once it has ended


def _batches(
    conn: psycopg.Connection[Any],
    select: sql.Composed,
    params: dict[str, Any],
    counted: list[int],
) -> Iterator[list[tuple[Any, ...]]]:
    with conn.cursor(name="herald_export") as cursor:
        cursor.execute(select, params)
        while rows := cursor.fetchmany(BATCH):
            counted.append(len(rows))
            yield rows
