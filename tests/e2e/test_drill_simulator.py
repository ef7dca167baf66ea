"""Drill: the providers (here, their simulator) stop answering in the middle of a steady
command load, then come back.

Commands go on being accepted; the failing calls open the provider's circuit, which holds
the rest back instead of spending their attempts; once the provider answers again, every
accepted notification is sent, none twice.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from infrastructure.settings import Settings
from tests.e2e.drills import accounted_for, carried_on, under_load
from tests.kafka_helpers import eventually

pytestmark = pytest.mark.slow
CIRCUIT = "herald_provider_circuit_open"


def test_circuits_open_while_the_provider_is_down_and_every_notification_is_sent_once(
    api_settings: Settings,
) -> None:
    with under_load(api_settings) as (drill, load, pids):
        drill.servers["simulator"].stop()
        down = time.monotonic()
        eventually(
            lambda: drill.metric("dispatcher", CIRCUIT, provider="sendgrid") == 1,
            90,
            f"SendGrid's circuit to open; see {drill.logs}",
        )
        opened_s = time.monotonic() - down
        drill.servers["simulator"].start()
        back = time.monotonic()
        load.until_accepted(20)
        answers = load.stop()

        assert {a.status for a in answers} == {202}, "commands do not wait for providers"
        accounted_for(drill, answers)
        carried_on(drill, pids, answers)
        accepted = [a.notification_id for a in answers if a.notification_id]
        with psycopg.connect(drill.database_url, autocommit=True) as conn:

            def sent() -> list[tuple[str, int]]:
                return conn.execute(
                    "SELECT originator_id::text, count(*) FROM stored_events"
                    " WHERE topic LIKE 'NotificationSent@%%' AND originator_id = ANY(%s::uuid[])"
                    " GROUP BY originator_id",
                    (accepted,),
                ).fetchall()

            eventually(
                lambda: len(sent()) == len(accepted), 180, f"every one sent; see {drill.logs}"
            )
            all_sent_s = time.monotonic() - back
            twice = [n for n, count in sent() if count > 1]
        assert not twice, f"{len(twice)} notifications were sent twice"
        assert drill.metric("dispatcher", CIRCUIT, provider="sendgrid") == 0
        print(  # the figures docs/operations.md quotes
            f"drill simulator: SendGrid's circuit open {opened_s:.1f} s after the provider"
            f" stopped; all {len(accepted)} accepted sent {all_sent_s:.1f} s after it was back,"
            " none twice"
        )
