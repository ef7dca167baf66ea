"""Reading Herald's notification topic back, as a real consumer would."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable

from confluent_kafka import Consumer, Message, TopicPartition


def headers_of(message: object) -> dict[str, str]:
    raw = message.headers() or []  # type: ignore[attr-defined]
    return {name: value.decode() for name, value in raw if value is not None}


def scan_topic(
    bootstrap: str,
    topic: str,
    visit: Callable[[Message], None],
    done: Callable[[], bool],
    timeout: float = 60.0,
) -> None:
    """Read `topic` from the start, every message through `visit`, until `done()` holds and
    the topic is drained (so duplicates show too), or `timeout` passes."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            # Assignments start at offset 0; should the broker refuse that (a topic emptied
            # and made again), start from the earliest message rather than skip to the end.
            "auto.offset.reset": "earliest",
            "log_level": 3,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = consumer.consume(num_messages=5000, timeout=1.0)
            for message in messages:
                if message.error() is None:
                    visit(message)
            if not messages and done():
                break
    finally:
        consumer.close()


def positions_on_topic(
    bootstrap: str,
    topic: str,
    tenant: str,
    done: Callable[[Counter[int]], bool],
    timeout: float = 60.0,
) -> Counter[int]:
    """How many times each position of `tenant` appears on `topic`, read from the start."""
    seen: Counter[int] = Counter()

    def visit(message: Message) -> None:
        headers = headers_of(message)
        if headers.get("tenant") == tenant:
            seen[int(headers["position"])] += 1

    scan_topic(bootstrap, topic, visit, lambda: done(seen), timeout)
    return seen


def tenant_offsets(bootstrap: str, topic: str, tenant: str, count: int) -> dict[int, int]:
    """Partition to the highest offset holding one of `tenant`'s events, once `count` are
    on `topic`."""
    highest: dict[int, int] = {}
    seen = Counter[int]()

    def visit(message: Message) -> None:
        if headers_of(message).get("tenant") == tenant:
            partition, offset = message.partition() or 0, message.offset() or 0
            highest[partition] = max(highest.get(partition, 0), offset)
            seen[offset] += 1

    scan_topic(bootstrap, topic, visit, lambda: sum(seen.values()) >= count)
    return highest


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The next offset to be written in each partition of `topic`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-ends", "log_level": 3})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in metadata.partitions
        }
    finally:
        consumer.close()


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
