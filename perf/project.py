"""`python -m perf project`: events per second through the notifications projector into both
stores (PostgreSQL and Redis), from Kafka, against consuming and decoding the same messages
without writing anything; and the time `herald projections rebuild` takes for the same log.

The log holds notifications that each went through requested, dispatch started, sent and
delivered, appended stage by stage as a dispatcher would. The relay publishes it all first.
The projector then starts with its position at the head, so it checks nothing against the
log and catches nothing up from it: every event comes through Kafka.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer

from domain.notifications import notification as notifications
from domain.notifications.events import NotificationEvent
from domain.notifications.notification import Notification
from domain.notifications.values import Channel
from infrastructure.entrypoints.roles import settle_heap
from infrastructure.eventstore import catalog
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION, save_position
from infrastructure.eventstore.writer import StreamAppend
from infrastructure.kafka.topics import notifications_topic
from infrastructure.kafka.wire import consumer_config, header_values
from infrastructure.relay import Relay
from infrastructure.settings import Settings
from perf.harness import machine, on_new_database, servers
from perf.log import append_rounds, requested
from projections.notifications import rebuild
from projections.notifications.projector import NotificationsProjector

TARGET = 30_000
REBUILD_TARGET_S = 60.0
STAGES = 4  # events per notification


def _fill(
    database_url: str,
    count: int,
    tenant: str | None = None,
    codec: EventCodec | None = None,
    traceparent: Callable[[int], str | None] | None = None,
) -> int:
    """`count` notifications, each requested, dispatched, sent and delivered; returns events.
    `traceparent(i)` is the trace context the i-th was requested in (none by default)."""
    now = datetime.now(UTC)
    states: list[Notification] = []
    first: list[StreamAppend] = []
    for i in range(count):
        stream = uuid.uuid4()
        events = requested(
            tenant=tenant or f"perf-{i % 20}",
            channel=Channel.EMAIL,
            recipient=f"user{i % 5000}@example.com",
            at=now,
            traceparent=traceparent(i) if traceparent else None,
        )
        states.append(notifications.evolve(None, events[0], stream))
        first.append(StreamAppend(stream, 0, events))

    def next_stage(n: Notification, stage: int) -> list[NotificationEvent]:
        if stage == 1:
            return notifications.start_dispatch(n, provider="sandbox", at=now)
        if stage == 2:
            return notifications.record_sent(n, provider_message_id=f"m-{n.id}", at=now)
        return notifications.record_delivered(n, at=now)

    def stage_of(stage: int) -> Callable[[], list[StreamAppend]]:
        def build() -> list[StreamAppend]:
            appends = []
            for index, n in enumerate(states):
                events = next_stage(n, stage)
                appends.append(StreamAppend(n.id, n.version, events))
                states[index] = notifications.evolve(n, events[0], n.id)
            return appends

        return build

    append_rounds(database_url, [lambda: first, *(stage_of(s) for s in range(1, STAGES))], codec)
    return count * STAGES


def _publish(settings: Settings, events: int, codec: EventCodec | None = None) -> None:
    relay = Relay(settings, codec or catalog.codec(), catalog.NOTIFICATION_EVENT_NAMES)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    while relay.published < events:
        if not thread.is_alive():
            raise RuntimeError("the relay stopped before publishing everything")
        time.sleep(0.05)
    stop.set()
    thread.join(30)


def _consume_and_decode(settings: Settings, events: int) -> float:
    """The baseline: the same consumer settings, the same decoding, no writes."""
    assert settings.kafka_bootstrap is not None  # noqa: S101 - servers() set it
    codec = catalog.codec()
    consumer = Consumer(consumer_config(settings.kafka_bootstrap, f"perf-{uuid.uuid4().hex}"))
    consumer.subscribe([notifications_topic(settings.namespace)])
    seen = 0
    started: float | None = None
    try:
        while seen < events:
            for message in consumer.consume(5000, timeout=0.5):
                if message.error() is not None:
                    continue
                if started is None:
                    started = time.perf_counter()
                headers = header_values(message)
                value = message.value() or b""
                codec.decode(f"{headers['event_type']}@{headers['schema_version']}", value)
                seen += 1
    finally:
        consumer.close()
    return seen / (time.perf_counter() - (started or time.perf_counter()))


def projector_progress(
    settings: Settings,
    events: int,
    codec: EventCodec | None = None,
    ready: Callable[[], object] | None = None,
) -> tuple[NotificationsProjector, list[tuple[float, float, int]]]:
    """Project `events` from Kafka, starting at the head of the store; returns the projector
    and its progress: `(time.perf_counter(), time.process_time(), events applied)` each time
    a batch lands.
    `ready` is called just before the projector starts: the heap settled as the role does,
    a barrier for side-by-side runs."""
    assert settings.database_url is not None  # noqa: S101 - servers() set it
    database_url = settings.database_url.reveal()
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT max(notification_id) FROM stored_events").fetchone()
        save_position(conn, NOTIFICATIONS_PROJECTION, int(row[0]) if row else 0)
    projector = NotificationsProjector(
        settings, codec or catalog.codec(), list(catalog.NOTIFICATION_EVENT_NAMES)
    )
    if ready is not None:
        ready()
    stop = threading.Event()
    thread = threading.Thread(target=projector.run, args=(stop,), daemon=True)
    thread.start()
    progress: list[tuple[float, float, int]] = []
    applied = 0
    while applied < events:
        if not thread.is_alive():
            raise RuntimeError("the projector stopped")
        time.sleep(0.002)
        if projector.applied["kafka"] != applied:
            applied = projector.applied["kafka"]
            progress.append((time.perf_counter(), time.process_time(), applied))
    stop.set()
    thread.join(30)
    return projector, progress


def projector_rate(
    settings: Settings, events: int, codec: EventCodec | None = None
) -> tuple[float, dict[str, int], dict[str, float]]:
    """Events per second from the first batch applied to the last."""
    projector, progress = projector_progress(settings, events, codec, ready=settle_heap)
    (started, _, first), (ended, _, last) = progress[0], progress[-1]
    if ended == started:
        raise RuntimeError(f"{events} events landed in one batch: too few to time")
    stages = {k: round(v / events * 1e6, 2) for k, v in projector.seconds.items()}
    return (last - first) / (ended - started), dict(projector.applied), stages


def _rebuild(settings: Settings) -> float:
    assert settings.database_url is not None  # noqa: S101 - servers() set it
    started = time.perf_counter()
    rebuild.rebuild(
        settings.database_url.reveal(), catalog.codec(), list(catalog.NOTIFICATION_EVENT_NAMES)
    )
    return time.perf_counter() - started


def _sealed_projector_rate(settings: Settings, count: int) -> float:
    """The projector's rate over the same log stored sealed, in a database and a namespace of
    its own: keys made by the writer, opened by the projector, recipients hashed for lookups."""
    sealed = on_new_database(settings, "sealed")
    assert sealed.database_url is not None  # noqa: S101 - set by on_new_database
    codec = catalog.codec_for(sealed)
    events = _fill(sealed.database_url.reveal(), count, codec=codec)
    _publish(sealed, events, codec)
    rate, _, _ = projector_rate(sealed, events, catalog.codec_for(sealed))
    return rate


def run(quick: bool) -> dict[str, Any]:
    count = 25_000 if quick else 250_000  # notifications; four events each
    with servers() as settings:
        if settings.database_url is None:
            raise ValueError("no servers")
        events = _fill(settings.database_url.reveal(), count)
        _publish(settings, events)
        baseline = _consume_and_decode(settings, events)
        rate, applied, stages = projector_rate(settings, events)
        rebuild_s = _rebuild(settings)
        sealed_rate = _sealed_projector_rate(settings, count)
    return {
        "scenario": "project",
        "value": round(rate, 1),
        "unit": "events/s",
        "baseline": round(baseline, 1),
        "ratio": round(rate / baseline, 3),
        "events": events,
        "applied": applied,
        "projector_us_per_event": stages,
        "target_events_per_s": TARGET,
        "rebuild_s": round(rebuild_s, 1),
        "rebuild_events_per_s": round(events / rebuild_s, 1),
        "rebuild_target_s_per_million": REBUILD_TARGET_S,
        # The same log sealed (personal fields under per-recipient keys), projected by the
        # sealing codec into its own database and namespace, against the run above.
        "sealing": {
            "unsealed_events_per_s": round(rate, 1),
            "sealed_events_per_s": round(sealed_rate, 1),
            "ratio": round(sealed_rate / rate, 3),
        },
        "machine": machine(),
    }
