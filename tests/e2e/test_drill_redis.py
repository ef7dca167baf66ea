"""Drill: Redis stops in the middle of a steady command load and comes back empty, as a
Redis without persistence does.

While it is down, commands are still accepted (the rate limiter lets them through, as
HERALD_RATE_LIMIT_FAIL_OPEN says by default) and reads answer from PostgreSQL: a
notification by id, the list, a recipient's inbox and the dashboard. Once Redis is back, the
projector rebuilds its Redis models from PostgreSQL by itself, `projections verify` finds
them equal to a replay of the log, nothing accepted is lost, and every role carries on
without a restart.
"""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest
import redis

from domain.identity.roles import Role
from infrastructure.redis_keys import RedisKeys
from infrastructure.settings import Settings
from tests.e2e.drills import accounted_for, carried_on, under_load
from tests.kafka_helpers import eventually

pytestmark = pytest.mark.slow
DOWN_S = 5.0
REBUILDS = "herald_projection_redis_rebuilds_total"


def test_reads_fall_back_to_postgres_and_the_projector_refills_a_redis_that_came_back_empty(
    api_settings: Settings,
) -> None:
    with under_load(api_settings) as (drill, load, pids):
        known = next(a.notification_id for a in load.answers if a.notification_id)
        rebuilds = drill.metric("projector", REBUILDS)
        with httpx.Client(base_url=drill.url, headers=drill.headers(Role.ADMIN)) as client:
            inbox = "/recipients/drill1@example.com/inbox"
            eventually(
                lambda: (
                    client.get(f"/notifications/{known}").status_code == 200
                    and bool(client.get(inbox).json()["items"])
                ),
                60,
                "the first notifications to be projected",
            )
            drill.servers["redis"].stop()
            down = time.monotonic()
            reads = {
                "by id": client.get(f"/notifications/{known}"),
                "list": client.get("/notifications", params={"limit": 5}),
                "inbox": client.get(inbox),
                "dashboard": client.get("/admin/dashboard"),
                "metrics": client.get("/admin/metrics"),
                "readiness": client.get("/health/readiness"),
            }
            read_ms = {name: r.elapsed.total_seconds() * 1000 for name, r in reads.items()}
            time.sleep(max(0.0, DOWN_S - (time.monotonic() - down)))
            while_down = load.sent_between(down, time.monotonic())
            drill.servers["redis"].start()
            back = time.monotonic()
            eventually(
                lambda: drill.metric("projector", REBUILDS) > rebuilds,
                60,
                f"the projector to rebuild the Redis models; see {drill.logs}",
            )
            rebuilt_s = time.monotonic() - back
            load.until_accepted(20)
            answers = load.stop()
            dashboard = client.get("/admin/dashboard").json()
        print(  # the figures docs/operations.md quotes
            f"drill redis: {len(while_down)} commands accepted while it was down; reads from"
            f" PostgreSQL meanwhile: {', '.join(f'{n} {ms:.0f} ms' for n, ms in read_ms.items())};"
            f" Redis models rebuilt {rebuilt_s:.1f} s after Redis came back"
        )

        assert {name: r.status_code for name, r in reads.items()} == dict.fromkeys(reads, 200)
        assert reads["by id"].json()["id"] == known
        assert reads["list"].json()["items"], "the list came back empty"
        assert reads["inbox"].json()["items"], "the inbox came back empty"
        assert reads["dashboard"].json()["source"] == "postgresql"
        assert reads["readiness"].json()["failing"] == ["redis"]
        with psycopg.connect(drill.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM notification_view WHERE tenant_id = 'drill'"
            ).fetchone()
        counted = sum(reads["dashboard"].json()["statuses"].values())
        assert 0 < counted <= (row[0] if row else 0)
        assert while_down
        assert {a.status for a in while_down} == {202}, "commands need only PostgreSQL"
        assert {a.status for a in answers} == {202}
        assert dashboard["source"] == "redis"

        accounted_for(drill, answers)  # `verify` compares the Redis models with a replay too
        carried_on(drill, pids, answers)
        assert drill.settings.redis_url is not None
        client_redis = redis.Redis.from_url(drill.settings.redis_url.reveal())
        assert client_redis.exists(RedisKeys(drill.settings.namespace).status(known))
