"""`herald db restore` as an operator runs it: a backup, then more notifications and an
erasure, then the backup restored into an empty database. The log is the backup's, Kafka
holds it again and nothing else, the read models match it, the subject erased after the
backup stays unreadable, and the roles started on the restored database carry on. Without
`--yes`, or into a database that holds tables, it is refused with nothing written."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
import redis
from confluent_kafka import Message

from domain.identity.roles import Role
from infrastructure.devstack.dev import role_spec
from infrastructure.devstack.servers import free_port
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.eventstore.catalog import NOTIFICATION_EVENT_NAMES
from infrastructure.kafka.topics import notifications_topic
from infrastructure.kafka.wire import header_position
from infrastructure.privacy.erasure_record import ErasureRecord
from infrastructure.redis_keys import RedisKeys
from infrastructure.settings import Secret, Settings
from tests.conftest import new_database
from tests.e2e.conftest import Account, herald, login, own_stack
from tests.kafka_helpers import end_offsets, eventually, scan_topic

NEVER = "0 0 1 1 *"
SCHEDULES = "; ".join(
    f"{job}={NEVER}" for job in ("archive", "cleanup", "warm-read-models", "verify-sample")
)
_LOG = (
    "SELECT notification_id, originator_id, originator_version, topic, state"
    " FROM stored_events ORDER BY notification_id"
)


def _query(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


def _url(settings: Settings) -> str:
    assert settings.database_url is not None
    return settings.database_url.reveal()


def _send(api_url: str, account: Account, recipient: str, count: int) -> list[str]:
    items = [
        {"channel": "email", "recipient": recipient, "subject": "Hi", "body": f"for {recipient}"}
    ] * count
    response = httpx.post(
        f"{api_url}/notifications/batch", json={"notifications": items}, headers=account.headers
    )
    assert response.status_code == 202, response.text
    ids: list[str] = response.json()["ids"]
    return ids


def _projected(database_url: str, ids: list[str]) -> bool:
    rows = _query(
        database_url,
        "SELECT count(*) FROM notification_view WHERE notification_id = ANY(%s::uuid[])",
        ids,
    )
    return bool(rows[0][0] == len(ids))


def _erase(api_url: str, admin: Account, subject: dict[str, str]) -> str:
    response = httpx.post(f"{api_url}/data-pipeline/erasures", json=subject, headers=admin.headers)
    assert response.status_code == 202, response.text
    erasure_id: str = response.json()["erasure_id"]
    return erasure_id


def _erasure_done(api_url: str, admin: Account, erasure_id: str) -> dict[str, Any]:
    def done() -> bool:
        response = httpx.get(
            f"{api_url}/data-pipeline/erasures/{erasure_id}", headers=admin.headers
        )
        return response.status_code == 200 and response.json()["status"] == "done"

    eventually(done, 90, f"erasure {erasure_id} to finish")
    body: dict[str, Any] = httpx.get(
        f"{api_url}/data-pipeline/erasures/{erasure_id}", headers=admin.headers
    ).json()
    return body


def _positions_on_kafka(settings: Settings, expected: int) -> Counter[int]:
    assert settings.kafka_bootstrap is not None
    seen: Counter[int] = Counter()

    def visit(message: Message) -> None:
        seen[header_position(message)] += 1

    scan_topic(
        settings.kafka_bootstrap,
        notifications_topic(settings.namespace),
        visit,
        lambda: sum(seen.values()) >= expected,
    )
    return seen


def _published_positions(database_url: str) -> list[int]:
    rows = _query(
        database_url,
        "SELECT notification_id FROM stored_events WHERE split_part(topic, '@', 1) = ANY(%s)"
        " ORDER BY 1",
        list(NOTIFICATION_EVENT_NAMES),
    )
    return [row[0] for row in rows]


@pytest.fixture
def record_dir(tmp_path: Path) -> Path:
    return tmp_path / "erasure-record"


@pytest.fixture
def base(api_settings: Settings, record_dir: Path) -> Settings:
    """The session's api settings with a scheduler that polls for erasures twice a second
    and an erasure record of the test's own."""
    return msgspec.structs.replace(
        api_settings,
        job_schedules=SCHEDULES,
        scheduler_poll_s=0.5,
        erasure_record_dir=str(record_dir),
    )


