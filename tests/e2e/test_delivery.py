"""Delivery through the real SDKs: the simulator plays SendGrid, Twilio and FCM over HTTP.

The module runs one simulator and two dispatchers (one consumer group, one queue) with an
api, relay and projector of its own, on its own database and topics (its tests kill
dispatchers), so every test also shows that two dispatchers never both send one attempt.
Each test sets the simulator's failure rates through its control API and reads outcomes the
way users do: over the API, from the dead-letter topic, and from the simulator's own count
of calls per dedupe key.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
import redis
from confluent_kafka import Message

from domain.identity.roles import Role
from infrastructure.devstack.servers import free_port
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.kafka.topics import dead_letter_topic
from infrastructure.providers.protection import breaker_key
from infrastructure.settings import Settings
from tests.conftest import new_database
from tests.e2e.conftest import Account, AccountFactory, OwnStack, own_stack
from tests.kafka_helpers import eventually, scan_topic

CHANNELS = ("email", "sms", "push")
DISPATCHERS = ("dispatcher-1", "dispatcher-2")
# Email and SMS are delivered by the providers' webhooks; push by the app's receipt, which
# the simulator posts in the device's place.
ENDED = {"delivered", "dead_lettered", "cancelled"}


def _ended(item: dict[str, Any]) -> bool:
    return item.get("status") in ENDED


@dataclass
class Delivery:
    settings: Settings
    supervisor: Supervisor
    simulator: str
    own: OwnStack

    def configure(self, **rates: float) -> None:
        config = {
            "latency_ms": 0,
            "transient_rate": 0.0,
            "throttle_rate": 0.0,
            "timeout_rate": 0.0,
            "permanent_rate": 0.0,
            "webhook_delay_ms": 10,
            **rates,
        }
        response = httpx.put(f"{self.simulator}/_simulator/config", json=config)
        assert response.status_code == 200, response.text

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.simulator}/_simulator/stats").json()
        return body

    def kill_dispatchers(self) -> dict[str, int]:
        """kill -9 every dispatcher; returns the pids killed."""
        killed = {name: self.supervisor.pids[name] for name in DISPATCHERS}
        for pid in killed.values():
            os.kill(pid, signal.SIGKILL)
        return killed

    def restart_dispatchers(self, killed: dict[str, int]) -> None:
        """Let the supervisor start the killed dispatchers again (after its back-off)."""
        deadline = time.monotonic() + 30
        while any(self.supervisor.pids[name] == pid for name, pid in killed.items()):
            assert time.monotonic() < deadline, "the dispatchers were not restarted"
            self.supervisor.check()
            time.sleep(0.1)


@pytest.fixture(scope="module")
def delivery(api_settings: Settings, stack: Settings) -> Iterator[Delivery]:
    settings = msgspec.structs.replace(
        api_settings,
        simulator_url=f"http://127.0.0.1:{free_port()}",
        retry_base_ms=20,
        retry_max_ms=200,
        provider_timeout_ms=1000,
        dispatch_lease_s=5,
        breaker_min_calls=10,
        breaker_open_s=2,
    )
    templates = settings.templates_path
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "order-shipped.toml").write_text(
        'subject = "Order $order shipped"\nbody = "Hello $name, order $order is on its way."\n'
    )
    # One consumer group: the dispatchers share partitions and the queue. The group is the
    # module's own, as is everything else: the embedded broker never drops the members of a
    # killed dispatcher, and a group holding them hands a newcomer no partitions.
    with (
        new_database(stack) as database,
        own_stack(settings, database, "simulator", *DISPATCHERS) as own,
    ):
        yield Delivery(own.settings, own.supervisor, settings.simulator_url, own)


@pytest.fixture(scope="module")
def api_url(delivery: Delivery) -> str:
    """The module's own api."""
    return delivery.own.api_url


@pytest.fixture(scope="module")
def account(delivery: Delivery) -> AccountFactory:
    """Accounts of the module's own api."""
    return delivery.own.account


def _request(channel: str, index: int, **fields: Any) -> dict[str, Any]:
    recipients = {
        "email": f"user{index}@example.com",
        "sms": f"+1415555{index % 10_000:04d}",
        "push": f"device-{index}",
    }
    return {
        "channel": channel,
        "recipient": recipients[channel],
        "subject": "Hello",
        "body": f"message {index}",
        **fields,
    }


