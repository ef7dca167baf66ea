"""Reading Herald's notification topic back, as a real consumer would."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition


def headers_of(message: object) -> dict[str, str]:
    raw = message.headers() or []  # type: ignore[attr-defined]
    return {name: value.decode() for name, value in raw if value is not None}


def positions_on_topic(
    bootstrap: str,
    topic: str,
    tenant: str,
    done: Callable[[Counter[int]], bool],
    timeout: float = 60.0,
) -> Counter[int]:
    """How many times each position of `tenant` appears on `topic`, read from the start."""
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
        seen: Counter[int] = Counter()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = consumer.consume(num_messages=5000, timeout=1.0)
            for message in messages:
                if message.error() is not None:
                    continue
                headers = headers_of(message)
                if headers.get("tenant") == tenant:
                    seen[int(headers["position"])] += 1
            # Once complete, read on until the topic is drained, so duplicates show too.
            if not messages and done(seen):
                break
        return seen
    finally:
        consumer.close()


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
