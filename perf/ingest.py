"""`python -m perf ingest`: notifications per second accepted through POST /notifications/batch,
1,000 per request, against a raw binary COPY of the same rows into a bare table, and into a
table shaped like stored_events (its primary key and position index), in the same run."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Any

import httpx
import msgspec
import psycopg

from commands.notifications import handlers
from commands.notifications.http import BatchRequest, _command
from domain.identity.roles import Role
from infrastructure.auth.principal import Principal
from infrastructure.eventstore import catalog
from infrastructure.eventstore.writer import GroupCommitWriter, StreamAppend
from infrastructure.settings import Settings
from perf.harness import http_process, machine, sender_token, servers

PER_REQUEST = 1000
IN_FLIGHT = 4
COPY_ROWS_PER_TRANSACTION = 5000
_BATCH = msgspec.json.Decoder(BatchRequest)
TARGETS = {"notifications_per_s": 50_000, "ratio": 0.7}


def _batch(offset: int) -> list[dict[str, Any]]:
    return [
        {
            "channel": "email",
            "recipient": f"user{offset + i}@example.com",
            "subject": "Your weekly digest",
            "body": "Three things happened this week. Here they are, briefly.",
            "metadata": {"campaign": "digest"},
        }
        for i in range(PER_REQUEST)
    ]


async def _post_all(url: str, token: str, bodies: list[bytes]) -> float:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    queue = list(bodies)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:

        async def worker() -> None:
            while queue:
                response = await client.post(
                    "/notifications/batch", content=queue.pop(), headers=headers
                )
                if response.status_code != 202:
                    raise RuntimeError(f"batch refused: {response.status_code} {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        return time.perf_counter() - started


def _prepare(body: bytes) -> tuple[list[StreamAppend], list[tuple[uuid.UUID, int, str, bytes]]]:
    """What the API does with a batch before writing: decode, validate, decide, encode."""
    codec = catalog.codec()
    principal = Principal(
        subject="perf", tenant_id="perf", roles=frozenset({Role.SENDER}), kind="user"
    )
    requests = _BATCH.decode(body).notifications
    plan = handlers.plan_batch([_command(r, principal, None, None) for r in requests])
    rows = []
    for append in plan.appends:
        for version, event in enumerate(append.events, start=1):
            topic, state = codec.encode(event)
            rows.append((append.stream_id, version, topic, state))
    return plan.appends, rows


_BARE_TABLE = (
    "CREATE TABLE IF NOT EXISTS perf_raw_copy (originator_id uuid, originator_version bigint,"
    " topic text, state bytea)"
)
# stored_events' own shape: its primary key, its unique position index (from a sequence of
# its own here) and its defaults, so that the COPY pays for what every append pays for.
_INDEXED_TABLE = (
    "CREATE TABLE IF NOT EXISTS perf_indexed_copy (LIKE stored_events INCLUDING ALL);"
    " CREATE SEQUENCE IF NOT EXISTS perf_indexed_copy_position;"
    " ALTER TABLE perf_indexed_copy ALTER COLUMN notification_id"
    " SET DEFAULT nextval('perf_indexed_copy_position')"
)


def _raw_copy(
    database_url: str, rows: list[tuple[uuid.UUID, int, str, bytes]], *, indexed: bool
) -> float:
    """COPY of the same rows, 5,000 per transaction: into a bare table, or an `indexed` one
    shaped like stored_events."""
    table = "perf_indexed_copy" if indexed else "perf_raw_copy"
    with psycopg.connect(database_url) as conn:
        conn.execute(_INDEXED_TABLE if indexed else _BARE_TABLE)
        conn.execute(f"TRUNCATE {table}")
        conn.commit()
        started = time.perf_counter()
        for start in range(0, len(rows), COPY_ROWS_PER_TRANSACTION):
            with (
                conn.cursor() as cursor,
                cursor.copy(
                    f"COPY {table} (originator_id, originator_version, topic, state)"
                    " FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["uuid", "int8", "text", "bytea"])
                for row in rows[start : start + COPY_ROWS_PER_TRANSACTION]:
                    copy.write_row(row)
            conn.commit()
        return time.perf_counter() - started


def _database_url(settings: Settings) -> str:
    if settings.database_url is None:
        raise ValueError("no database")
    return settings.database_url.reveal()


def _through_writer(database_url: str, appends: list[StreamAppend]) -> float:
    """The same notifications through the group-commit writer, a batch's worth per unit."""

    async def go() -> float:
        writer = GroupCommitWriter(database_url, catalog.codec())
        await writer.start()
        started = time.perf_counter()
        for start in range(0, len(appends), PER_REQUEST):
            await writer.append(appends[start : start + PER_REQUEST])
        elapsed = time.perf_counter() - started
        await writer.stop()
        return elapsed

    return asyncio.run(go())


