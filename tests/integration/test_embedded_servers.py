"""The embedded PostgreSQL keeps its data across restarts; a dead child is restarted."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg

from infrastructure.devstack import servers
from infrastructure.devstack.supervisor import Supervisor


def test_postgres_data_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "postgres"
    for attempt in range(2):
        spec = servers.postgres(data_dir, servers.free_port(), tmp_path / "pg.log")
        with Supervisor() as supervisor:
            supervisor.start(spec)
            with psycopg.connect(spec.url, autocommit=True) as conn:
                if attempt == 0:
                    conn.execute("CREATE TABLE kept (note text)")
                    conn.execute("INSERT INTO kept VALUES ('still here')")
                else:
                    assert conn.execute("SELECT note FROM kept").fetchall() == [("still here",)]


def test_a_child_that_dies_is_restarted(tmp_path: Path) -> None:
    spec = servers.redis_server(servers.free_port(), tmp_path / "redis.log")
    with Supervisor() as supervisor:
        supervisor.start(spec)
        first = supervisor.pids["redis"]
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while supervisor.pids["redis"] == first and time.monotonic() < deadline:
            supervisor.check()
            time.sleep(0.1)
        assert supervisor.pids["redis"] != first
        deadline = time.monotonic() + 10
        while not spec.ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert spec.ready()
