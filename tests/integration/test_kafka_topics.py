"""Herald creates its topics with explicit partition counts, and creating them again is harmless."""

from __future__ import annotations

import uuid

from infrastructure.kafka.topics import TopicSpec, admin_client, ensure_topics, notifications_topic
from infrastructure.settings import Settings


def _partitions(bootstrap: str, topic: str) -> int:
    return len(admin_client(bootstrap).list_topics(topic, timeout=10).topics[topic].partitions)


def test_topics_are_created_with_the_partitions_asked_for(stack: Settings) -> None:
    assert stack.kafka_bootstrap is not None
    name = f"test.topic.{uuid.uuid4().hex[:8]}"
    assert ensure_topics(stack.kafka_bootstrap, [TopicSpec(name, 3)]) == [name]
    assert _partitions(stack.kafka_bootstrap, name) == 3
    assert ensure_topics(stack.kafka_bootstrap, [TopicSpec(name, 3)]) == []


def test_the_stack_has_the_notification_topic_with_the_configured_partitions(
    stack: Settings,
) -> None:
    assert stack.kafka_bootstrap is not None
    assert (
        _partitions(stack.kafka_bootstrap, notifications_topic(stack.namespace))
        == stack.kafka_partitions
    )
