"""Topic layout, consumer-group names, topic creation and a cheap liveness probe."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from infrastructure.log import get_logger

log = get_logger(__name__)

PROJECTOR_GROUP = "projector.notifications"  # the notifications projectors' consumer group
DISPATCHER_GROUP = "dispatcher"  # the dispatchers' consumer group


def notifications_topic(namespace: str) -> str:
    """Every notification event, keyed by notification id."""
    return f"{namespace}.notifications.v1"


def dead_letter_topic(namespace: str) -> str:
    return f"{namespace}.notifications.dlq.v1"


def consumer_group(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


def topic_layout(namespace: str, partitions: int) -> list[TopicSpec]:
    """Every topic Herald uses, with explicit partition counts.

    Notification events are keyed by notification id, so `partitions` bounds how far the
    projector and dispatcher consumer groups scale out. Dead letters are rare: one partition.
    """
    return [
        TopicSpec(notifications_topic(namespace), partitions),
        TopicSpec(dead_letter_topic(namespace), 1),
    ]


def admin_client(bootstrap: str) -> AdminClient:
    # librdkafka logs every refused connection as an error; health probes report those instead.
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})


def broker_answers(bootstrap: str, timeout: float) -> bool:
    try:
        admin_client(bootstrap).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def partition_count(bootstrap: str, topic: str) -> int:
    metadata = admin_client(bootstrap).list_topics(topic, timeout=10).topics.get(topic)
    return len(metadata.partitions) if metadata is not None else 0


def ensure_topics(bootstrap: str, topics: list[TopicSpec], timeout: float = 10.0) -> list[str]:
    """Create the missing topics and return their names; existing topics are left as they are."""
    admin = admin_client(bootstrap)
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [t for t in topics if t.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(t.name, num_partitions=t.partitions, replication_factor=1) for t in wanted],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    log.info("kafka topics created", topics=created)
    return created
