"""The read API over HTTP, with the session's relay and projector running: Kafka to read models."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pytest
import redis
from psycopg import sql

from domain.identity.roles import Role
from domain.notifications import notification as notifications
from infrastructure.eventstore.store import EventStore
from infrastructure.kafka.topics import notifications_topic
from infrastructure.redis_keys import RedisKeys
from infrastructure.settings import Settings
from projections.notifications.refill import HASHED_COLUMNS, HashRefill
from tests.e2e.conftest import Account, AccountFactory
from tests.e2e.streams import advance, dead_letter
from tests.kafka_helpers import end_offsets, eventually, tenant_offsets

EMAIL = {"channel": "email", "recipient": "ada@example.com", "subject": "s", "body": "b"}


def _send(api_url: str, account: Account, **fields: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{api_url}/notifications", json={**EMAIL, **fields}, headers=account.headers
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def _get(api_url: str, account: Account, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{api_url}{path}", params=params, headers=account.headers, timeout=30)


def test_a_read_with_min_position_sees_the_write_it_follows(
    api_url: str, account: AccountFactory, projector: None, stack: Settings
) -> None:
    sender = account(Role.SENDER)
    created = _send(api_url, sender)
    response = _get(
        api_url, sender, f"/notifications/{created['id']}", min_position=created["position"]
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "requested"
    cancelled = httpx.post(
        f"{api_url}/notifications/{created['id']}/cancel", json={}, headers=sender.headers
    ).json()
    response = httpx.get(
        f"{api_url}/notifications/{created['id']}",
        headers={**sender.headers, "Min-Position": str(cancelled["position"])},
    )
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled_at"] is not None


def test_the_projector_consumes_everything_the_relay_publishes(
    api_url: str, account: AccountFactory, projector: None, stack: Settings
) -> None:
    sender = account(Role.SENDER)
    for _ in range(20):
        _send(api_url, sender)
    assert stack.database_url is not None
    assert stack.kafka_bootstrap is not None
    topic = notifications_topic(stack.namespace)

    # The partitions and offsets of this test's own events, as a consumer finds them.
    wanted = tenant_offsets(stack.kafka_bootstrap, topic, sender.tenant, 20)
    stored: dict[int, int] = {}

    def consumed_all() -> bool:
        with psycopg.connect(stack.database_url.reveal() if stack.database_url else "") as conn:
            stored.update(
                conn.execute(
                    "SELECT partition, next_offset FROM projection_offsets WHERE topic = %s",
                    (topic,),
                ).fetchall()
            )
        return all(stored.get(p, 0) > offset for p, offset in wanted.items())

    try:
        eventually(consumed_all, 60, "the projector to consume this test's events")
    except AssertionError:
        ends = end_offsets(stack.kafka_bootstrap, topic)
        pytest.fail(f"events at {wanted}; projection offsets {stored}; end offsets {ends}")


def _counter(api_url: str, admin: Account, result: str, metric: str = "read") -> float:
    """The API's herald_{metric}_cache_total for `result`, from GET /metrics."""
    response = _get(api_url, admin, "/metrics")
    # Prometheus's own type, with its one charset.
    assert response.headers.get_list("content-type") == ["text/plain; version=1.0.0; charset=utf-8"]
    text = response.text
    for line in text.splitlines():
        if line.startswith(f'herald_{metric}_cache_total{{result="{result}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_by_id_is_served_from_redis_and_cached_aside_from_sql(
    api_url: str, account: AccountFactory, projector: None, stack: Settings
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    sender, admin = account(Role.SENDER, tenant=tenant), account(Role.ADMIN, tenant=tenant)
    created = _send(api_url, sender)
    path = f"/notifications/{created['id']}"
    first = _get(api_url, sender, path, min_position=created["position"]).json()
    assert stack.redis_url is not None
    client = redis.Redis.from_url(stack.redis_url.reveal())
    keys = RedisKeys(stack.namespace)
    key = keys.status(created["id"])
    assert client.hget(key, "status") == b"requested"

    hits, misses = _counter(api_url, admin, "hit"), _counter(api_url, admin, "miss")
    client.delete(key)  # evicted, say
    assert _get(api_url, sender, path).json() == first  # from SQL
    assert not client.exists(key), "the status hash is the projector's alone"
    assert 0 < client.ttl(keys.cached_status(created["id"])) <= 30  # the API's own copy
    assert _get(api_url, sender, path).json() == first  # from that copy
    assert _counter(api_url, admin, "miss") == misses + 1
    assert _counter(api_url, admin, "hit") >= hits + 1
    stranger = account(Role.SENDER)
    assert _get(api_url, stranger, path).status_code == 404

    # The hash stays missing until a rebuild. A read that waits for a later write skips
    # the copy, which is older than that write, and asks SQL.
    cancelled = httpx.post(f"{api_url}{path}/cancel", json={}, headers=sender.headers).json()
    now = _get(api_url, sender, path, min_position=cancelled["position"]).json()
    assert now["status"] == "cancelled"

    # Leave the session's Redis models as the projector would have them, for the tests that
    # verify them against a replay: the hash from SQL, the status counts moved.
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url.reveal()) as conn:
        rows = conn.execute(
            sql.SQL("SELECT {} FROM notification_view WHERE notification_id = %s").format(
                HASHED_COLUMNS
            ),
            (created["id"],),
        ).fetchall()
    assert HashRefill(client, keys).rows(rows) == 1
    client.hincrby(keys.dashboard(tenant), "status:requested", -1)
    client.hincrby(keys.dashboard(tenant), "status:cancelled", 1)


