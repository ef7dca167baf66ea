"""`herald dev`: the whole of Herald on one machine, from wheels, under one supervisor.

Servers whose URLs are configured are used as they are; the rest are started embedded.
Then migrations and topics are applied, the roles start as separate processes, and a
table of URLs is printed. Ctrl-C or SIGTERM stops everything, roles first.
"""

from __future__ import annotations

import fcntl
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NoReturn

import msgspec

from infrastructure.devstack import prepare_servers, start_servers
from infrastructure.devstack.servers import ProcessSpec, free_port, http_ok
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.log import get_logger
from infrastructure.privacy.master import generate_master_key
from infrastructure.providers.sandbox import provider_modes
from infrastructure.settings import Secret, Settings, SettingsError, redact_url

log = get_logger(__name__)

DEV_ROLES = ("api", "relay", "projector", "dispatcher", "scheduler")
STACK_FILE = "stack.env"  # the running stack's server URLs, for other herald commands


class StopRequestedError(Exception):
    """SIGINT or SIGTERM arrived: unwind and stop the children."""


class DevDirBusyError(Exception):
    """Another `herald dev` already uses this data directory."""


def _raise_stop(signum: int, _frame: object) -> NoReturn:
    raise StopRequestedError(signal.Signals(signum).name)


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise SettingsError(
                "HERALD_HTTP_PORT", f"{port} is already in use on {host}", str(port + 1)
            ) from None


@contextmanager
def exclusive_dev_dir(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "dev.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DevDirBusyError(
                f"another `herald dev` is running with HERALD_DEV_DIR={data_dir}; stop it or "
                "choose another directory"
            ) from None
        yield


def with_dev_secrets(settings: Settings, data_dir: Path) -> Settings:
    """Settings with a JWT signing key and a master key: the configured ones, or ones kept
    in the dev directory.

    Keeping them on disk means tokens, and the personal data sealed under the master key,
    survive a restart of `herald dev`, as they would in production, without anyone having
    to invent a secret first.
    """
    if settings.jwt_secret is None:
        settings = msgspec.structs.replace(
            settings,
            jwt_secret=Secret(_kept(data_dir / "jwt-secret", lambda: secrets.token_urlsafe(48))),
        )
    if settings.master_key is None:
        settings = msgspec.structs.replace(
            settings, master_key=Secret(_kept(data_dir / "master-key", generate_master_key))
        )
    return settings


