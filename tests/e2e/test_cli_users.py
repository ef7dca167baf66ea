"""`herald users create-admin` and the start-up checks of `herald serve api`."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psycopg

from infrastructure.migrations import migrate
from infrastructure.settings import Settings
from tests.e2e.conftest import PASSWORD, login

ROOT = Path(__file__).resolve().parents[2]
STREAM = uuid.uuid4()


def _herald(
    stack: Settings, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    environ.update(stack.to_environ())
    environ.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "infrastructure.entrypoints.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environ,
    )


def test_create_admin_reads_the_password_from_stdin_and_the_admin_can_log_in(
    stack: Settings, api_url: str
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    result = _herald(
        stack, "users", "create-admin", "--email", email, "--tenant", tenant, stdin=PASSWORD + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    tokens = login(api_url, tenant, email).json()
    me = httpx.get(
        f"{api_url}/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.json()["user"]["roles"] == ["admin"]

    again = _herald(
        stack, "users", "create-admin", "--email", email, "--tenant", tenant, stdin=PASSWORD + "\n"
    )
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        "herald: email: is already registered in this tenant"
    ]


def test_create_admin_refuses_a_weak_password_in_one_line(stack: Settings) -> None:
    result = _herald(stack, "users", "create-admin", "--email", "a@example.com", stdin="short\n")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "herald: password: must be at least 12 characters"
    ]


def test_serve_api_without_a_signing_key_exits_2_naming_it(stack: Settings) -> None:
    result = _herald(stack, "serve", "api", HERALD_JWT_SECRET="")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("herald: HERALD_JWT_SECRET is not set")


def test_every_role_refuses_to_start_without_a_master_key_naming_it(stack: Settings) -> None:
    for role in ("relay", "projector", "api"):
        result = _herald(stack, "serve", role, HERALD_MASTER_KEY="")
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("herald: HERALD_MASTER_KEY is not set"), lines
    malformed = _herald(stack, "serve", "relay", HERALD_MASTER_KEY="c2hvcnQ")
    assert malformed.returncode == 2
    assert (
        malformed.stderr.strip()
        .splitlines()[0]
        .startswith("herald: HERALD_MASTER_KEY must be 32 bytes of base64")
    )


def test_relay_status_reports_lag_and_reset_moves_the_position(
    stack: Settings, fresh_database: str
) -> None:
    migrate(fresh_database)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for version in range(1, 6):
            conn.execute(
                "INSERT INTO stored_events (originator_id, originator_version, topic, state)"
                " VALUES (%s, %s, 'NotificationCancelled@1', ''::bytea)",
                (STREAM, version),
            )
    on_fresh = {"HERALD_DATABASE_URL": fresh_database}
    status = _herald(stack, "relay", "status", "--max-lag", "0", **on_fresh)
    assert status.returncode == 1
    assert status.stdout.strip() == "relay position 0, head of the log 5, lag 5"
    assert _herald(stack, "relay", "reset", "--from", "3", **on_fresh).returncode == 0
    after = _herald(stack, "relay", "status", "--max-lag", "2", **on_fresh)
    assert after.returncode == 0
    assert after.stdout.strip() == "relay position 3, head of the log 5, lag 2"
    negative = _herald(stack, "relay", "reset", "--from", "-1", **on_fresh)
    assert negative.returncode == 2
    assert len(negative.stderr.strip().splitlines()) == 1


def test_projections_status_reports_each_projection(stack: Settings, fresh_database: str) -> None:
    migrate(fresh_database)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state)"
            " VALUES (%s, 1, 'NotificationCancelled@1', ''::bytea)",
            (uuid.uuid4(),),
        )
    on_fresh = {"HERALD_DATABASE_URL": fresh_database}
    behind = _herald(stack, "projections", "status", "--max-lag", "0", **on_fresh)
    assert behind.returncode == 1
    assert behind.stdout.strip().splitlines() == [
        "projection:notifications: position 0, head of the log 1, lag 1, 0 events/s",
        "projection:audit: position 0, head of the log 1, lag 1, 0 events/s",
    ]
    assert _herald(stack, "projections", "status", "--max-lag", "1", **on_fresh).returncode == 0