def test_pages_neither_skip_nor_repeat_while_notifications_arrive(
    api_url: str, account: AccountFactory, projector: None
) -> None:
    sender = account(Role.SENDER)
    sent = [_send(api_url, sender, recipient=f"p{i}@example.com") for i in range(23)]
    for sort in ("created", "-created"):
        expected = [s["id"] for s in sent]
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 5, "sort": sort, "min_position": sent[-1]["position"]}
        while True:
            page = _get(api_url, sender, "/notifications", **params).json()
            seen += [item["id"] for item in page["items"]]
            sent.append(_send(api_url, sender))  # inserted between pages
            if page["next_cursor"] is None:
                break
            params = {"limit": 5, "sort": sort, "cursor": page["next_cursor"]}
        assert seen == (expected if sort == "created" else expected[::-1])


def test_list_filters_by_status_channel_and_recipient(
    api_url: str, account: AccountFactory, projector: None
) -> None:
    sender = account(Role.SENDER)
    email = _send(api_url, sender)
    sms = _send(api_url, sender, channel="sms", recipient="+14155550100")
    cancelled = _send(api_url, sender, recipient="bob@example.com")
    done = httpx.post(
        f"{api_url}/notifications/{cancelled['id']}/cancel", json={}, headers=sender.headers
    ).json()

    def ids(**params: Any) -> list[str]:
        response = _get(api_url, sender, "/notifications", min_position=done["position"], **params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids() == [cancelled["id"], sms["id"], email["id"]]
    assert ids(status="cancelled") == [cancelled["id"]]
    assert ids(channel="sms") == [sms["id"]]
    assert ids(recipient="ada@example.com") == [email["id"]]
    assert ids(created_after="2999-01-01T00:00:00Z") == []
    bad = _get(api_url, sender, "/notifications", channel="fax")
    assert bad.status_code == 422
    assert "channel" in bad.text
    garbled = _get(api_url, sender, "/notifications", cursor="not-a-cursor")
    assert garbled.status_code == 422
    assert "cursor" in garbled.text


def test_history_and_the_event_log_for_auditors(
    api_url: str, account: AccountFactory, projector: None
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    sender, auditor = account(Role.SENDER, tenant=tenant), account(Role.AUDITOR, tenant=tenant)
    first = _send(api_url, sender)
    cancelled = httpx.post(
        f"{api_url}/notifications/{first['id']}/cancel", json={}, headers=sender.headers
    ).json()
    second = _send(api_url, sender)
    _send(api_url, account(Role.SENDER))  # another tenant's

    history = _get(api_url, auditor, f"/notifications/{first['id']}/history").json()
    assert [e["type"] for e in history["events"]] == [
        "NotificationRequested",
        "NotificationCancelled",
    ]
    assert [e["position"] for e in history["events"]] == [first["position"], cancelled["position"]]
    assert history["events"][0]["data"]["recipient"] == "ada@example.com"
    assert _get(api_url, sender, f"/notifications/{first['id']}/history").status_code == 403
    outsider = account(Role.AUDITOR)
    assert _get(api_url, outsider, f"/notifications/{first['id']}/history").status_code == 404

    positions: list[int] = []
    after = first["position"] - 1
    while True:
        page = _get(
            api_url, auditor, "/events", after=after, limit=1, min_position=second["position"]
        ).json()
        positions += [e["position"] for e in page["events"]]
        if not page["events"]:
            break
        after = page["next_after"]
    assert positions == [first["position"], cancelled["position"], second["position"]]


def test_dashboard_dead_letters_statistics_and_queue_stats(
    api_url: str,
    account: AccountFactory,
    projector: None,
    event_store: EventStore,
    stack: Settings,
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    sender, operator = account(Role.SENDER, tenant=tenant), account(Role.OPERATOR, tenant=tenant)
    created = [_send(api_url, sender) for _ in range(4)]
    httpx.post(
        f"{api_url}/notifications/{created[0]['id']}/cancel", json={}, headers=sender.headers
    )
    dead_letter(event_store, created[1]["id"], "mailbox does not exist")
    with psycopg.connect(stack.database_url.reveal() if stack.database_url else "") as conn:
        head = conn.execute("SELECT max(notification_id) FROM stored_events").fetchone()
    assert head is not None

    dlq = _get(api_url, operator, "/admin/dlq", min_position=head[0]).json()
    assert [(i["id"], i["last_error"]) for i in dlq["items"]] == [
        (created[1]["id"], "mailbox does not exist")
    ]
    metrics = _get(api_url, operator, "/admin/metrics", min_position=head[0]).json()
    assert metrics["notifications_by_status"] == {
        "requested": 2,
        "cancelled": 1,
        "dead_lettered": 1,
    }
    with psycopg.connect(stack.database_url.reveal() if stack.database_url else "") as conn:
        attempts = conn.execute(
            "SELECT attempt, outcome, error, permanent FROM notification_attempts"
            " WHERE notification_id = %s",
            (uuid.UUID(created[1]["id"]),),
        ).fetchall()
    assert attempts == [(1, "failed", "mailbox does not exist", True)]
    dashboard = _get(api_url, operator, "/admin/dashboard").json()
    assert dashboard["statuses"] == metrics["notifications_by_status"]
    assert dashboard["events"]["NotificationRequested"] == 4
    stats = _get(api_url, operator, "/admin/queue/stats").json()
    assert stats["topic"] == notifications_topic(stack.namespace)
    assert len(stats["partitions"]) == stack.kafka_partitions
    assert {f["name"] for f in stats["followers"]} == {"relay", "projection:notifications"}
    assert _get(api_url, sender, "/admin/dashboard").status_code == 403


@pytest.mark.parametrize("path", ["/admin/dlq?cursor=%%%", "/events?after=-1"])
def test_admin_and_audit_inputs_are_checked(
    api_url: str, account: AccountFactory, path: str
) -> None:
    admin = account(Role.ADMIN)
    response = httpx.get(f"{api_url}{path}", headers=admin.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_tenants_never_see_each_others_notifications_or_events(
    api_url: str,
    account: AccountFactory,
    projector: None,
    event_store: EventStore,
    stack: Settings,
) -> None:
    ours, theirs = account(Role.ADMIN), account(Role.ADMIN)
    mine = _send(api_url, ours)
    other = _send(api_url, theirs, recipient="ada@example.com")
    dead_letter(event_store, other["id"], "blocked")
    with psycopg.connect(stack.database_url.reveal() if stack.database_url else "") as conn:
        head_row = conn.execute("SELECT max(notification_id) FROM stored_events").fetchone()
    assert head_row is not None
    head = head_row[0]

    def ids(path: str) -> list[str]:
        response = _get(api_url, ours, path, min_position=head)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids("/notifications") == [mine["id"]]
    assert ids("/admin/notifications") == [mine["id"]]
    assert ids("/admin/dlq") == []
    events = _get(api_url, ours, "/events", after=0, limit=1000, min_position=head).json()
    positions = {e["position"] for e in events["events"]}
    assert mine["position"] in positions
    assert other["position"] not in positions
    dashboard = _get(api_url, ours, "/admin/dashboard").json()
    assert dashboard["statuses"] == {"requested": 1}
    assert _get(api_url, ours, f"/notifications/{other['id']}").status_code == 404
    assert _get(api_url, ours, f"/notifications/{other['id']}/history").status_code == 404


def test_a_cached_list_is_served_until_the_tenant_changes(
    api_url: str, account: AccountFactory, projector: None
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    sender, admin = account(Role.SENDER, tenant=tenant), account(Role.ADMIN, tenant=tenant)
    first = _send(api_url, sender)
    listed = _get(api_url, sender, "/notifications", min_position=first["position"]).json()
    hits = _counter(api_url, admin, "hit", "list")
    assert _get(api_url, sender, "/notifications").json() == listed
    assert _counter(api_url, admin, "hit", "list") == hits + 1
    second = _send(api_url, sender)
    relisted = _get(api_url, sender, "/notifications", min_position=second["position"]).json()
    assert [i["id"] for i in relisted["items"]] == [second["id"], first["id"]]
    # Another tenant's change leaves this tenant's cached list alone.
    _send(api_url, account(Role.SENDER))
    hits = _counter(api_url, admin, "hit", "list")
    assert _get(api_url, sender, "/notifications").json() == relisted
    assert _counter(api_url, admin, "hit", "list") == hits + 1


def test_the_inbox_lists_a_recipients_newest_and_counts_the_unread(
    api_url: str,
    account: AccountFactory,
    projector: None,
    event_store: EventStore,
    api_settings: Settings,
) -> None:
    sender = account(Role.SENDER)
    recipient = f"{uuid.uuid4().hex[:8]}@example.com"
    sent = [_send(api_url, sender, recipient=recipient) for _ in range(3)]
    position = advance(
        event_store,
        sent[0]["id"],
        lambda n, at: notifications.start_dispatch(n, provider="sandbox", at=at),
        lambda n, at: notifications.record_sent(n, provider_message_id="m-1", at=at),
    )
    path = f"/recipients/{recipient}/inbox"
    inbox = _get(api_url, sender, f"/notifications/{sent[0]['id']}", min_position=position)
    assert inbox.json()["status"] == "sent"
    inbox = _get(api_url, sender, path).json()
    assert [i["id"] for i in inbox["items"]] == [s["id"] for s in reversed(sent)]
    assert inbox["unread"] == 1
    position = advance(
        event_store, sent[0]["id"], lambda n, at: notifications.record_opened(n, at=at)
    )
    _get(api_url, sender, f"/notifications/{sent[0]['id']}", min_position=position)
    assert _get(api_url, sender, path).json()["unread"] == 0
    assert _get(api_url, sender, path, limit=1).json()["items"][0]["id"] == sent[2]["id"]
    # The address is normalised as commands normalise it; it is never part of a key name.
    shouted = _get(api_url, sender, f"/recipients/{recipient.upper()}/inbox").json()
    assert [i["id"] for i in shouted["items"]] == [s["id"] for s in reversed(sent)]
    assert api_settings.redis_url is not None
    with redis.Redis.from_url(api_settings.redis_url.reveal()) as client:
        assert not list(client.scan_iter(match=f"*{recipient.partition('@')[0]}*"))
        filtered = _get(api_url, sender, "/notifications", recipient=recipient.upper()).json()
        assert sorted(i["id"] for i in filtered["items"]) == sorted(s["id"] for s in sent)
    assert _get(api_url, account(Role.SENDER), path).json() == {
        "recipient": recipient,
        "unread": 0,
        "items": [],
    }
