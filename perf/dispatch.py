"""`python -m perf dispatch`: notifications per second from Requested to Sent, through the
dispatcher role and the official provider SDKs, against the same SDK calls sent straight to
the simulator with the same concurrency, in the same run; then the accept → Sent latency at
half that rate.

The api, relay, dispatcher and provider simulator run as processes, as `herald dev` runs
them (PERF_DISPATCHERS=N runs N dispatchers in one consumer group). The simulator answers
at once and fails nothing, and its delivery webhooks come back to the api. The projector is
not running while notifications are dispatched.

1. Throughput. The log is filled with notifications already requested (email, SMS and push
   in turn), so that nothing but the dispatcher limits the rate. The figure is the count
   divided by the time from the first DispatchStarted to the last NotificationSent, both
   read from the events themselves.
2. Baseline. Once the delivery reports and push receipts are all in, the same number of
   messages (the channels in turn) go through the same provider adapters and SDKs straight
   to the simulator, from as many threads as a dispatcher has, with its per-provider cap on
   calls in flight (HERALD_PROVIDER_CONCURRENCY), and nothing recorded. For reference, the
   notifications projector then consumes the whole log from Kafka; its events per second
   become notifications per second.
3. Latency. wrk posts commands at about half the measured throughput, one channel after
   another. For every notification it created, the latency runs from its Requested event
   (stamped while the api handles the command, just before the 202) to its Sent event
   (stamped when the provider's answer arrives).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg

from domain.events import DomainEvent
from domain.identity.roles import Role
from domain.notifications.events import DispatchStarted, NotificationRequested, NotificationSent
from domain.notifications.values import Channel
from infrastructure.devstack.dev import role_spec, simulator_spec
from infrastructure.devstack.servers import free_port
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.eventstore import catalog
from infrastructure.eventstore.reader import load_streams
from infrastructure.eventstore.tracking import RELAY, stored_position
from infrastructure.eventstore.writer import StreamAppend
from infrastructure.providers.provider import OutboundMessage
from infrastructure.providers.registry import build_providers
from infrastructure.settings import Settings
from perf.harness import BenchmarkError, machine, percentile, servers, token_for, wrk
from perf.log import CONTENT, append_rounds, requested
from perf.project import projector_rate

CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PUSH)
CONNECTIONS = 16  # wrk connections for the paced load
TENANT = "bench"


def _recipient(channel: Channel, index: int) -> str:
    if channel is Channel.EMAIL:
        return f"user{index}@example.com"
    if channel is Channel.SMS:
        return f"+1415555{index % 10_000:04d}"
    return f"device-{index}"


def _fill(database_url: str, count: int) -> list[uuid.UUID]:
    """`count` notifications requested now, the channels in turn; returns their ids."""
    now = datetime.now(UTC)
    appends = []
    for i in range(count):
        channel = CHANNELS[i % len(CHANNELS)]
        events = requested(tenant=TENANT, channel=channel, recipient=_recipient(channel, i), at=now)
        appends.append(StreamAppend(uuid.uuid4(), 0, events))
    append_rounds(database_url, [lambda: appends])
    return [a.stream_id for a in appends]


def _head(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM stored_events").fetchone()
    return int(row[0]) if row else 0


def _wait_for_sent(
    conn: psycopg.Connection[Any], ids: list[uuid.UUID], supervisor: Supervisor
) -> None:
    """Until every one of `ids` has its NotificationSent event."""
    deadline = time.monotonic() + max(120.0, len(ids) / 20)
    while True:
        row = conn.execute(
            "SELECT count(*) FROM stored_events"
            " WHERE originator_id = ANY(%s) AND topic LIKE 'NotificationSent@%%'",
            (ids,),
        ).fetchone()
        sent = int(row[0]) if row else 0
        if sent >= len(ids):
            return
        supervisor.check()
        if time.monotonic() > deadline:
            raise BenchmarkError(f"only {sent} of {len(ids)} notifications were sent in time")
        time.sleep(0.5)


def _histories(database_url: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[DomainEvent]]:
    codec = catalog.codec()

    async def go() -> dict[uuid.UUID, list[DomainEvent]]:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            found: dict[uuid.UUID, list[DomainEvent]] = {}
            for start in range(0, len(ids), 5000):
                found |= await load_streams(conn, codec, ids[start : start + 5000])
            return found

    return asyncio.run(go())


def _first(history: list[DomainEvent], kind: type[DomainEvent]) -> datetime:
    return next(e.at for e in history if isinstance(e, kind))


def _dispatch_rate(database_url: str, ids: list[uuid.UUID]) -> tuple[float, float]:
    """Notifications per second and the seconds it took, from the events' own stamps."""
    histories = _histories(database_url, ids).values()
    began = min(_first(h, DispatchStarted) for h in histories)
    ended = max(_first(h, NotificationSent) for h in histories)
    seconds = (ended - began).total_seconds()
    return len(ids) / seconds, seconds


