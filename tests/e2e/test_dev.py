"""`herald dev` as a newcomer runs it: servers from wheels, roles, health, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from infrastructure.devstack.servers import free_port
from infrastructure.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SERVER_NAMES = {"postgres", "redis-server"}


def _environment(**herald: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(herald)
    return env


def _herald(*args: str) -> list[str]:
    return [sys.executable, "-m", "infrastructure.entrypoints.cli", *args]


def _wait_for_health(url: str, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer 200 within {timeout} s")
        time.sleep(0.5)


def _wait_for_status(url: str, status: int, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(url, timeout=5)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def _name(process: psutil.Process) -> str:
    """The process's name; "" for one that has exited since it was listed (the stack's
    short-lived helpers, such as pg_ctl, come and go)."""
    try:
        return process.name()
    except psutil.NoSuchProcess:
        return ""


def _is_tansu(process: psutil.Process) -> bool:
    return "tansu" in _name(process)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class DevProcess:
    def __init__(self, process: subprocess.Popen[str], port: int, dev_dir: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.dev_dir = dev_dir

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=60)
        return self.process.returncode, out


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevProcess]:
    port = free_port()
    process = subprocess.Popen(
        _herald("dev"),
        cwd=tmp_path,  # no .env there; HERALD_DEV_DIR decides where data goes
        env=_environment(
            HERALD_HTTP_PORT=str(port),
            HERALD_DEV_DIR=str(tmp_path / "dev"),
            PYTHONPATH=str(ROOT),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    dev = DevProcess(process, port, tmp_path / "dev")
    yield dev
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_dev_serves_health_kills_redis_and_stops_cleanly(dev: DevProcess) -> None:
    started = time.monotonic()
    health = _wait_for_health(f"{dev.url}/health", timeout=60)
    assert time.monotonic() - started < 60
    assert {n: c["status"] for n, c in health.json()["checks"].items()} == {
        "postgres": "up",
        "redis": "up",
        "kafka": "up",
    }
    children = dev.descendants()
    names = {_name(p) for p in children}
    assert names >= SERVER_NAMES
    assert any(_is_tansu(p) for p in children)

    # A second terminal reaches the running stack without copying its URLs.
    admin = subprocess.run(
        _herald("users", "create-admin", "--email", "ops@example.com", "--tenant", "acme"),
        input="a-long-enough-password\n",
        env=_environment(HERALD_DEV_DIR=str(dev.dev_dir), PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert admin.returncode == 0, admin.stderr
    login = httpx.post(
        f"{dev.url}/auth/login",
        json={"tenant": "acme", "email": "ops@example.com", "password": "a-long-enough-password"},
    )
    assert login.status_code == 200

    # Every provider is in the sandbox: the SDKs send to the simulator `herald dev` started,
    # and its webhooks and push receipts come back to this API.
    assert {p["mode"] for p in health.json()["providers"].values()} == {"sandbox"}
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    sent = [
        httpx.post(f"{dev.url}/notifications", json=body, headers=headers)
        for body in (
            {"channel": "email", "recipient": "ada@example.com", "subject": "Hi", "body": "b"},
            {"channel": "sms", "recipient": "+14155550100", "body": "b"},
            {"channel": "push", "recipient": "device-1", "subject": "Hi", "body": "b"},
        )
    ]
    assert [r.status_code for r in sent] == [202, 202, 202], [r.text for r in sent]
    for response in sent:
        view = f"{dev.url}/notifications/{response.json()['id']}"
        deadline = time.monotonic() + 30
        while (status := httpx.get(view, headers=headers).json().get("status")) != "delivered":
            assert time.monotonic() < deadline, f"{view} stayed {status}"
            time.sleep(0.2)

    redis = next(p for p in children if _name(p) == "redis-server")
    redis.kill()
    down = _wait_for_status(f"{dev.url}/health", 503, timeout=5)
    assert down.status_code == 503
    assert down.json()["failing"] == ["redis"]

    # The supervisor restarts the dead server, and health recovers.
    _wait_for_health(f"{dev.url}/health", timeout=30)

    every_pid = [p.pid for p in dev.descendants()]
    status, output = dev.stop()
    assert status == 0, output
    assert "Herald is running:" in output
    assert "Herald stopped." in output
    assert [pid for pid in every_pid if _running(pid)] == []


@pytest.mark.slow
def test_dev_uses_configured_servers_and_starts_none(stack: Settings, tmp_path: Path) -> None:
    port = free_port()
    assert stack.database_url is not None
    assert stack.redis_url is not None
    assert stack.kafka_bootstrap is not None
    process = subprocess.Popen(
        _herald("dev"),
        cwd=tmp_path,
        env=_environment(
            HERALD_HTTP_PORT=str(port),
            HERALD_DEV_DIR=str(tmp_path / "dev"),
            HERALD_DATABASE_URL=stack.database_url.reveal(),
            HERALD_REDIS_URL=stack.redis_url.reveal(),
            HERALD_KAFKA_BOOTSTRAP=stack.kafka_bootstrap,
            PYTHONPATH=str(ROOT),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    dev = DevProcess(process, port, tmp_path / "dev")
    try:
        _wait_for_health(f"{dev.url}/health", timeout=60)
        children = dev.descendants()
        assert not SERVER_NAMES & {_name(p) for p in children}
        assert not any(_is_tansu(p) for p in children)
    finally:
        status, output = dev.stop()
    assert status == 0, output


def test_a_bad_port_exits_2_with_one_line_naming_it(tmp_path: Path) -> None:
    result = subprocess.run(
        _herald("dev"),
        cwd=tmp_path,
        env=_environment(HERALD_HTTP_PORT="abc", PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "HERALD_HTTP_PORT" in lines[0]
    assert "'abc'" in lines[0]
    assert not (tmp_path / ".herald").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("migrate",), "HERALD_DATABASE_URL is not set"),
        (("serve", "api"), "HERALD_DATABASE_URL is not set"),
        (("serve", "nope"), "invalid choice: 'nope'"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
    ],
)
def test_cli_misuse_exits_2_with_one_line(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    result = subprocess.run(
        _herald(*args),
        cwd=tmp_path,
        env=_environment(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert expected in result.stderr
