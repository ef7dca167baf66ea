"""Searching every store for plaintext: what `herald gdpr verify` runs after an erasure.

Each search looks for the given strings as bytes, the way they would sit in the store if
anything had kept them readable: in the event store's raw rows (events and metadata), in
every column of every SQL table, in every Redis key name and value, in every message of
every Kafka topic (key, value and headers), and in files (Parquet files are read, since
their pages are compressed; everything else is searched as it lies on disk).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from psycopg import sql

Progress = Callable[[str, int], None]  # (what, how many searched so far)
TEXT_TYPES = ("text", "character varying", "jsonb", "json", "ARRAY", "USER-DEFINED")
CHUNK = 1024 * 1024
SHOWN = 5  # places a finding lists


def _quiet(_what: str, _count: int) -> None:
    return None


@dataclass(frozen=True)
class Finding:
    store: str  # event store, sql, redis, kafka, files
    where: str  # a table and column, a key, a topic partition and offset, a file
    count: int  # how many rows, values or messages there


class Search:
    def __init__(self, needles: Iterable[str], progress: Progress = _quiet) -> None:
        self.needles = sorted({n for n in needles if n})
        self._bytes = [n.encode() for n in self.needles]
        self._progress = progress

    def holds(self, data: bytes) -> bool:
        return any(needle in data for needle in self._bytes)

    # PostgreSQL

    def event_store(self, conn: psycopg.Connection[Any]) -> list[Finding]:
        """Events and their metadata as stored: bytes, whatever they encode."""
        found = []
        for needle in self._bytes:
            rows = conn.execute(
                "SELECT originator_id, originator_version FROM stored_events"
                " WHERE position(%s::bytea IN state) > 0"
                " OR position(%s::bytea IN coalesce(meta, ''::bytea)) > 0",
                (needle, needle),
            ).fetchall()
            found += [Finding("event store", f"event {r[0]} v{r[1]}", 1) for r in rows]
        self._progress("event store", 1)
        return found

    def sql(self, conn: psycopg.Connection[Any]) -> list[Finding]:
        """Every column of every table but the event store's, as text (bytea as bytes)."""
        columns = conn.execute(
            "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
            " AND c.table_name <> 'stored_events' ORDER BY 1, 2"
        ).fetchall()
        patterns = [f"%{_like_escaped(n)}%" for n in self.needles]
        found = []
        for searched, (table, column, kind) in enumerate(columns, start=1):
            name = sql.Identifier(column)
            if kind == "bytea":
                test = sql.SQL(" OR ").join(
                    sql.SQL("position({} IN {}) > 0").format(sql.Literal(b), name)
                    for b in self._bytes
                )
            elif kind in TEXT_TYPES:
                test = sql.SQL("{}::text LIKE ANY({})").format(name, sql.Literal(patterns))
            else:
                continue
            query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(sql.Identifier(table), test)
            row = conn.execute(query).fetchone()
            if row and row[0]:
                found.append(Finding("sql", f"{table}.{column}", int(row[0])))
            self._progress("sql", searched)
        return found

    # Redis

    def redis(self, client: redis.Redis) -> list[Finding]:
        """Every key's name and value, whatever its type."""
        found: dict[str, int] = {}
        for searched, key in enumerate(client.scan_iter(count=1000), start=1):
            if self.holds(key) or any(self.holds(v) for v in _redis_values(client, key)):
                prefix = key.decode(errors="replace").rsplit(":", 1)[0]
                found[prefix] = found.get(prefix, 0) + 1
            if searched % 1000 == 0:
                self._progress("redis", searched)
        return [Finding("redis", f"{prefix}:*", n) for prefix, n in sorted(found.items())]

    # Kafka

    def kafka(self, bootstrap: str) -> list[Finding]:
        """Every message of every topic (internal ones aside), from its start to its end."""
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = sorted(t for t in admin.list_topics(timeout=10).topics if not t.startswith("__"))
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"herald-gdpr-verify-{os.getpid()}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        found: dict[str, int] = {}
        searched = 0
        try:
            for topic in topics:
                for hit in self._topic(consumer, topic):
                    found[hit] = found.get(hit, 0) + 1
                    searched += 1
                searched += 1
                self._progress("kafka", searched)
        finally:
            consumer.close()
        return [Finding("kafka", where, n) for where, n in sorted(found.items())]

    def _topic(self, consumer: Consumer, topic: str) -> Iterator[str]:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends: dict[int, int] = {}
        assigned = []
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                ends[partition] = high
                assigned.append(TopicPartition(topic, partition, low))
        if not assigned:
            return
        consumer.assign(assigned)
        left = set(ends)
        while left:
            message = consumer.poll(5.0)
            if message is None:
                break  # nothing more within the wait: what was there has been read
            partition, offset = message.partition() or 0, message.offset() or 0
            if message.error():
                left.discard(partition)  # the partition's end (EOF) or an error: done with it
                continue
            parts: list[Any] = [message.value(), message.key()]
            headers: list[Any] = list(message.headers() or [])
            parts += [header[1] for header in headers]
            if any(isinstance(p, bytes | str) and self.holds(_as_bytes(p)) for p in parts):
                yield f"{topic}[{partition}]"
            if offset + 1 >= ends[partition]:
                left.discard(partition)
        consumer.unassign()

    # Files

    def files(self, roots: Iterable[Path]) -> list[Finding]:
        found = []
        searched = 0
        for root in roots:
            for file in _walk(root):
                searched += 1
                if self._file_holds(file):
                    found.append(Finding("files", str(file), 1))
                self._progress("files", searched)
        return found

    def _file_holds(self, file: Path) -> bool:
        if file.suffix == ".parquet":
            try:
                table = pq.read_table(file)
            except (OSError, ValueError):
                pass  # not Parquet after all (or half written): searched as bytes below
            else:
                return any(
                    isinstance(value, str | bytes) and self.holds(_as_bytes(value))
                    for column in table.columns
                    for value in column.to_pylist()
                )
        overlap = max((len(b) for b in self._bytes), default=1) - 1
        tail = b""
        with file.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                if self.holds(tail + chunk):
                    return True
                tail = chunk[-overlap:] if overlap else b""
        return False


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _walk(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
    elif root.is_dir():
        for directory, _, names in os.walk(root):
            for name in sorted(names):
                path = Path(directory) / name
                if path.is_file() and not path.is_symlink():
                    yield path


def _redis_values(client: redis.Redis, key: bytes) -> list[bytes]:
    kind = client.type(key)
    reader = _READERS.get(kind.decode() if isinstance(kind, bytes) else str(kind))
    return [v for v in reader(client, key) if isinstance(v, bytes)] if reader else []


def _stream(client: redis.Redis, key: bytes) -> list[Any]:
    entries: list[Any] = client.xrange(key) or []
    return [part for _, fields in entries for pair in fields.items() for part in pair]


_READERS: dict[str, Callable[[redis.Redis, bytes], Iterable[Any]]] = {
    "string": lambda client, key: [client.get(key)],
    "hash": lambda client, key: [part for pair in client.hgetall(key).items() for part in pair],
    "zset": lambda client, key: client.zrange(key, 0, -1),
    "set": lambda client, key: client.smembers(key),
    "list": lambda client, key: client.lrange(key, 0, -1),
    "stream": _stream,
}


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
