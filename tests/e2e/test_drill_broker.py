"""Drill: the broker stops in the middle of a steady command load and comes back empty, as
an in-memory broker or a lost cluster would.

Commands go on being accepted throughout: they only need PostgreSQL. Once the broker is
back, the relay finds it has lost what was published and publishes the log again; the
projector and the dispatcher follow without being restarted.
"""

from __future__ import annotations

import time

import pytest

from infrastructure.settings import Settings
from tests.e2e.drills import accounted_for, carried_on, under_load

pytestmark = pytest.mark.slow
DOWN_S = 5.0


def test_a_broker_that_comes_back_empty_is_filled_again_and_nothing_is_lost(
    api_settings: Settings,
) -> None:
    with under_load(api_settings) as (drill, load, pids):
        drill.servers["kafka"].stop()
        down = time.monotonic()
        time.sleep(DOWN_S)
        while_down = load.sent_between(down, time.monotonic())
        drill.servers["kafka"].start()
        load.until_accepted(20)
        answers = load.stop()

        assert while_down
        assert {a.status for a in while_down} == {202}, "commands need only PostgreSQL"
        assert {a.status for a in answers} == {202}
        back = time.monotonic()
        accounted_for(drill, answers)
        carried_on(drill, pids, answers)
        print(  # the figures docs/operations.md quotes
            f"drill broker: {len(while_down)} commands accepted while it was down;"
            f" {len(answers)} in all, each on Kafka again and projected"
            f" {time.monotonic() - back:.1f} s after the load stopped"
        )
