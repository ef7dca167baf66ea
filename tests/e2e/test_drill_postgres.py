"""Drill: PostgreSQL stops in the middle of a steady command load, then comes back.

While it is down, commands answer 503 with Retry-After at once rather than hanging; nothing
accepted is lost or recorded twice; and every role carries on once it is back, without
being restarted.
"""

from __future__ import annotations

import time

import httpx
import pytest

from infrastructure.settings import Settings
from tests.e2e.drills import accounted_for, carried_on, under_load

pytestmark = pytest.mark.slow
DOWN_S = 6.0
# Far above a refused connection's milliseconds and far below a client's patience: an answer
# slower than this means a request waited on a server that is not there.
PROMPT_S = 3.0


def test_commands_answer_503_while_postgres_is_down_and_nothing_accepted_is_lost(
    api_settings: Settings,
) -> None:
    with under_load(api_settings) as (drill, load, pids):
        drill.servers["postgres"].stop()
        down = time.monotonic()
        time.sleep(DOWN_S)
        readiness = httpx.get(f"{drill.url}/health/readiness", timeout=10)
        # Sent once PostgreSQL was down, early enough to have been answered before it came back.
        while_down = load.sent_between(down, time.monotonic() - PROMPT_S)
        drill.servers["postgres"].start()
        back = time.monotonic()
        load.until_accepted(1)
        accepting_s = time.monotonic() - back
        load.until_accepted(20)
        answers = load.stop()
        slowest_ms = max(a.seconds for a in while_down) * 1000
        print(  # the figures docs/operations.md quotes
            f"drill postgres: {len(while_down)} commands while down, all 503 with Retry-After,"
            f" slowest {slowest_ms:.0f} ms; accepting again {accepting_s:.1f} s after it started;"
            f" {load.accepted()} accepted in all"
        )

        assert readiness.status_code == 503, "an api without PostgreSQL must not take traffic"
        assert "postgres" in readiness.json()["failing"]
        assert while_down, f"no command was sent while PostgreSQL was down; see {drill.logs}"
        assert {a.status for a in while_down} == {503}, f"{while_down}; see {drill.logs}"
        assert all(a.retry_after for a in while_down)
        assert max(a.seconds for a in while_down) < PROMPT_S
        assert {a.status for a in answers} <= {202, 503}
        accounted_for(drill, answers)

        carried_on(drill, pids, answers)
