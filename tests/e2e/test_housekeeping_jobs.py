"""What the scheduled jobs do, each run with an injected time: cleanup forgets exactly what has
served its time, warming refills exactly the missing status hashes, and the nightly sample
finds drift without fixing it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import redis

from commands.housekeeping.cleanup import clean_up
from domain.identity.roles import Role
from infrastructure.auth.revocation import REFRESH_FAMILY_PREFIX, REFRESH_TOKEN_PREFIX
from infrastructure.eventstore import catalog
from infrastructure.redis_keys import RedisKeys
from infrastructure.settings import Settings
from projections.notifications.sample import verify_sample
from projections.notifications.warming import warm_status_hashes
from tests.e2e.conftest import Account, AccountFactory

EMAIL = {"channel": "email", "recipient": "ada@example.com", "subject": "s", "body": "b"}


def _urls(stack: Settings) -> tuple[str, str]:
    assert stack.database_url is not None
    assert stack.redis_url is not None
    return stack.database_url.reveal(), stack.redis_url.reveal()


def _send(api_url: str, sender: Account, count: int) -> list[dict[str, Any]]:
    made = []
    for _ in range(count):
        response = httpx.post(f"{api_url}/notifications", json=EMAIL, headers=sender.headers)
        assert response.status_code == 202, response.text
        made.append(response.json())
    return made


def _settled(api_url: str, who: Account, made: list[dict[str, Any]]) -> None:
    """Wait until the read models reflect the last of `made`."""
    last = made[-1]
    response = httpx.get(
        f"{api_url}/notifications/{last['id']}",
        params={"min_position": max(m["position"] for m in made)},
        headers=who.headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_cleanup_forgets_exactly_what_has_served_its_time(
    api_url: str, account: AccountFactory, projector: None, stack: Settings
) -> None:
    database_url, redis_url = _urls(stack)
    now = datetime.now(UTC) + timedelta(days=3)  # the job's time, not the wall clock
    sender = account(Role.SENDER)
    done, pending = _send(api_url, sender, 2)
    cancelled = httpx.post(
        f"{api_url}/notifications/{done['id']}/cancel", json={}, headers=sender.headers
    ).json()
    _settled(api_url, sender, [pending, cancelled])
    tenant = sender.tenant
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status_code, response,"
            " created_at) VALUES (%s, 'old', '', 202, '', %s), (%s, 'fresh', '', 202, '', %s)",
            (tenant, now - timedelta(hours=25), tenant, now - timedelta(hours=23)),
        )
        for notification in (done, pending):
            conn.execute(
                "INSERT INTO dispatch_queue (notification_id, tenant_id, priority_rank, due_at,"
                " version) VALUES (%s, %s, 2, %s, 1) ON CONFLICT DO NOTHING",
                (notification["id"], tenant, now),
            )
    client = redis.Redis.from_url(redis_url)
    live, dead = uuid.uuid4().hex, uuid.uuid4().hex
    client.set(REFRESH_FAMILY_PREFIX + live, "u", ex=600)
    client.set(REFRESH_TOKEN_PREFIX + f"{live}-token", live, ex=600)
    client.set(REFRESH_TOKEN_PREFIX + f"{dead}-token", dead, ex=600)  # its family was revoked

    counts = clean_up(
        database_url=database_url,
        redis_url=redis_url,
        now=now,
        idempotency_ttl=timedelta(hours=24),
    )
    assert counts["idempotency_keys"] >= 1
    assert counts["dispatch_queue_rows"] >= 1
    assert counts["refresh_tokens"] >= 1
    with psycopg.connect(database_url) as conn:
        keys = {
            r[0]
            for r in conn.execute(
                "SELECT key FROM idempotency_keys WHERE tenant_id = %s", (tenant,)
            ).fetchall()
        }
        queued = {
            str(r[0])
            for r in conn.execute(
                "SELECT notification_id FROM dispatch_queue WHERE tenant_id = %s", (tenant,)
            ).fetchall()
        }
    assert keys == {"fresh"}
    assert queued == {pending["id"]}  # the cancelled one needs no dispatcher any more
    assert client.exists(REFRESH_TOKEN_PREFIX + f"{live}-token")
    assert not client.exists(REFRESH_TOKEN_PREFIX + f"{dead}-token")
    again = clean_up(
        database_url=database_url, redis_url=redis_url, now=now, idempotency_ttl=timedelta(hours=24)
    )
    assert again["dispatch_queue_rows"] == 0
    client.close()


def test_warming_refills_exactly_the_missing_status_hashes(
    api_url: str, account: AccountFactory, projector: None, stack: Settings
) -> None:
    database_url, redis_url = _urls(stack)
    sender = account(Role.SENDER)
    made = _send(api_url, sender, 3)
    _settled(api_url, sender, made)
    keys = RedisKeys(stack.namespace)
    client = redis.Redis.from_url(redis_url)
    lost = keys.status(made[0]["id"])
    client.delete(lost)
    newer = keys.status(made[1]["id"])
    client.hset(newer, "version", 999)  # as if the projector had moved on since

    def warm() -> dict[str, int]:
        return warm_status_hashes(
            database_url=database_url,
            redis_url=redis_url,
            namespace=stack.namespace,
            now=datetime.now(UTC),
        )

    first = warm()
    assert first["refilled"] >= 1
    assert client.hget(lost, "status") == b"requested"
    assert client.hget(lost, "tenant_id") == sender.tenant.encode()
    assert client.hget(newer, "version") == b"999"  # never overwritten with an older version
    assert warm()["refilled"] == 0
    client.close()


def test_the_nightly_sample_finds_drift_and_leaves_it(
    api_url: str, account: AccountFactory, projector: None, stack: Settings
) -> None:
    database_url, _ = _urls(stack)
    sender = account(Role.SENDER)
    made = _send(api_url, sender, 2)
    _settled(api_url, sender, made)
    everything = 10**6
    clean = verify_sample(
        database_url=database_url, codec=catalog.codec_for(stack), size=everything
    )
    assert clean["sampled"] >= 2
    # Other tests share this database; whatever they left, this test's tampering adds one.
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE notification_view SET attempts = attempts + 7 WHERE notification_id = %s",
            (made[0]["id"],),
        )
    try:
        drifted = verify_sample(
            database_url=database_url, codec=catalog.codec_for(stack), size=everything
        )
        assert drifted["differing"] == clean["differing"] + 1
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT attempts FROM notification_view WHERE notification_id = %s",
                (made[0]["id"],),
            ).fetchone()
        assert row == (7,)  # reported, not fixed
    finally:
        with psycopg.connect(database_url) as conn:
            conn.execute(
                "UPDATE notification_view SET attempts = attempts - 7 WHERE notification_id = %s",
                (made[0]["id"],),
            )
