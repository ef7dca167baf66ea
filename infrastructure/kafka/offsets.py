"""A topic's partitions as operators see them: each one's low and high watermarks and where
a consumer group has committed to.

Making a consumer and fetching the metadata costs tens of milliseconds, so each api process
keeps one consumer open (it never subscribes, so it never joins the group) and asks it from
one thread at a time; an answer is reused for `ttl_s`, so an admin page polled by many hands
costs the broker one round of calls per second. A consumer that failed is closed and made
again on the next call.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

TIMEOUT_S = 5.0


@dataclass(frozen=True)
class PartitionOffsets:
    partition: int
    low: int
    high: int  # the next offset to be written
    committed: int | None  # the group's next offset to read; None before its first commit


class OffsetReader:
    def __init__(self, bootstrap: str, topic: str, group: str, ttl_s: float = 1.0) -> None:
        self.topic = topic
        self.group = group
        self._config = {"bootstrap.servers": bootstrap, "group.id": group, "log_level": 3}
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None
        self._read_at = 0.0
        self._last: list[PartitionOffsets] = []

    def read(self) -> list[PartitionOffsets]:
        """Every partition of the topic, in order; empty when the topic does not exist.
        Blocking: call it from a worker thread."""
        with self._lock:
            if time.monotonic() - self._read_at < self._ttl_s:
                return self._last
            if self._consumer is None:
                self._consumer = Consumer(self._config)
            try:
                self._last = self._ask(self._consumer)
            except KafkaException:
                self.close()
                raise
            self._read_at = time.monotonic()
            return self._last

    def _ask(self, consumer: Consumer) -> list[PartitionOffsets]:
        metadata = consumer.list_topics(self.topic, timeout=TIMEOUT_S).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            return []
        partitions = [TopicPartition(self.topic, p) for p in sorted(metadata.partitions)]
        committed = {
            tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=TIMEOUT_S)
        }
        found = []
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S)
            done = committed.get(tp.partition)
            found.append(
                PartitionOffsets(
                    tp.partition, low, high, done if done is not None and done >= 0 else None
                )
            )
        return found

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()
