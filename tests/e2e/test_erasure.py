"""Erasure as an admin meets it: the subject's notifications are delivered through the real
SDKs (the simulator plays the providers), exported and archived; then the subject is erased
over HTTP, a scheduler carries it out, and nothing readable of it is left anywhere, while
another subject's data is untouched. Also: erasure while a notification is with a provider,
a scheduler killed mid-erasure, and bad requests."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pyarrow.parquet as pq
import pytest

from domain.identity.roles import Role
from infrastructure.devstack.dev import role_spec, simulator_spec
from infrastructure.devstack.servers import free_port
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.kafka.topics import notifications_topic
from infrastructure.settings import Settings
from tests.e2e.conftest import Account, AccountFactory, herald
from tests.kafka_helpers import end_offsets, eventually, scan_topic

NEVER = "0 0 1 1 *"
SCHEDULES = "; ".join(
    f"{job}={NEVER}" for job in ("archive", "cleanup", "warm-read-models", "verify-sample")
)
FINAL = {"delivered", "cancelled", "dead_lettered", "opened"}


@dataclass
class Stack:
    settings: Settings
    supervisor: Supervisor
    simulator: str

    def configure(self, **config: float) -> None:
        body = {"latency_ms": 0, "webhook_delay_ms": 10, **config}
        response = httpx.put(f"{self.simulator}/_simulator/config", json=body)
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def roles(
    api_settings: Settings, api_url: str, projector: None, account: AccountFactory
) -> Iterator[Stack]:
    """A simulator, a dispatcher and a scheduler that polls for erasures every half second;
    ready once the dispatcher has sent a first notification."""
    settings = msgspec.structs.replace(
        api_settings,
        simulator_url=f"http://127.0.0.1:{free_port()}",
        retry_base_ms=20,
        retry_max_ms=200,
        provider_timeout_ms=5000,
        dispatch_lease_s=10,
        job_schedules=SCHEDULES,
        scheduler_poll_s=0.5,
    )
    with Supervisor() as supervisor:
        supervisor.start(simulator_spec(settings))
        supervisor.start(role_spec("dispatcher", settings))
        supervisor.start(role_spec("scheduler", settings))
        stack = Stack(settings, supervisor, settings.simulator_url)
        stack.configure()
        sender = account(Role.SENDER)
        probe = _send(api_url, sender, Person.new().messages(1, 0, 0))
        eventually(lambda: _all_final(settings, probe), 60, "the dispatcher to be ready")
        yield stack


def _query(settings: Settings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url.reveal()) as conn:
        return conn.execute(sql, params).fetchall()


def _send(api_url: str, sender: Account, items: list[dict[str, Any]]) -> list[str]:
    response = httpx.post(
        f"{api_url}/notifications/batch", json={"notifications": items}, headers=sender.headers
    )
    assert response.status_code == 202, response.text
    ids: list[str] = response.json()["ids"]
    return ids


def _statuses(settings: Settings, ids: list[str]) -> dict[str, str]:
    rows = _query(
        settings,
        "SELECT notification_id::text, status FROM notification_view"
        " WHERE notification_id = ANY(%s::uuid[])",
        ids,
    )
    return dict(rows)


def _all_final(settings: Settings, ids: list[str]) -> bool:
    statuses = _statuses(settings, ids)
    return len(statuses) == len(ids) and set(statuses.values()) <= FINAL


@dataclass(frozen=True)
class Person:
    """One person's three addresses: three recipient subjects."""

    email: str
    phone: str
    device: str

    @classmethod
    def new(cls) -> Person:
        digits = f"{uuid.uuid4().int % 10**7:07d}"
        return cls(
            f"p-{uuid.uuid4().hex[:8]}@example.com", f"+1415{digits}", f"dev-{uuid.uuid4().hex}"
        )

    def messages(self, email: int, sms: int, push: int) -> list[dict[str, Any]]:
        body = f"secret body for {self.email}"
        return (
            [{"channel": "email", "recipient": self.email, "subject": "Hi", "body": body}] * email
            + [{"channel": "sms", "recipient": self.phone, "body": body}] * sms
            + [{"channel": "push", "recipient": self.device, "subject": "Hi", "body": body}] * push
        )

    @property
    def secrets(self) -> list[str]:
        return [self.email, self.phone, self.device, f"secret body for {self.email}"]