def _send_batch(api_url: str, account: Account, items: list[dict[str, Any]]) -> list[str]:
    response = httpx.post(
        f"{api_url}/notifications/batch",
        json={"notifications": items},
        headers=account.headers,
        timeout=60,
    )
    assert response.status_code == 202, response.text
    return [str(i) for i in response.json()["ids"]]


def _all_items(api_url: str, account: Account, path: str) -> list[dict[str, Any]]:
    """Every item of a paged listing, following next_cursor."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 200}
    while True:
        page = httpx.get(
            f"{api_url}{path}", params=params, headers=account.headers, timeout=30
        ).json()
        items += page["items"]
        if not page.get("next_cursor"):
            return items
        params["cursor"] = page["next_cursor"]


def _statuses(api_url: str, account: Account) -> dict[str, dict[str, Any]]:
    """Every notification of the account's tenant, from the read API."""
    return {item["id"]: item for item in _all_items(api_url, account, "/notifications")}


def _wait_until_ended(
    api_url: str, account: Account, ids: list[str], timeout: float
) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}

    def ended() -> bool:
        nonlocal latest
        latest = _statuses(api_url, account)
        return all(_ended(latest.get(i, {})) for i in ids)

    try:
        eventually(ended, timeout, "every notification to end")
    except AssertionError:
        open_ = [(i, latest.get(i, {}).get("status")) for i in ids if not _ended(latest.get(i, {}))]
        raise AssertionError(f"{len(open_)} notifications did not end: {open_[:5]}") from None
    return latest


def _history(api_url: str, account: Account, notification_id: str) -> list[str]:
    response = httpx.get(
        f"{api_url}/notifications/{notification_id}/history", headers=account.headers
    )
    assert response.status_code == 200, response.text
    return [event["type"] for event in response.json()["events"]]


def _attempt_starts(
    api_url: str, account: Account, notification_id: str, attempt: int, *, before: datetime
) -> list[tuple[str, bool]]:
    """The events that started or resumed one attempt, in order, each with whether it was
    recorded before `before`."""
    response = httpx.get(
        f"{api_url}/notifications/{notification_id}/history", headers=account.headers
    )
    assert response.status_code == 200, response.text
    return [
        (event["type"], datetime.fromisoformat(event["at"]) < before)
        for event in response.json()["events"]
        if event["type"] in {"DispatchStarted", "DispatchResumed"}
        and event["data"].get("attempt") == attempt
    ]


def _dead_letter_ids(api_url: str, admin: Account) -> set[str]:
    return {item["id"] for item in _all_items(api_url, admin, "/admin/dlq")}


def test_a_thousand_notifications_end_delivered_or_dead_lettered_with_a_reason(
    api_url: str, account: AccountFactory, delivery: Delivery
) -> None:
    delivery.configure(
        transient_rate=0.05, throttle_rate=0.03, timeout_rate=0.02, permanent_rate=0.02
    )
    sender = account(Role.SENDER)
    admin = account(Role.ADMIN, tenant=sender.tenant)
    items = [_request(CHANNELS[i % 3], i) for i in range(1000)]
    ids = _send_batch(api_url, sender, items)

    final = _wait_until_ended(api_url, sender, ids, timeout=240)
    dead = {i for i in ids if final[i]["status"] == "dead_lettered"}
    for i in ids:
        if i not in dead:
            assert final[i]["status"] == "delivered", final[i]
        else:
            assert final[i]["last_error"], final[i]
    assert 0 < len(dead) < 100  # about 2 % refused for good, by the simulator's dice

    stats = delivery.stats()
    ours = {k: n for k, n in stats["calls"].items() if k.split(":")[0] in set(ids)}
    assert len({k.split(":")[0] for k in ours}) == len(ids)
    repeated = {k: n for k, n in ours.items() if n > 1}
    assert not repeated, f"provider calls repeated for one attempt: {repeated}"
    assert _dead_letter_ids(api_url, admin) == dead

    letters: dict[str, int] = {}

    def visit(message: Message) -> None:
        body = msgspec.json.decode(message.value() or b"{}")
        if body.get("notification_id") in dead:
            letters[body["notification_id"]] = letters.get(body["notification_id"], 0) + 1

    assert delivery.settings.kafka_bootstrap is not None
    scan_topic(
        delivery.settings.kafka_bootstrap,
        dead_letter_topic(delivery.settings.namespace),
        visit,
        lambda: set(letters) == dead,
    )
    assert set(letters) == dead

    # An operator retries one of them once the provider behaves: it is delivered.
    delivery.configure()
    retried = sorted(dead)[0]
    response = httpx.post(f"{api_url}/admin/notifications/{retried}/retry", headers=admin.headers)
    assert response.status_code == 202, response.text
    eventually(
        lambda: _statuses(api_url, sender)[retried]["status"] == "delivered",
        30,
        "the retried notification to be delivered",
    )
    auditor = account(Role.AUDITOR, tenant=sender.tenant)
    assert "RetryRequested" in _history(api_url, auditor, retried)