def _wait_for_webhooks(simulator_url: str) -> None:
    """Until the simulator has posted every delivery report and push receipt it owes."""
    deadline = time.monotonic() + 300
    while httpx.get(f"{simulator_url}/_simulator/stats").json()["webhooks"]["pending"]:
        if time.monotonic() > deadline:
            raise BenchmarkError("the simulator's webhooks did not drain in time")
        time.sleep(0.2)


def _wait_for_relay(conn: psycopg.Connection[Any]) -> int:
    """Until the relay has published the whole log; returns how many events it holds."""
    deadline = time.monotonic() + 300
    while stored_position(conn, RELAY) < (head := _head(conn)):
        if time.monotonic() > deadline:
            raise BenchmarkError("the relay did not publish the whole log in time")
        time.sleep(0.2)
    row = conn.execute("SELECT count(*) FROM stored_events").fetchone()
    return int(row[0]) if row and head else 0


def _paced_script(directory: Path, pause_ms: float) -> Path:
    """A wrk script posting one command per channel in turn, each connection pausing
    `pause_ms` after every answer."""
    bodies = [
        msgspec.json.encode(
            {
                "channel": str(channel),
                "recipient": _recipient(channel, i),
                "subject": "Your order shipped",
                "body": "It left the warehouse this morning.",
            }
        )
        for i, channel in enumerate(CHANNELS)
    ]
    lines = ["local bodies = {}"]
    for index, body in enumerate(bodies):
        path = directory / f"body{index}.json"
        path.write_bytes(body)
        lines += [
            f'local f{index} = io.open("{path}", "rb")',
            f"bodies[#bodies + 1] = f{index}:read('*a')",
            f"f{index}:close()",
        ]
    lines += [
        "local n = 0",
        "function setup(thread) n = n + 1; thread:set('offset', n) end",
        "function init(args) i = offset end",
        "function request()",
        "  i = i + 1",
        "  local headers = {}",  # a fresh table: wrk.format sets Content-Length only once
        "  for k, v in pairs(wrk.headers) do headers[k] = v end",
        '  headers["Content-Type"] = "application/json"',
        '  return wrk.format("POST", nil, headers, bodies[(i % #bodies) + 1])',
        "end",
        f"function delay() return {pause_ms} end",
    ]
    script = directory / "paced.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


def _raw_sdk_rate(settings: Settings, count: int) -> float:
    """Messages per second through the provider adapters alone, as concurrent as a
    dispatcher's calls: its thread count, and its cap per provider."""
    providers = build_providers(settings)
    caps = settings.concurrency_per_provider
    slots = {p.name: threading.BoundedSemaphore(caps[p.name]) for p in providers.values()}
    messages = [
        OutboundMessage(
            notification_id=uuid.uuid4(),
            attempt=1,
            tenant_id=TENANT,
            channel=CHANNELS[i % len(CHANNELS)],
            recipient=_recipient(CHANNELS[i % len(CHANNELS)], i),
            subject=CONTENT.subject,
            body=CONTENT.body or "",
        )
        for i in range(count)
    ]

    def send(message: OutboundMessage) -> str:
        provider = providers[message.channel]
        with slots[provider.name]:
            return provider.send(message)

    with ThreadPoolExecutor(max_workers=sum(caps.values())) as pool:
        started = time.perf_counter()
        sent = list(pool.map(send, messages))
        took = time.perf_counter() - started
    if len(sent) != count:
        raise BenchmarkError("the raw SDK baseline lost messages")
    return count / took


@contextmanager
def _roles(settings: Settings, logs: Path, dispatchers: int) -> Iterator[Supervisor]:
    """The simulator, api, relay and dispatchers as processes, each logging to `logs`."""
    with Supervisor() as supervisor:
        supervisor.start(replace(simulator_spec(settings), log_path=logs / "simulator.log"))
        for role in ("api", "relay"):
            spec = replace(role_spec(role, settings), log_path=logs / f"{role}.log")
            supervisor.start(spec, ready_timeout=30)
        for index in range(1, dispatchers + 1):
            name = f"dispatcher-{index}"
            spec = replace(
                role_spec("dispatcher", settings), name=name, log_path=logs / f"{name}.log"
            )
            supervisor.start(spec, ready_timeout=30)
        yield supervisor