def _erase(api_url: str, admin: Account, **subject: str) -> str:
    response = httpx.post(f"{api_url}/data-pipeline/erasures", json=subject, headers=admin.headers)
    assert response.status_code == 202, response.text
    erasure_id: str = response.json()["erasure_id"]
    return erasure_id


def _erasure(api_url: str, admin: Account, erasure_id: str) -> dict[str, Any]:
    response = httpx.get(f"{api_url}/data-pipeline/erasures/{erasure_id}", headers=admin.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _receipt(api_url: str, admin: Account, erasure_id: str, timeout: float = 90) -> dict[str, Any]:
    try:
        eventually(
            lambda: _erasure(api_url, admin, erasure_id)["status"] == "done",
            timeout,
            f"erasure {erasure_id} to finish",
        )
    except AssertionError:
        raise AssertionError(f"unfinished: {_erasure(api_url, admin, erasure_id)}") from None
    receipt: dict[str, Any] = _erasure(api_url, admin, erasure_id)["receipt"]
    return receipt


def _export(
    api_url: str, admin: Account, settings: Settings, kind: str, fmt: str, **more: Any
) -> Path:
    response = httpx.post(
        f"{api_url}/data-pipeline/exports",
        json={"kind": kind, "format": fmt, **more},
        headers=admin.headers,
    )
    assert response.status_code == 202, response.text
    export_id = response.json()["id"]

    def done() -> bool:
        job = httpx.get(f"{api_url}/data-pipeline/exports/{export_id}", headers=admin.headers)
        return bool(job.json()["status"] == "done")

    eventually(done, 60, f"the {kind} export")
    rows = _query(
        settings, "SELECT file FROM export_jobs WHERE export_id = %s", uuid.UUID(export_id)
    )
    return Path(rows[0][0])


def _raw_event_bytes(settings: Settings, ids: list[str]) -> bytes:
    rows = _query(
        settings,
        "SELECT state, coalesce(meta, '') FROM stored_events WHERE originator_id = ANY(%s::uuid[])",
        ids,
    )
    return b"".join(bytes(state) + bytes(meta) for state, meta in rows)


def test_a_full_life_then_erasure_leaves_nothing_readable_and_others_untouched(
    api_url: str, account: AccountFactory, roles: Stack, stack: Settings
) -> None:
    admin = account(Role.ADMIN)
    sender = account(Role.SENDER, tenant=admin.tenant)
    ada, bob = Person.new(), Person.new()
    retention = {"notifications_days": 30, "events_days": 60}
    policy = httpx.put(f"{api_url}/data-pipeline/retention", json=retention, headers=admin.headers)
    assert policy.status_code == 200, policy.text

    # Ten of each person's emails are delivered, then archived (the clock moved on 40 days).
    early = {p: _send(api_url, sender, p.messages(10, 0, 0)) for p in (ada, bob)}
    eventually(lambda: _all_final(stack, early[ada] + early[bob]), 150, "the first deliveries")
    at = (datetime.now(UTC) + timedelta(days=40)).isoformat()
    ran = herald(stack, "archive", "run", "--at", at, "--tenant", admin.tenant)
    assert ran.returncode == 0, ran.stderr
    eventually(
        lambda: not _statuses(stack, early[ada] + early[bob]), 30, "the archival to be projected"
    )

    # Forty more each, over three channels: 50 notifications a person.
    later = {p: _send(api_url, sender, p.messages(10, 15, 15)) for p in (ada, bob)}
    eventually(lambda: _all_final(stack, later[ada] + later[bob]), 150, "the later deliveries")
    twilio_before = httpx.get(f"{roles.simulator}/_simulator/stats").json()["twilio_messages"]
    exports = [
        _export(api_url, admin, stack, "notifications", "csv", include_archived=True),
        _export(api_url, admin, stack, "events", "ndjson"),
    ]
    for file in exports:
        assert ada.email in file.read_text()

    erasures = [
        _erase(api_url, admin, recipient=address.upper() if "@" in address else address)
        for address in (ada.email, ada.phone, ada.device)
    ]
    receipts = [_receipt(api_url, admin, erasure_id) for erasure_id in erasures]
    email, sms, push = receipts
    assert email["stores"]["notifications"]["found"] == 10
    assert email["stores"]["archives"]["found"] == 10
    assert sms["stores"]["notifications"]["found"] == 15
    assert sms["stores"]["provider:twilio"] == {"found": 15, "scrubbed": 15, "note": ""}
    assert "cannot delete" in email["stores"]["provider:sendgrid"]["note"]
    assert push["stores"]["notifications"]["found"] == 15
    assert all(len(r["destroyed_keys"]) == 1 and not r["nothing_found"] for r in receipts)
    # The CSV held Ada's 20 emails (10 of them archived), the NDJSON their events.
    assert email["stores"]["exports"]["found"] >= 20
    twilio_after = httpx.get(f"{roles.simulator}/_simulator/stats").json()["twilio_messages"]
    assert twilio_before - twilio_after == 15

    # Nothing of Ada is readable: not the read models, the event store, Kafka, the files.
    gone = later[ada]
    statuses = _statuses(stack, gone)
    assert set(statuses.values()) == {"erased"}
    shown = httpx.get(f"{api_url}/notifications/{gone[0]}", headers=admin.headers).json()
    assert shown["recipient"] == ""
    history = httpx.get(f"{api_url}/notifications/{gone[0]}/history", headers=admin.headers)
    assert ada.email not in history.text
    assert "[erased]" in history.text
    raw = _raw_event_bytes(stack, gone + early[ada])
    for secret in ada.secrets:
        assert secret.encode() not in raw
        for file in exports:
            assert secret not in file.read_text()
    seen: list[bytes] = []
    topic = notifications_topic(stack.namespace)
    assert stack.kafka_bootstrap is not None
    ends = end_offsets(stack.kafka_bootstrap, topic)
    scan_topic(
        stack.kafka_bootstrap,
        topic,
        lambda message: seen.append(message.value() or b""),
        lambda: len(seen) >= sum(ends.values()),
    )
    on_kafka = b"".join(seen)
    assert not [s for s in ada.secrets if s.encode() in on_kafka]
    archives = {
        row[0]
        for row in _query(stack, "SELECT path FROM archives WHERE tenant_id = %s", admin.tenant)
    }
    archived_recipients = [
        r
        for path in archives
        for r in pq.read_table(stack.archive_path / path, columns=["recipient"])
        .column(0)
        .to_pylist()
    ]
    assert ada.email not in archived_recipients
    assert archived_recipients.count(bob.email) == 10

    # The verifier agrees: nothing of Ada anywhere, Bob where he should be.
    logs = ["--logs", str(Path(stack.dev_dir).parent / "logs")]
    also = [arg for secret in ada.secrets[1:] for arg in ("--also", secret)]
    clean = herald(stack, "gdpr", "verify", ada.email, *also, *logs)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "nothing found" in clean.stdout
    held = herald(stack, "gdpr", "verify", bob.email, *logs)
    assert held.returncode == 1, held.stdout + held.stderr
    for store in ("sql: notification_view.recipient", "files:", "redis:"):
        assert f"FOUND in {store}" in held.stdout, held.stdout

    # Bob is untouched, and readable everywhere.
    assert {s for s in _statuses(stack, later[bob]).values()} <= FINAL
    bob_history = httpx.get(
        f"{api_url}/notifications/{later[bob][0]}/history", headers=admin.headers
    )
    assert bob.email in bob_history.text
    assert f"secret body for {bob.email}" in bob_history.text
    assert all(bob.email in file.read_text() for file in exports)

    # The projections still equal a replay of the log.
    for projection in ("notifications", "audit"):
        verified = herald(stack, "projections", "verify", projection)
        assert verified.returncode == 0, verified.stdout + verified.stderr

    # Asking again after it is done starts a new erasure that finds nothing new.
    again = _receipt(api_url, admin, _erase(api_url, admin, recipient=ada.email))
    assert again["nothing_found"] is True, again
    stats = httpx.get(f"{api_url}/data-pipeline/anonymization/stats", headers=admin.headers)
    assert stats.status_code == 200, stats.text
    assert stats.json()["completed"] == 4
    assert stats.json()["notifications_erased"] == 40


def test_erasure_cancels_what_is_unsent_and_lets_what_is_with_a_provider_finish(
    api_url: str, account: AccountFactory, roles: Stack, stack: Settings
) -> None:
    admin = account(Role.ADMIN)
    person = Person.new()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    (scheduled,) = _send(api_url, admin, [{**person.messages(0, 1, 0)[0], "send_at": later}])
    roles.configure(latency_ms=3000)
    try:
        (in_flight,) = _send(api_url, admin, person.messages(0, 1, 0))
        eventually(
            lambda: _statuses(stack, [in_flight]).get(in_flight) == "dispatching",
            150,
            "the send to be with the provider",
        )
        receipt = _receipt(api_url, admin, _erase(api_url, admin, recipient=person.phone))
    finally:
        roles.configure()
    assert receipt["stores"]["notifications"]["found"] == 2
    assert "1 not yet sent were cancelled" in receipt["stores"]["notifications"]["note"]

    def events(notification_id: str) -> list[str]:
        response = httpx.get(
            f"{api_url}/notifications/{notification_id}/history", headers=admin.headers
        )
        return [event["type"] for event in response.json()["events"]]

    assert events(scheduled)[-2:] == ["NotificationCancelled", "NotificationErased"]
    sent = events(in_flight)
    assert "NotificationSent" in sent, sent
    assert sent[-1] == "NotificationErased", sent
    history = httpx.get(f"{api_url}/notifications/{in_flight}/history", headers=admin.headers)
    assert person.phone not in history.text


def test_a_scheduler_killed_mid_erasure_is_followed_by_one_that_finishes_it(
    api_url: str, account: AccountFactory, roles: Stack, stack: Settings
) -> None:
    admin = account(Role.ADMIN)
    person = Person.new()
    ids = _send(api_url, admin, person.messages(3, 0, 0))
    eventually(lambda: _all_final(stack, ids), 150, "the deliveries")
    # A scheduler that waits long for caches to forget the key: killed during that wait.
    supervisor = roles.supervisor
    slow = dataclasses.replace(
        role_spec("scheduler", msgspec.structs.replace(roles.settings, key_cache_s=30)),
        name="slow-scheduler",
    )
    os.kill(supervisor.pids["scheduler"], signal.SIGSTOP)  # the regular one sits this out
    try:
        supervisor.start(slow)
        erasure_id = _erase(api_url, admin, recipient=person.email)
        eventually(
            lambda: _erasure(api_url, admin, erasure_id)["step"] == "forget_keys",
            60,
            "the erasure to reach its wait",
        )
        os.kill(supervisor.pids["slow-scheduler"], signal.SIGKILL)
        time.sleep(0.5)
    finally:
        os.kill(supervisor.pids["scheduler"], signal.SIGCONT)
    receipt = _receipt(api_url, admin, erasure_id)
    assert receipt["stores"]["notifications"] == {"found": 3, "scrubbed": 3, "note": ""}
    assert _erasure(api_url, admin, erasure_id)["attempts"] == 2
    recorded = _query(
        stack,
        "SELECT topic FROM stored_events WHERE originator_id = %s ORDER BY originator_version",
        uuid.UUID(erasure_id),
    )
    assert [topic.split("@")[0] for (topic,) in recorded] == [
        "SubjectErasureRequested",
        "SubjectErased",
    ]


def test_unknown_subjects_get_a_receipt_and_bad_requests_name_the_field(
    api_url: str, account: AccountFactory, roles: Stack
) -> None:
    admin = account(Role.ADMIN)
    nobody = _receipt(api_url, admin, _erase(api_url, admin, recipient="nobody@example.com"))
    assert nobody["nothing_found"] is True
    by_path = httpx.delete(
        f"{api_url}/data-pipeline/anonymize/{uuid.uuid4()}", headers=admin.headers
    )
    assert by_path.status_code == 202, by_path.text
    assert _receipt(api_url, admin, by_path.json()["erasure_id"])["nothing_found"] is True

    cases = [
        ({"recipient": "not an address"}, "recipient"),
        ({"recipient": "a@example.com", "user_id": str(uuid.uuid4())}, "recipient"),
        ({}, "recipient"),
        ({"user_id": "nope"}, "user_id"),
        ({"recipient": "a@example.com", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = httpx.post(f"{api_url}/data-pipeline/erasures", json=body, headers=admin.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in response.text, (body, response.text)
    sender = account(Role.SENDER, tenant=admin.tenant)
    refused = httpx.post(
        f"{api_url}/data-pipeline/erasures",
        json={"recipient": "a@example.com"},
        headers=sender.headers,
    )
    assert refused.status_code == 403
    other = account(Role.ADMIN)
    hidden = httpx.get(
        f"{api_url}/data-pipeline/erasures/{by_path.json()['erasure_id']}", headers=other.headers
    )
    assert hidden.status_code == 404
