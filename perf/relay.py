"""`python -m perf relay`: events per second from the event store to the broker, against the
raw produce rate of the same messages (same producer settings, keys and headers), same run."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from domain.notifications.values import Channel
from infrastructure.eventstore import catalog
from infrastructure.eventstore.writer import StreamAppend
from infrastructure.kafka.topics import TopicSpec, ensure_topics
from infrastructure.kafka.wire import producer_config
from infrastructure.relay import Relay
from infrastructure.settings import Settings
from perf.harness import machine, servers
from perf.log import append_rounds, requested

TARGET = 50_000
RAW_TOPIC = "perf.raw.v1"


def _appends(count: int) -> list[StreamAppend]:
    now = datetime.now(UTC)
    return [
        StreamAppend(
            uuid.uuid4(),
            0,
            requested(
                tenant="perf",
                channel=Channel.EMAIL,
                recipient=f"user{i}@example.com",
                at=now,
                correlation_id=uuid.uuid4().hex,
            ),
        )
        for i in range(count)
    ]


def _relay_rate(settings: Settings, count: int) -> tuple[float, dict[str, float]]:
    relay = Relay(settings, catalog.codec(), catalog.NOTIFICATION_EVENT_NAMES)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    started = time.perf_counter()
    thread.start()
    while relay.published < count:
        if not thread.is_alive():
            raise RuntimeError("the relay stopped before publishing everything")
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join(30)
    return count / elapsed, {k: round(v / count * 1e6, 2) for k, v in relay.seconds.items()}


def _raw_rate(bootstrap: str, appends: list[StreamAppend], partitions: int) -> float:
    ensure_topics(bootstrap, [TopicSpec(RAW_TOPIC, partitions)])
    codec = catalog.codec()
    messages = []
    for position, append in enumerate(appends, start=1):
        topic, state = codec.encode(append.events[0])
        headers: list[tuple[str, str | bytes | None]] = [
            ("event_type", topic.partition("@")[0]),
            ("schema_version", "1"),
            ("position", str(position)),
            ("event_id", f"{append.stream_id}:1"),
            ("tenant", "perf"),
        ]
        messages.append((state, str(append.stream_id), headers))
    producer = Producer(producer_config(bootstrap))
    started = time.perf_counter()
    for value, key, headers in messages:
        while True:
            try:
                producer.produce(RAW_TOPIC, value=value, key=key, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60):
        raise RuntimeError("raw produce did not finish")
    return len(messages) / (time.perf_counter() - started)


def run(quick: bool) -> dict[str, Any]:
    count = 50_000 if quick else 200_000
    appends = _appends(count)
    with servers() as settings:
        if settings.database_url is None or settings.kafka_bootstrap is None:
            raise ValueError("no servers")
        append_rounds(settings.database_url.reveal(), [lambda: appends])
        relay_rate, stages = _relay_rate(settings, count)
        raw_rate = _raw_rate(settings.kafka_bootstrap, appends, settings.kafka_partitions)
    return {
        "scenario": "relay",
        "value": round(relay_rate, 1),
        "unit": "events/s",
        "baseline": round(raw_rate, 1),
        "ratio": round(relay_rate / raw_rate, 3),
        "events": count,
        "relay_us_per_event": stages,
        "target_events_per_s": TARGET,
        "machine": machine(),
    }
