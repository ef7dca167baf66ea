"""How a stored event travels through Kafka: written by the relay, read by every consumer.

A message's key is the notification id, so one notification's events stay in one
partition, in order. Its value is the event's stored msgpack, unchanged. Its headers:
`event_type`, `schema_version`, `position` (in the global log: the key consumers
deduplicate by), `event_id` (`stream:version`), `tenant`, and `correlation_id` and
`traceparent` when the event has them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from opentelemetry.trace import SpanKind

from domain.events import DomainEvent
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.sealer import clear_part
from infrastructure.log import get_logger
from infrastructure.tracing import ending, sampled_parent, start_span, tracing

log = get_logger(__name__)

Headers = list[tuple[str, str | bytes | None]]


def producer_config(bootstrap: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,  # no duplicates from the producer's own retries
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "log_level": 3,
        # Report failures only: a Python callback per acknowledged message costs more
        # than producing it. Success is known from flush() returning with nothing left.
        "delivery.report.only.error": True,
        # Give up on a message after this long, so an unreachable broker surfaces as a
        # failed batch the caller can handle, instead of an endless wait.
        "message.timeout.ms": 8000,
    }


def consumer_config(bootstrap: str, group: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # Short group timeouts: the first assignment takes seconds instead of half a minute.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 10000,
        "fetch.wait.max.ms": 20,  # latency from the relay's produce to the read model
        "log_level": 3,
    }


class _Envelope(msgspec.Struct, frozen=True):
    """The fields of any notification event that become headers; the rest is skipped."""

    tenant_id: str
    correlation_id: str | None = None
    traceparent: str | None = None


_envelope = msgspec.msgpack.Decoder(_Envelope)


def outgoing(
    position: int, stream_id: UUID | str, version: int, topic: str, state: bytes
) -> tuple[str, bytes, Headers]:
    """The key, value and headers of the message for one stored event."""
    event = _envelope.decode(clear_part(state))  # the parts no key is needed to read
    name, _, schema = topic.partition("@")
    key = str(stream_id if isinstance(stream_id, UUID) else UUID(stream_id))
    headers: Headers = [
        ("event_type", name),
        ("schema_version", schema),
        ("position", str(position)),
        ("event_id", f"{key}:{version}"),
        ("tenant", event.tenant_id),
    ]
    if event.correlation_id:
        headers.append(("correlation_id", event.correlation_id))
    if event.traceparent:
        headers.append(("traceparent", event.traceparent))
    return key, bytes(state), headers


def header_values(message: Message) -> dict[str, str]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {
        name: value.decode() if isinstance(value, bytes) else str(value)
        for name, value in pairs
        if value is not None
    }


def message_attributes(topic: str, headers: Mapping[str, Any]) -> dict[str, str | int]:
    """A traced message's span attributes, from its headers: ids and names, nothing personal."""
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
    }
    for header, attribute in _TRACED_HEADERS:
        value = headers.get(header)
        if isinstance(value, str):
            attributes[attribute] = value
    event_id = headers.get("event_id")
    if isinstance(event_id, str):
        attributes["herald.notification_id"] = event_id.partition(":")[0]
    return attributes


@contextmanager
def consuming(name: str, topic: str, headers: Iterable[Mapping[str, str]]) -> Iterator[None]:
    """While messages from `topic` are handled, when this process traces: a span per message
    whose `traceparent` header names a sampled trace, continuing it. `headers` are the ones
    decoding read (`Published.headers`): a message's headers are read from the broker's
    client once."""
    if not tracing():
        yield
        return
    spans = []
    for values in headers:
        parent = sampled_parent(values.get("traceparent"))
        if parent is not None:
            attributes = message_attributes(topic, values)
            spans.append(
                start_span(name, parent=parent, kind=SpanKind.CONSUMER, attributes=attributes)
            )
    with ending(spans):
        yield


def log_each(module: str, what: str, headers: Iterable[Mapping[str, Any]]) -> None:
    """At debug level, in `module`'s logger, a line per message saying `what` happened to
    it, naming its notification, event, position and the correlation id of the request
    behind it. Nothing is decoded when debug is off."""
    if not logging.getLogger(module).isEnabledFor(logging.DEBUG):
        return
    logger = get_logger(module)
    for values in headers:
        event_id = str(values.get("event_id", ""))
        logger.debug(
            what,
            notification_id=event_id.partition(":")[0],
            event_type=values.get("event_type"),
            position=values.get("position"),
            correlation_id=values.get("correlation_id"),
        )


_TRACED_HEADERS = (
    ("event_type", "herald.event"),
    ("position", "herald.position"),
    ("tenant", "herald.tenant"),
    ("correlation_id", "herald.correlation_id"),
)


def header_position(message: Message) -> int:
    """The log position a message carries; 0 when it carries none."""
    return int(header_values(message).get("position", 0))


@dataclass(frozen=True, slots=True)
class Published:
    """An event as the relay published it, with its place in its stream and in the log, and
    the headers of its message."""

    name: str  # the event type
    stream_id: UUID
    version: int
    position: int
    event: DomainEvent
    headers: dict[str, str]


def decode_published(messages: Sequence[Message], codec: EventCodec) -> list[Published | None]:
    """The event each consumed message carries (decoded together, so the keys of their
    sealed fields come in one round trip); None for a broker error (logged unless it only
    marks the end of a partition) or a message without a value, which the relay never sends."""
    found: list[tuple[int, dict[str, str], str, bytes]] = []  # index, headers, topic, value
    for index, message in enumerate(messages):
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("kafka consumer error", error=str(error))
            continue
        value = message.value()
        if value is None:
            log.warning("kafka message without a value skipped", offset=message.offset())
            continue
        headers = header_values(message)
        topic = f"{headers['event_type']}@{headers['schema_version']}"
        found.append((index, headers, topic, value))
    events = codec.decode_many([(topic, value) for *_, topic, value in found])
    decoded: list[Published | None] = [None] * len(messages)
    for (index, headers, _, _), event in zip(found, events, strict=True):
        stream, _, version = headers["event_id"].rpartition(":")
        decoded[index] = Published(
            headers["event_type"],
            UUID(stream),
            int(version),
            int(headers["position"]),
            event,
            headers,
        )
    return decoded


def headers_of(decoded: Iterable[Published | None]) -> Iterator[dict[str, str]]:
    """The headers of each message `decode_published` decoded."""
    return (published.headers for published in decoded if published is not None)


def next_batch(consumer: Consumer, most: int, timeout: float) -> list[Message]:
    """The messages already fetched, up to `most`, waiting at most `timeout` for the first.

    `Consumer.consume(most, timeout)` waits until it has `most` messages or the timeout has
    passed, so at a low rate every message would wait out the timeout; this returns as soon
    as there is anything to work on.
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(most - 1, timeout=0)]


def broker_position(bootstrap: str, topic: str) -> int | None:
    """The highest position header on the broker's topic; 0 when empty, None when missing."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "herald-relay-probe", "log_level": 3}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return None
        newest = 0
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, high - 1)])
            message = consumer.poll(10)
            if message is not None and message.error() is None:
                newest = max(newest, header_position(message))
        return newest
    finally:
        consumer.close()