def _kept(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(make())
    return path.read_text().strip()


_SERVER_VARIABLES = ("HERALD_DATABASE_URL", "HERALD_REDIS_URL", "HERALD_KAFKA_BOOTSTRAP")


def _write_stack_file(data_dir: Path, settings: Settings) -> None:
    environ = settings.to_environ()
    path = data_dir / STACK_FILE
    path.touch(mode=0o600)
    path.write_text("".join(f"{name}={environ[name]}\n" for name in _SERVER_VARIABLES))


def with_running_dev_stack(settings: Settings) -> Settings:
    """Fill unset server URLs (and secrets) from a `herald dev` running on HERALD_DEV_DIR,
    if there is one.

    This lets `herald migrate` or `herald users create-admin` in a second terminal reach
    the servers `herald dev` started, and seal as it does, without copying anything by hand.
    """
    path = settings.dev_path / STACK_FILE
    if settings.database_url and settings.redis_url and settings.kafka_bootstrap:
        return settings
    if not path.is_file() or not _dev_dir_in_use(settings.dev_path):
        return settings
    found = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    running = msgspec.structs.replace(
        settings,
        database_url=settings.database_url or Secret(found["HERALD_DATABASE_URL"]),
        redis_url=settings.redis_url or Secret(found["HERALD_REDIS_URL"]),
        kafka_bootstrap=settings.kafka_bootstrap or found["HERALD_KAFKA_BOOTSTRAP"],
    )
    return with_dev_secrets(running, settings.dev_path)


def _dev_dir_in_use(data_dir: Path) -> bool:
    with (data_dir / "dev.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


def _herald(*args: str) -> list[str]:
    """The argv of a `herald` command run by this interpreter."""
    return [sys.executable, "-m", "infrastructure.entrypoints.cli", *args]


def role_spec(role: str, settings: Settings) -> ProcessSpec:
    ready = lambda: True  # noqa: E731
    if role == "api":
        liveness = f"http://{settings.http_host}:{settings.http_port}/health/liveness"
        ready = lambda: http_ok(liveness)  # noqa: E731
    return ProcessSpec(
        name=role, argv=_herald("serve", role), env=settings.to_environ(), ready=ready
    )


def simulator_spec(settings: Settings) -> ProcessSpec:
    """`herald simulate-providers` as a child process, ready once its stats answer."""
    stats_url = f"{settings.simulator_url}/_simulator/stats"
    return ProcessSpec(
        name="simulator",
        argv=_herald("simulate-providers"),
        url=settings.simulator_url,
        env=settings.to_environ(),
        ready=lambda: http_ok(stats_url),
    )


def with_dev_public_url(settings: Settings) -> Settings:
    """Point the providers' webhooks at this API unless a public URL was configured."""
    if settings.public_url != Settings().public_url:
        return settings
    return msgspec.structs.replace(
        settings, public_url=f"http://{settings.http_host}:{settings.http_port}"
    )


def url_table(settings: Settings, data_dir: Path, metrics: dict[str, int] | None = None) -> str:
    api = f"http://{settings.http_host}:{settings.http_port}"
    host = settings.metrics_host
    sandboxed = [name for name, mode in provider_modes(settings).items() if mode == "sandbox"]
    rows = [
        ("api", api),
        ("docs", f"{api}/docs"),
        ("health", f"{api}/health"),
        ("simulator", f"{settings.simulator_url} ({', '.join(sandboxed)})" if sandboxed else "-"),
        ("postgres", redact_url(settings.database_url.reveal()) if settings.database_url else "-"),
        ("redis", redact_url(settings.redis_url.reveal()) if settings.redis_url else "-"),
        ("kafka", settings.kafka_bootstrap or "-"),
        *(
            (f"{role} metrics", f"http://{host}:{port}/metrics")
            for role, port in (metrics or {}).items()
        ),
        ("data", str(data_dir)),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"  {name.ljust(width)}  {value}" for name, value in rows]
    return "\n".join(["Herald is running:", *lines, "Press Ctrl-C to stop."])


def run_dev(settings: Settings, out: IO[str] = sys.stdout) -> None:
    data_dir = settings.dev_path
    check_port_free(settings.http_host, settings.http_port)
    with exclusive_dev_dir(data_dir):
        signal.signal(signal.SIGINT, _raise_stop)
        signal.signal(signal.SIGTERM, _raise_stop)
        supervisor = Supervisor()
        try:
            full = with_dev_secrets(start_servers(settings, supervisor, data_dir), data_dir)
            full = with_dev_public_url(full)
            prepare_servers(full)
            if "sandbox" in provider_modes(full).values():
                supervisor.start(simulator_spec(full))
            # Each role but the api serves /metrics and /health/* on a port of its own.
            metrics = {role: free_port() for role in DEV_ROLES if role != "api"}
            for role in DEV_ROLES:
                port = metrics.get(role, full.metrics_port)
                supervisor.start(role_spec(role, msgspec.structs.replace(full, metrics_port=port)))
            _write_stack_file(data_dir, full)
            print(url_table(full, data_dir, metrics), file=out, flush=True)
            while True:
                supervisor.check()
                time.sleep(0.5)
        except StopRequestedError as stop:
            log.info("stopping", signal=str(stop))
        finally:
            (data_dir / STACK_FILE).unlink(missing_ok=True)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            supervisor.stop_all()
            print("Herald stopped.", file=out, flush=True)
