"""Job schedules: crontab fields in UTC, optionally with seconds, overridable by settings;
and which tick a firing belongs to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from infrastructure.scheduling.runner import latest_fire_time
from infrastructure.settings import SettingsError, load_settings
from infrastructure.settings.pipeline import JOB_DEFAULTS, cron_trigger


def test_every_job_has_a_default_schedule_that_parses() -> None:
    settings = load_settings(environ={}, env_file=None)
    assert set(settings.schedules) == set(JOB_DEFAULTS)
    for cron in settings.schedules.values():
        cron_trigger(cron)


def test_an_override_replaces_only_the_jobs_it_names() -> None:
    settings = load_settings(
        environ={"HERALD_JOB_SCHEDULES": "cleanup=*/2 * * * * *; verify-sample=0 4 * * *"},
        env_file=None,
    )
    assert settings.schedules["cleanup"] == "*/2 * * * * *"
    assert settings.schedules["verify-sample"] == "0 4 * * *"
    assert settings.schedules["warm-read-models"] == JOB_DEFAULTS["warm-read-models"].cron


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("nightly=0 2 * * *", "'nightly' is not one of"),
        ("cleanup=61 * * * *", "61"),
        ("cleanup=* * *", "has 3 fields"),
        ("cleanup", "is not job=schedule"),
    ],
)
def test_a_bad_schedule_is_one_line_naming_the_variable(value: str, named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"HERALD_JOB_SCHEDULES": value}, env_file=None)
    message = str(caught.value)
    assert message.startswith("HERALD_JOB_SCHEDULES is invalid")
    assert named in message
    assert "\n" not in message


def test_schedules_are_utc_at_the_hour_they_say() -> None:
    fire = cron_trigger("0 2 * * *").get_next_fire_time(
        None, datetime(2026, 11, 29, 21, 0, tzinfo=UTC)
    )
    assert fire == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def test_a_firing_belongs_to_the_tick_just_past() -> None:
    every_two = cron_trigger("*/2 * * * * *")
    at = datetime(2026, 11, 29, 12, 0, 7, 300_000, tzinfo=UTC)
    assert latest_fire_time(every_two, at) == datetime(2026, 11, 29, 12, 0, 6, tzinfo=UTC)
    nightly = cron_trigger("0 2 * * *")
    late = datetime(2026, 11, 30, 2, 0, 0, 900_000, tzinfo=UTC)
    assert latest_fire_time(nightly, late) == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    # Past the grace period the tick is not run late: there is nothing to claim.
    assert latest_fire_time(nightly, late + timedelta(minutes=5)) is None