SEALED_APP = "infrastructure.entrypoints.app:from_environment"
UNSEALED_APP = "perf.ingest_app:unsealed"


def _interleaved(
    settings: Settings, token: str, sealed: list[bytes], unsealed: list[bytes], rounds: int
) -> tuple[list[float], list[float]]:
    """Seconds for each round of `sealed` through the production app and of `unsealed`
    through the same app without sealing, taking turns (unsealed first), so that both see
    the machine as it is at the time: absolute rates here drift by a quarter within minutes.
    Both api processes are up throughout; only one is driven at a time."""
    warm = [msgspec.json.encode({"notifications": _batch(-(10**7))})]
    with (
        http_process(settings, UNSEALED_APP) as plain_url,
        http_process(settings, SEALED_APP) as sealed_url,
    ):
        for url in (plain_url, sealed_url):
            asyncio.run(_post_all(url, token, warm))
        plain_s, sealed_s = [], []
        for _ in range(rounds):
            plain_s.append(asyncio.run(_post_all(plain_url, token, unsealed)))
            sealed_s.append(asyncio.run(_post_all(sealed_url, token, sealed)))
        plain_s.append(asyncio.run(_post_all(plain_url, token, unsealed)))
    return sealed_s, plain_s


def _ratios(sealed_s: list[float], plain_s: list[float]) -> list[float]:
    """Each sealed round's rate against the mean of the unsealed rounds either side of it."""
    return [(plain_s[i] + plain_s[i + 1]) / (2 * seconds) for i, seconds in enumerate(sealed_s)]


def run(quick: bool) -> dict[str, Any]:
    requests = 20 if quick else 100
    batches = [_batch(i * PER_REQUEST) for i in range(requests)]
    bodies = [msgspec.json.encode({"notifications": b}) for b in batches]
    # The same number of notifications to other recipients, for the baseline without sealing.
    other = [
        msgspec.json.encode({"notifications": _batch((requests + i) * PER_REQUEST)})
        for i in range(requests)
    ]
    rounds = 4 if quick else 5
    with servers() as settings:
        bench = msgspec.structs.replace(settings, rate_limit_enabled=False)
        token = sender_token(bench)
        # The sealed app meets every recipient new in round 1 (each makes its key) and again
        # in round 2, when a worker making its own key for a recipient the other worker met
        # is still common (each batch goes to one of two workers); from round 3 on most
        # recipients are known to both.
        sealed_s, plain_s = _interleaved(bench, token, bodies, other, rounds)
        ratios = _ratios(sealed_s, plain_s)
        elapsed = sealed_s[0]
        database_url = _database_url(bench)
        started = time.perf_counter()
        prepared = [_prepare(body) for body in bodies]
        prepare_elapsed = time.perf_counter() - started
        appends = [a for batch_appends, _ in prepared for a in batch_appends]
        rows = [r for _, batch_rows in prepared for r in batch_rows]
        store_elapsed = _through_writer(database_url, appends)
        copy_elapsed = _raw_copy(database_url, rows, indexed=False)
        indexed_elapsed = _raw_copy(database_url, rows, indexed=True)
    accepted = requests * PER_REQUEST
    rate = accepted / elapsed
    copy_rate = len(rows) / copy_elapsed
    indexed_rate = len(rows) / indexed_elapsed
    return {
        "scenario": "ingest",
        "value": round(rate, 1),
        "unit": "notifications/s",
        "baseline": round(copy_rate, 1),
        "ratio": round(rate / copy_rate, 3),
        "indexed_copy_per_s": round(indexed_rate, 1),
        "ratio_vs_indexed_copy": round(rate / indexed_rate, 3),
        "notifications": accepted,
        "per_request": PER_REQUEST,
        # Sealing personal data (docs/privacy.md), against the same app storing it as it is:
        "sealing": {
            "unsealed_per_s": [round(accepted / s, 1) for s in plain_s],
            "sealed_per_s": [round(accepted / s, 1) for s in sealed_s],
            "ratio_by_round": [round(r, 3) for r in ratios],
            "ratio_new_recipients": round(ratios[0], 3),
            "ratio_second_time": round(ratios[1], 3),
            "ratio_known_recipients": round(statistics.median(ratios[2:]), 3),
            "target_ratio": 0.8,
        },
        # Where the time goes, each part measured alone in this process:
        "breakdown_us_per_notification": {
            "decode_validate_encode": round(prepare_elapsed / accepted * 1e6, 2),
            "group_commit_writer": round(store_elapsed / len(rows) * 1e6, 2),
            "raw_copy_bare_table": round(copy_elapsed / len(rows) * 1e6, 2),
            "raw_copy_indexed_table": round(indexed_elapsed / len(rows) * 1e6, 2),
            "http_end_to_end": round(elapsed / accepted * 1e6, 2),
        },
        "in_flight": IN_FLIGHT,
        "targets": TARGETS,
        "machine": machine(),
    }
