"""The events export: a tenant's notification events up to a position, decoded for people.

The events are stored as msgpack, which PostgreSQL cannot read, so these rows are decoded
and formatted here, a batch at a time: position, stream, version, type, schema version,
time, and the event's data as JSON.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import psycopg
import pyarrow as pa

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import EVENTS_TABLE
from infrastructure.exports.formats import json_array, parquet
from infrastructure.exports.stream import ExportSpec
from projections.exports.render import BATCH, TIMESTAMP

NAMES = ("position", "stream_id", "version", "type", "schema_version", "at", "data")
SCHEMA = pa.schema(
    [
        ("position", pa.int64()),
        ("stream_id", pa.string()),
        ("version", pa.int64()),
        ("type", pa.string()),
        ("schema_version", pa.int64()),
        ("at", TIMESTAMP),
        ("data", pa.string()),
    ]
)
_EVENTS = (
    "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state"  # noqa: S608
    f" FROM {EVENTS_TABLE} e JOIN notification_view v"
    " ON v.notification_id = e.originator_id AND v.tenant_id = %s"
    " WHERE e.notification_id <= %s AND v.created_position <= %s ORDER BY e.notification_id"
)
_json = msgspec.json.Encoder()

Row = tuple[int, str, int, str, int, Any, str]


def event_chunks(
    conn: psycopg.Connection[Any], codec: EventCodec, spec: ExportSpec, position: int
) -> tuple[Iterator[bytes], Callable[[], int]]:
    counted: list[int] = []
    batches = _batches(conn, codec, spec, position, counted)
    if spec.format == "parquet":
        return parquet(SCHEMA, batches), lambda: sum(counted)
    if spec.format == "csv":
        return _csv(batches), lambda: sum(counted)
    lines = (
        b"".join(_json.encode(dict(zip(NAMES, row, strict=True))) + b"\n" for row in rows)
        for rows in batches
    )
    return (json_array(lines) if spec.format == "json" else lines), lambda: sum(counted)


def _batches(
    conn: psycopg.Connection[Any],
    codec: EventCodec,
    spec: ExportSpec,
    position: int,
    counted: list[int],
) -> Iterator[list[Row]]:
    with conn.cursor(name="herald_export_events") as cursor:
        cursor.execute(_EVENTS, (spec.tenant, position, position), binary=True)
        while fetched := cursor.fetchmany(BATCH):
            rows: list[Row] = []
            events = codec.decode_many([(topic, bytes(state)) for *_, topic, state in fetched])
            for (at_position, stream_id, version, topic, _), event in zip(
                fetched, events, strict=True
            ):
                if spec.start is not None and event.at < spec.start:
                    continue
                if spec.end is not None and event.at >= spec.end:
                    continue
                name, _, schema = topic.partition("@")
                data = _json.encode(msgspec.to_builtins(event)).decode()
                rows.append(
                    (at_position, str(stream_id), version, name, int(schema or 1), event.at, data)
                )
            counted.append(len(rows))
            if rows:
                yield rows


def _csv(batches: Iterator[list[Row]]) -> Iterator[bytes]:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(NAMES)
    for rows in batches:
        writer.writerows(
            (p, s, v, t, sv, at.isoformat(), data) for p, s, v, t, sv, at, data in rows
        )
        yield text.getvalue().encode()
        text.seek(0)
        text.truncate()
    if text.tell():
        yield text.getvalue().encode()
