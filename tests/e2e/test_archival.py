"""Archival, with the clock moved forward by `herald archive run --at`, never by sleeping:
exactly the notifications past retention leave the read models and, later, the event store;
the archives verify, the projections still equal a replay of the log, exports can include
the archives, and a restore brings them back once however often it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pyarrow.parquet as pq

from domain.identity.roles import Role
from infrastructure.settings import Settings
from tests.e2e.conftest import Account, AccountFactory, herald
from tests.kafka_helpers import eventually

EMAIL = {"channel": "email", "recipient": "ada@example.com", "subject": "s", "body": "b"}


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _notifications(api_url: str, admin: Account, count: int, cancel: int) -> list[str]:
    """`count` notifications, the first `cancel` of them cancelled (a final status)."""
    body = {"notifications": [EMAIL] * count}
    made = httpx.post(f"{api_url}/notifications/batch", json=body, headers=admin.headers)
    assert made.status_code == 202, made.text
    ids: list[str] = made.json()["ids"]
    for notification_id in ids[:cancel]:
        cancelled = httpx.post(
            f"{api_url}/notifications/{notification_id}/cancel",
            json={"reason": "test"},
            headers=admin.headers,
        )
        assert cancelled.status_code == 202, cancelled.text
    return ids


def _query(settings: Settings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url.reveal()) as conn:
        return conn.execute(sql, params).fetchall()


def _projected(settings: Settings, ids: list[str], status: str) -> bool:
    rows = _query(
        settings,
        "SELECT count(*) FROM notification_view WHERE notification_id = ANY(%s::uuid[])"
        " AND status = %s",
        ids,
        status,
    )
    return int(rows[0][0]) == len(ids)


def _tombstoned(settings: Settings, ids: list[str]) -> int:
    rows = _query(
        settings,
        "SELECT count(*) FROM archived_notifications WHERE notification_id = ANY(%s::uuid[])"
        " AND restored_position IS NULL",
        ids,
    )
    return int(rows[0][0])


def _events_of(settings: Settings, ids: list[str]) -> int:
    rows = _query(
        settings, "SELECT count(*) FROM stored_events WHERE originator_id = ANY(%s::uuid[])", ids
    )
    return int(rows[0][0])


def test_archival_takes_exactly_what_is_past_retention_and_restore_brings_it_back(
    api_url: str, account: AccountFactory, projector: None, stack: Settings
) -> None:
    admin = account(Role.ADMIN)
    other = account(Role.ADMIN)
    retention = {"notifications_days": 30, "events_days": 60}
    set_policy = httpx.put(
        f"{api_url}/data-pipeline/retention", json=retention, headers=admin.headers
    )
    assert set_policy.status_code == 200, set_policy.text
    ids = _notifications(api_url, admin, 30, cancel=20)
    final, open_ = ids[:20], ids[20:]
    others = _notifications(api_url, other, 5, cancel=5)
    eventually(lambda: _projected(stack, final, "cancelled"), 30, "the cancellations")
    eventually(lambda: _projected(stack, others, "cancelled"), 30, "the other tenant's")
    now = datetime.now(UTC)

    # A dry run changes nothing.
    at_40 = (now + timedelta(days=40)).isoformat()
    dry = _ok(herald(stack, "archive", "run", "--at", at_40, "--tenant", admin.tenant, "--dry-run"))
    assert f"{admin.tenant}: 20 notification(s) past retention" in dry
    assert _tombstoned(stack, final) == 0

    # 40 days on: past this tenant's 30 days, within the other's default 90.
    ran = _ok(herald(stack, "archive", "run", "--at", at_40, "--tenant", admin.tenant))
    assert f"{admin.tenant}: 20 archived in 1 file(s)" in ran, ran
    assert "0 event(s) removed" in ran
    ran = _ok(herald(stack, "archive", "run", "--at", at_40, "--tenant", other.tenant))
    assert f"{other.tenant}: 0 archived" in ran

    eventually(lambda: _tombstoned(stack, final) == 20, 30, "the archival to be projected")
    assert _tombstoned(stack, open_ + others) == 0
    assert _query(
        stack,
        "SELECT count(*) FROM notification_view WHERE notification_id = ANY(%s::uuid[])",
        final,
    ) == [(0,)]
    assert _events_of(stack, final) == 20 * 3  # requested, cancelled, archived: still there
    (path,) = {
        row[0]
        for row in _query(
            stack,
            "SELECT archive FROM archived_notifications WHERE notification_id = ANY(%s::uuid[])",
            final,
        )
    }
    assert path.startswith(f"tenant_id={admin.tenant}/day={now.date().isoformat()}/")

    # Out of every read model: Redis (the status hash is read first) and SQL alike.
    gone = httpx.get(f"{api_url}/notifications/{final[0]}", headers=admin.headers)
    assert gone.status_code == 410, gone.text
    assert gone.json()["archive"] == path
    history = httpx.get(f"{api_url}/notifications/{final[0]}/history", headers=admin.headers)
    assert history.status_code == 410
    assert path in history.json()["detail"]
    assert httpx.get(f"{api_url}/notifications/{open_[0]}", headers=admin.headers).is_success
    listed = httpx.get(f"{api_url}/notifications", params={"limit": 100}, headers=admin.headers)
    assert {item["id"] for item in listed.json()["items"]} == set(open_)

    # The file is the rows as they were, and the archives and projections verify.
    archive_dir = stack.archive_path
    table = pq.read_table(archive_dir / path)
    assert sorted(table.column("notification_id").to_pylist()) == sorted(final)
    assert set(table.column("status").to_pylist()) == {"cancelled"}
    assert "all verify" in _ok(herald(stack, "archive", "verify"))
    assert "DIFFERENT" not in _ok(herald(stack, "projections", "verify", "notifications"))

    stats = httpx.get(f"{api_url}/data-pipeline/archive/stats", headers=admin.headers).json()
    assert stats["archived"] == {"notifications": 20, "events_removed": 0, "restored": 0}
    assert (stats["files"]["count"], stats["files"]["rows"]) == (1, 20)
    assert stats["last_run"]["archived"] == 20
    assert stats["retention"]["notifications_days"] == 30

    # An export can include the archives; by default it holds what the read model holds.
    def exported(include: bool) -> set[str]:
        response = httpx.get(
            f"{api_url}/data-pipeline/export/notifications",
            params={"format": "ndjson", "include_archived": str(include).lower()},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        return {msgspec.json.decode(line)["id"] for line in response.content.splitlines()}

    assert exported(include=False) == set(open_)
    assert exported(include=True) == set(ids)

    # 70 days on: the events' 60 days have passed too, and they leave the event store.
    at_70 = (now + timedelta(days=70)).isoformat()
    ran = _ok(herald(stack, "archive", "run", "--at", at_70, "--tenant", admin.tenant))
    assert f"{admin.tenant}: 0 archived in 0 file(s), 0 bytes; 60 event(s) removed" in ran, ran
    assert _events_of(stack, final) == 0
    assert _events_of(stack, open_) == 10
    assert "DIFFERENT" not in _ok(herald(stack, "projections", "verify", "notifications"))
    assert "DIFFERENT" not in _ok(herald(stack, "projections", "verify", "audit"))
    assert exported(include=True) == set(ids)
    history = httpx.get(f"{api_url}/notifications/{final[0]}/history", headers=admin.headers)
    assert history.status_code == 410
    # The relay and the projector carry on past the positions removed from the log.
    (later,) = _notifications(api_url, admin, 1, cancel=1)
    eventually(lambda: _projected(stack, [later], "cancelled"), 30, "a new notification")
    ids.append(later)

    # A restore brings them back as they were; a second one changes nothing.
    restored = _ok(herald(stack, "archive", "restore", path))
    assert f"{path}: 20 of 20 notification(s) restored" in restored, restored
    eventually(lambda: _projected(stack, final, "cancelled"), 30, "the restore to be projected")
    again = _ok(herald(stack, "archive", "restore", str(archive_dir / path)))
    assert f"{path}: 0 of 20 notification(s) restored" in again, again
    back = httpx.get(f"{api_url}/notifications/{final[0]}", headers=admin.headers)
    assert back.status_code == 200, back.text
    assert back.json()["status"] == "cancelled"
    assert _events_of(stack, final) == 20  # one NotificationRestored each
    assert "DIFFERENT" not in _ok(herald(stack, "projections", "verify", "notifications"))
    assert exported(include=False) == set(ids)
    assert exported(include=True) == set(ids)
    # Brought back as a record: nothing can be done with it but archiving or erasing it.
    retried = httpx.post(f"{api_url}/admin/notifications/{final[0]}/retry", headers=admin.headers)
    assert retried.status_code == 409, retried.text

    # Who did what is in the audit trail.
    actions = {
        row[0]
        for row in _query(stack, "SELECT action FROM audit_log WHERE tenant_id = %s", admin.tenant)
    }
    assert {"archive.completed", "archive.restored", "retention.changed"} <= actions


def test_a_restore_while_the_events_remain_carries_the_stream_on(
    api_url: str, account: AccountFactory, projector: None, stack: Settings
) -> None:
    admin = account(Role.ADMIN)
    retention = {"notifications_days": 10, "events_days": 400}
    httpx.put(
        f"{api_url}/data-pipeline/retention", json=retention, headers=admin.headers
    ).raise_for_status()
    ids = _notifications(api_url, admin, 3, cancel=3)
    eventually(lambda: _projected(stack, ids, "cancelled"), 30, "the cancellations")
    at = (datetime.now(UTC) + timedelta(days=11)).isoformat()
    _ok(herald(stack, "archive", "run", "--at", at, "--tenant", admin.tenant))
    eventually(lambda: _tombstoned(stack, ids) == len(ids), 30, "the archival")
    (path,) = {
        row[0]
        for row in _query(
            stack,
            "SELECT archive FROM archived_notifications WHERE notification_id = ANY(%s::uuid[])",
            ids,
        )
    }
    assert "3 of 3" in _ok(herald(stack, "archive", "restore", path))
    eventually(lambda: _projected(stack, ids, "cancelled"), 30, "the restore")
    history = httpx.get(f"{api_url}/notifications/{ids[0]}/history", headers=admin.headers)
    assert [e["type"] for e in history.json()["events"]] == [
        "NotificationRequested",
        "NotificationCancelled",
        "NotificationArchived",
        "NotificationRestored",
    ]
    assert "DIFFERENT" not in _ok(herald(stack, "projections", "verify", "notifications"))
    # Restored, and past retention again: archived again, into a file of its own.
    ran = _ok(herald(stack, "archive", "run", "--at", at, "--tenant", admin.tenant))
    assert f"{admin.tenant}: 3 archived in 1 file(s)" in ran, ran

    def second_file() -> bool:
        rows = _query(
            stack,
            "SELECT DISTINCT archive FROM archived_notifications"
            " WHERE notification_id = ANY(%s::uuid[]) AND restored_position IS NULL",
            ids,
        )
        return len(rows) == 1 and rows[0][0] != path

    eventually(second_file, 30, "the second archival")
    assert httpx.get(f"{api_url}/notifications/{ids[0]}", headers=admin.headers).status_code == 410
    assert "DIFFERENT" not in _ok(herald(stack, "projections", "verify", "notifications"))
    assert "all verify" in _ok(herald(stack, "archive", "verify"))


def test_a_restore_refuses_a_file_it_does_not_know(stack: Settings, tmp_path: Path) -> None:
    result = herald(stack, "archive", "restore", "tenant_id=x/day=2026-01-01/part-nope.parquet")
    assert result.returncode != 0
    assert "no archive of that path" in result.stderr
    outside = herald(stack, "archive", "restore", str(tmp_path / "elsewhere.parquet"))
    assert outside.returncode != 0
    assert "not inside" in outside.stderr


def test_an_admin_runs_archival_for_the_tenant_through_the_scheduler(
    api_url: str, account: AccountFactory, api_settings: Settings, tmp_path: Path
) -> None:
    admin = account(Role.ADMIN)
    accepted = httpx.post(f"{api_url}/data-pipeline/archive", headers=admin.headers)
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run_id"]
    waiting = httpx.get(f"{api_url}/data-pipeline/archive/stats", headers=admin.headers).json()
    assert waiting["runs_waiting"] >= 1
    never = "0 0 1 1 *"
    schedules = f"archive={never}; cleanup={never}; warm-read-models={never}; verify-sample={never}"
    settings = msgspec.structs.replace(api_settings, job_schedules=schedules, scheduler_poll_s=0.5)
    log = (tmp_path / "scheduler.log").open("wb")
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "infrastructure.entrypoints.cli", "serve", "scheduler"],
        env={**os.environ, **settings.to_environ()},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def last_run() -> dict[str, Any] | None:
            stats = httpx.get(f"{api_url}/data-pipeline/archive/stats", headers=admin.headers)
            found: dict[str, Any] | None = stats.json()["last_run"]
            return found

        eventually(lambda: last_run() is not None, 60, "the run to finish")
        finished = last_run()
        assert finished is not None
        assert finished["run_id"] == run_id
        assert (finished["archived"], finished["requested_by"]) == (0, admin.user_id)
        # The run was for this tenant alone.
        tenants = _query(
            api_settings, "SELECT tenant_id FROM archive_runs WHERE run_id = %s", uuid.UUID(run_id)
        )
        assert tenants == [(admin.tenant,)]
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=20)