def _settled_calls(delivery: Delivery) -> dict[str, int]:
    """The simulator's calls once those already on the wire have all arrived: unchanged for
    a second (a loaded machine may take longer than that to hand them over)."""
    calls = dict(delivery.stats()["calls"])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = dict(delivery.stats()["calls"])
        if now == calls:
            break
        calls = now
    return calls


def test_a_dispatcher_killed_mid_stream_loses_nothing_and_sends_nothing_twice(
    api_url: str, account: AccountFactory, delivery: Delivery
) -> None:
    delivery.configure(latency_ms=20)
    sender = account(Role.SENDER)
    ids = _send_batch(api_url, sender, [_request(CHANNELS[i % 3], i) for i in range(600)])

    def some_sent() -> bool:
        calls = delivery.stats()["calls"]
        return sum(1 for k in calls if k.split(":")[0] in set(ids)) >= 100

    eventually(some_sent, 60, "the dispatcher to be mid-stream")
    killed = delivery.kill_dispatchers()
    killed_at = datetime.now(UTC)
    before_restart = _settled_calls(delivery)
    delivery.restart_dispatchers(killed)

    final = _wait_until_ended(api_url, sender, ids, timeout=120)
    assert all(final[i]["status"] != "dead_lettered" for i in ids)
    stats = delivery.stats()
    accepted = {k: n for k, n in stats["accepted"].items() if k.split(":")[0] in set(ids)}
    assert len({k.split(":")[0] for k in accepted}) == len(ids)
    assert max(accepted.values()) == 1, "a message reached a provider twice"
    # A call goes out only after its attempt's start is recorded, and an attempt is made
    # again only when it was started before the kill and its answer died with the
    # dispatchers: each call of a repeated attempt matches a DispatchStarted (before the
    # kill) or a DispatchResumed in the notification's history.
    repeated = {k: n for k, n in stats["calls"].items() if n > 1 and k.split(":")[0] in set(ids)}
    auditor = account(Role.AUDITOR, tenant=sender.tenant)
    unexplained = {}
    for key, calls in repeated.items():
        nid, attempt = key.split(":")
        starts = _attempt_starts(api_url, auditor, nid, int(attempt), before=killed_at)
        began_before_kill = bool(starts) and starts[0] == ("DispatchStarted", True)
        resumed = sum(1 for kind, _ in starts if kind == "DispatchResumed")
        if not began_before_kill or calls > 1 + resumed:
            unexplained[key] = (before_restart.get(key), calls, starts)
    assert not unexplained, f"calls with no start before the kill or resume: {unexplained}"
    assert set(repeated.values()) <= {2}, repeated


def test_a_failed_channel_falls_back_to_the_next_and_every_hop_is_an_event(
    api_url: str, account: AccountFactory, delivery: Delivery
) -> None:
    delivery.configure()
    sender = account(Role.SENDER)
    # FCM refuses the token, the number has unsubscribed from SMS, and email delivers.
    [nid] = _send_batch(
        api_url,
        sender,
        [
            {
                "channel": "push",
                "recipient": "invalid-device",
                "fallback": ["sms", "email"],
                "fallback_recipients": {"sms": "+15005550004", "email": "ada@example.com"},
                "subject": "Hello",
                "body": "falls back twice",
            }
        ],
    )
    final = _wait_until_ended(api_url, sender, [nid], timeout=30)[nid]
    assert (final["status"], final["channel"]) == ("delivered", "email")
    history = _history(api_url, account(Role.AUDITOR, tenant=sender.tenant), nid)
    assert history.count("ChannelFallenBack") == 2, history
    assert history.count("DeliveryFailed") == 2, history
    assert history[-1] == "NotificationDelivered"