@pytest.fixture
def target(stack: Settings) -> Iterator[str]:
    with new_database(stack) as url:
        yield url


def test_a_restore_brings_back_the_backup_and_never_an_erased_subject(
    stack: Settings, base: Settings, target: str, tmp_path: Path, record_dir: Path
) -> None:
    ada, bob, cy = (f"{name}-{uuid.uuid4().hex[:8]}@example.com" for name in ("ada", "bob", "cy"))
    with new_database(stack) as original, own_stack(base, original, "scheduler") as own:
        admin = own.account(Role.ADMIN)
        dora = own.account(Role.USER, tenant=admin.tenant)  # an account, erased later too
        before = {who: _send(own.api_url, admin, who, 5) for who in (ada, bob)}
        eventually(lambda: _projected(original, before[ada] + before[bob]), 60, "the first sends")
        made = herald(own.settings, "db", "backup", "--dir", str(tmp_path / "backups"))
        assert made.returncode == 0, made.stderr
        backup = Path(made.stdout.split(":")[0])
        backed_up = _query(original, _LOG)

        # After the backup: more notifications, and Ada and Dora's account erased.
        after = {who: _send(own.api_url, admin, who, 3) for who in (bob, cy)}
        erasure_id, user_erasure_id = (
            _erase(own.api_url, admin, subject)
            for subject in ({"recipient": ada}, {"user_id": dora.user_id})
        )
        receipt = _erasure_done(own.api_url, admin, erasure_id)["receipt"]
        assert receipt["stores"]["notifications"]["found"] == 5
        assert (
            _erasure_done(own.api_url, admin, user_erasure_id)["receipt"]["stores"]["users"][
                "scrubbed"
            ]
            == 1
        )
        eventually(lambda: _projected(original, after[bob] + after[cy]), 60, "the later sends")
        settings = own.settings
        ada_hash = _query(
            original, "SELECT subject_ref FROM erasures WHERE erasure_id = %s", erasure_id
        )[0][0]
        kafka_before = _kafka_messages(settings)
        names = set(NOTIFICATION_EVENT_NAMES)
        assert kafka_before > len([r for r in backed_up if r[3].split("@")[0] in names])
    recorded = ErasureRecord(record_dir).erasures()
    assert sorted(str(e.erasure_id) for e in recorded) == sorted([erasure_id, user_erasure_id])
    assert ada not in (record_dir / "erasures.jsonl").read_text()
    assert dora.email not in (record_dir / "erasures.jsonl").read_text()

    restored = msgspec.structs.replace(settings, database_url=Secret(target))
    # Refused: no --yes, and a database that holds tables. Nothing written either time.
    unconfirmed = herald(restored, "db", "restore", str(backup))
    assert unconfirmed.returncode == 2
    assert len(unconfirmed.stderr.strip().splitlines()) == 1
    assert "--yes" in unconfirmed.stderr
    assert _tables(target) == 0
    with new_database(stack) as occupied:
        with psycopg.connect(occupied, autocommit=True) as conn:
            conn.execute("CREATE TABLE stored_events (x int)")
        crowded = herald(
            msgspec.structs.replace(settings, database_url=Secret(occupied)),
            "db",
            "restore",
            str(backup),
            "--yes",
        )
        assert crowded.returncode == 1
        assert len(crowded.stderr.strip().splitlines()) == 1
        assert "already holds 1 table(s) (public.stored_events)" in crowded.stderr
        assert "empty" in crowded.stderr
        assert _tables(occupied) == 1
    missing = herald(restored, "db", "restore", str(tmp_path / "nope.dump"), "--yes")
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"herald: {tmp_path / 'nope.dump'}: no such backup file"
    assert _kafka_messages(settings) == kafka_before
    assert _tables(target) == 0

    done = herald(restored, "db", "restore", str(backup), "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 of 2 recorded erasure(s) re-applied" in done.stdout, done.stdout
    assert "republishing to Kafka" in done.stderr  # a progress bar per step

    # The log is the backup's; after it, only the erasures asked for again, and Dora's
    # account erased at once.
    log = _query(target, _LOG)
    assert log[: len(backed_up)] == backed_up
    again = {(row[1], row[3].split("@")[0]) for row in log[len(backed_up) :]}
    assert again == {
        (uuid.UUID(erasure_id), "SubjectErasureRequested"),
        (uuid.UUID(user_erasure_id), "SubjectErasureRequested"),
        (uuid.UUID(dora.user_id), "UserErased"),
    }
    assert len(log) == len(backed_up) + 3
    assert _query(target, "SELECT email, status FROM users WHERE user_id = %s", dora.user_id) == [
        (None, "erased")
    ]
    # Kafka holds every published position of the restored log once, and nothing else.
    published = _published_positions(target)
    assert _positions_on_kafka(restored, len(published)) == Counter(published)
    # Ada's keys are destroyed again: nothing of her is readable in the read models.
    live = _query(
        target,
        "SELECT count(*) FROM subject_keys WHERE subject_kind = 'recipient'"
        " AND subject_hash = %s AND wrapped IS NOT NULL",
        bytes.fromhex(ada_hash),
    )
    assert live == [(0,)]
    shown = _query(
        target,
        "SELECT recipient FROM notification_view WHERE notification_id = ANY(%s::uuid[])",
        before[ada],
    )
    assert len(shown) == 5
    assert ada not in {row[0] for row in shown}
    verified = herald(restored, "projections", "verify", "notifications")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # Redis holds nothing from after the backup.
    assert restored.redis_url is not None
    client = redis.Redis.from_url(restored.redis_url.reveal())
    keys = RedisKeys(restored.namespace)
    assert not any(client.exists(keys.status(i)) for i in after[bob] + after[cy])
    assert all(client.exists(keys.status(i)) for i in before[bob])

    # The roles resume on the restored database: Ada's erasure runs to its receipt again,
    # Bob is readable, and what is sent now is published and projected.
    port = free_port()
    serving = msgspec.structs.replace(
        restored, http_port=port, public_url=f"http://127.0.0.1:{port}"
    )
    with Supervisor() as supervisor:
        for role in ("api", "relay", "projector", "scheduler"):
            supervisor.start(role_spec(role, serving), ready_timeout=30)
        api = serving.public_url
        tokens = login(api, admin.tenant, admin.email).raise_for_status().json()
        admin = dataclasses.replace(admin, access_token=tokens["access_token"])
        rerun = _erasure_done(api, admin, erasure_id)["receipt"]
        assert rerun["stores"]["notifications"]["found"] == 5
        _erasure_done(api, admin, user_erasure_id)
        assert login(api, dora.tenant, dora.email).status_code == 401
        gone = httpx.get(f"{api}/notifications/{before[ada][0]}", headers=admin.headers)
        assert gone.json()["recipient"] == "", gone.text
        history = httpx.get(f"{api}/notifications/{before[ada][0]}/history", headers=admin.headers)
        assert ada not in history.text
        kept = httpx.get(f"{api}/notifications/{before[bob][0]}/history", headers=admin.headers)
        assert bob in kept.text
        later = _send(api, admin, bob, 2)
        eventually(lambda: _projected(target, later), 60, "sends after the restore")
        published = _published_positions(target)
        eventually(
            lambda: _relay_position(target) >= published[-1], 60, "the relay to publish them"
        )
        # The relay publishes at least once: a position may repeat, none may be missing.
        assert set(_positions_on_kafka(restored, len(published))) == set(published)
    verified = herald(restored, "projections", "verify", "notifications")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _tables(database_url: str) -> int:
    rows = _query(
        database_url,
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    return int(rows[0][0])


def _kafka_messages(settings: Settings) -> int:
    assert settings.kafka_bootstrap is not None
    ends = end_offsets(settings.kafka_bootstrap, notifications_topic(settings.namespace))
    return sum(ends.values())


def _relay_position(database_url: str) -> int:
    rows = _query(
        database_url, "SELECT notification_id FROM tracking WHERE application_name = 'relay'"
    )
    return int(rows[0][0])