def run(quick: bool) -> dict[str, Any]:
    count = 3_000 if quick else 20_000
    dispatchers = int(os.environ.get("PERF_DISPATCHERS", "1"))
    if dispatchers < 1:
        raise BenchmarkError(f"PERF_DISPATCHERS={dispatchers}: must be at least 1")
    seconds = 5 if quick else 20
    with servers() as started, tempfile.TemporaryDirectory(prefix="herald-perf-") as scratch:
        if started.database_url is None:
            raise BenchmarkError("no database")
        database_url = started.database_url.reveal()
        port = free_port()
        settings: Settings = msgspec.structs.replace(
            started,
            http_port=port,
            http_workers=1,
            public_url=f"http://{started.http_host}:{port}",
            simulator_url=f"http://127.0.0.1:{free_port()}",
            simulator_latency_ms=0,
            simulator_transient_rate=0.0,
            simulator_throttle_rate=0.0,
            simulator_timeout_rate=0.0,
            simulator_permanent_rate=0.0,
            simulator_webhook_delay_ms=0,
            dev_dir=str(Path(scratch) / "dev"),
            rate_limit_enabled=False,
            log_level="warning",
        )
        # The roles' logs are kept, so that an odd run can be looked into afterwards.
        logs = Path(tempfile.mkdtemp(prefix="herald-perf-dispatch-"))
        ids = _fill(database_url, count)
        with (
            psycopg.connect(database_url, autocommit=True) as conn,
            _roles(settings, logs, dispatchers) as supervisor,
        ):
            _wait_for_sent(conn, ids, supervisor)
            rate, took_s = _dispatch_rate(database_url, ids)
            _wait_for_webhooks(settings.simulator_url)  # the baseline runs on a quiet machine
            baseline = _raw_sdk_rate(settings, count)
            _wait_for_webhooks(settings.simulator_url)
            events = _wait_for_relay(conn)
            projected, _, _ = projector_rate(settings, events)

            # Latency at half the throughput: wrk paces CONNECTIONS connections.
            target = rate / 2
            sender = {"Authorization": f"Bearer {token_for(settings, Role.SENDER)}"}
            api = f"http://{settings.http_host}:{settings.http_port}/notifications"
            warm_up = _paced_script(Path(scratch), CONNECTIONS * 1000 / 50)
            wrk(api, seconds=2, connections=CONNECTIONS, headers=sender, script=warm_up)
            before = _head(conn)
            pause_ms = CONNECTIONS * 1000 / target
            script = _paced_script(Path(scratch), round(pause_ms, 2))
            load = wrk(api, seconds=seconds, connections=CONNECTIONS, headers=sender, script=script)
            requested = [
                row[0]
                for row in conn.execute(
                    "SELECT originator_id FROM stored_events"
                    " WHERE notification_id > %s AND topic LIKE 'NotificationRequested@%%'",
                    (before,),
                )
            ]
            _wait_for_sent(conn, requested, supervisor)
        latencies = [
            (_first(h, NotificationSent) - _first(h, NotificationRequested)).total_seconds() * 1000
            for h in _histories(database_url, requested).values()
        ]
    if load.non_2xx:
        raise BenchmarkError(f"{load.non_2xx} commands were refused under the paced load")
    return {
        "scenario": "dispatch",
        "value": round(rate, 1),
        "unit": "notifications/s (requested to sent)",
        "baseline": round(baseline, 1),
        "ratio": round(rate / baseline, 3),
        "notifications": count,
        "dispatchers": dispatchers,
        "dispatch_s": round(took_s, 2),
        "raw_sdk_calls_per_s": round(baseline, 1),
        "projector_events_per_s": round(projected, 1),
        "projector_notifications_per_s": round(projected * count / events, 1),
        "events_per_notification": round(events / count, 2),
        "paced_target_per_s": round(target, 1),
        "paced_commands_per_s": load.requests_per_s,
        "latency_samples": len(latencies),
        "accept_to_sent_p50_ms": percentile(latencies, 0.5),
        "accept_to_sent_p99_ms": percentile(latencies, 0.99),
        "accept_to_sent_mean_ms": round(statistics.fmean(latencies), 2),
        "role_logs": str(logs),
        "machine": machine(),
    }