def test_a_template_missing_a_variable_fails_for_good_with_the_reason(
    api_url: str, account: AccountFactory, delivery: Delivery
) -> None:
    delivery.configure()
    sender = account(Role.SENDER)
    good, missing = _send_batch(
        api_url,
        sender,
        [
            {
                "channel": "email",
                "recipient": "ada@example.com",
                "template_id": "order-shipped",
                "variables": {"name": "Ada", "order": "42"},
            },
            {
                "channel": "email",
                "recipient": "bob@example.com",
                "template_id": "order-shipped",
                "variables": {"name": "Bob"},
            },
        ],
    )
    final = _wait_until_ended(api_url, sender, [good, missing], timeout=30)
    assert final[good]["status"] == "delivered"
    assert final[missing]["status"] == "dead_lettered"
    assert "needs variable 'order'" in final[missing]["last_error"]
    auditor = account(Role.AUDITOR, tenant=sender.tenant)
    assert _history(api_url, auditor, missing).count("DispatchStarted") == 1


def test_the_circuit_opens_on_errors_and_closes_after_probes(
    api_url: str, account: AccountFactory, delivery: Delivery
) -> None:
    admin = account(Role.ADMIN)

    def circuit() -> str:
        body = httpx.get(f"{api_url}/health").json()
        return str(body["providers"]["twilio"]["circuit"])

    # The breaker counts calls in a fixed window; earlier tests' successful SMS calls in the
    # same window would dilute the error rate, so this test starts from a fresh window.
    assert delivery.settings.redis_url is not None
    with redis.Redis.from_url(delivery.settings.redis_url.reveal()) as client:
        client.delete(breaker_key(delivery.settings.namespace, "twilio"))
    delivery.configure(transient_rate=1.0)
    sender = account(Role.SENDER, tenant=admin.tenant)
    ids = _send_batch(
        api_url,
        sender,
        [_request("sms", i, priority="critical") for i in range(40)],
    )
    eventually(lambda: circuit() == "open", 30, "the twilio circuit to open")
    metrics = httpx.get(f"{api_url}/admin/metrics", headers=admin.headers).json()
    assert metrics["providers"]["twilio"]["opened_total"] >= 1
    assert metrics["providers"]["twilio"]["mode"] == "sandbox"

    delivery.configure()
    eventually(lambda: circuit() == "closed", 30, "the twilio circuit to close again")
    final = _wait_until_ended(api_url, sender, ids, timeout=60)
    assert sum(1 for i in ids if final[i]["status"] == "delivered") >= 30


def test_scheduled_sends_fire_after_a_dispatcher_restart(
    api_url: str, account: AccountFactory, delivery: Delivery
) -> None:
    delivery.configure()
    sender = account(Role.SENDER)
    # More than the minute within which a send_at counts as "now".
    send_at = datetime.now(UTC) + timedelta(seconds=65)
    ids = _send_batch(
        api_url,
        sender,
        [_request("email", i, send_at=send_at.isoformat()) for i in range(5)],
    )
    eventually(
        lambda: {s["status"] for s in _statuses(api_url, sender).values()} == {"scheduled"},
        10,
        "the notifications to show as scheduled",
    )
    killed = delivery.kill_dispatchers()  # the schedule must survive in the log and the queue
    delivery.restart_dispatchers(killed)
    final = _wait_until_ended(api_url, sender, ids, timeout=120)
    for i in ids:
        assert final[i]["status"] == "delivered"
        assert datetime.fromisoformat(final[i]["dispatched_at"]) >= send_at


def test_critical_notifications_overtake_a_backlog_of_low_ones(
    api_url: str, account: AccountFactory, delivery: Delivery
) -> None:
    # Slow enough that the low backlog takes seconds to drain, whatever the machine's speed.
    delivery.configure(latency_ms=200)
    sender = account(Role.SENDER)
    low = _send_batch(api_url, sender, [_request("push", i, priority="low") for i in range(1500)])
    critical = _send_batch(
        api_url, sender, [_request("push", i, priority="critical") for i in range(10)]
    )
    final = _wait_until_ended(api_url, sender, low + critical, timeout=120)
    low_times = sorted(datetime.fromisoformat(final[i]["sent_at"]) for i in low)
    last_critical = max(datetime.fromisoformat(final[i]["sent_at"]) for i in critical)
    assert last_critical < low_times[len(low_times) // 2], "critical waited behind low"
