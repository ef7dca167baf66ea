"""Session fixtures: one real stack (PostgreSQL, Redis, broker) for the whole run.

The servers are started by the same code as `herald dev`, unless HERALD_DATABASE_URL,
HERALD_REDIS_URL or HERALD_KAFKA_BOOTSTRAP point at running ones.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgspec
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from infrastructure.devstack import prepare_servers, start_servers
from infrastructure.devstack.dev import role_spec
from infrastructure.devstack.servers import free_port
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.settings import Secret, Settings, load_settings

TEST_SIGNING_KEY = "test-signing-key-" + "k" * 32
TEST_MASTER_KEY = "dGVzdC1tYXN0ZXIta2V5LW9mLTMyLWJ5dGVzLWxvbmc"  # 32 bytes, base64


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    """Settings whose three server URLs answer, with migrations and topics applied.

    The servers' data lives in a directory of the session's own, not under pytest's temporary
    directories: pytest keeps only its last three sessions' ones, so a second pytest run
    beside this one would delete the data of this session's running servers."""
    configured = load_settings(env_file=None)
    if configured.jwt_secret is None:
        configured = msgspec.structs.replace(configured, jwt_secret=Secret(TEST_SIGNING_KEY))
    if configured.master_key is None:
        configured = msgspec.structs.replace(configured, master_key=Secret(TEST_MASTER_KEY))
    # Erasure waits this long for every process to drop a destroyed key from its cache.
    configured = msgspec.structs.replace(configured, key_cache_s=2)
    with tempfile.TemporaryDirectory(prefix="herald-test-stack-") as scratch:
        data = Path(scratch)
        # The sandbox's provider credentials and the templates live in the dev directory.
        configured = msgspec.structs.replace(configured, dev_dir=str(data / "dev"))
        with Supervisor() as supervisor:
            settings = start_servers(configured, supervisor, data)
            prepare_servers(settings)
            yield settings


@pytest.fixture
def fresh_database(stack: Settings) -> Iterator[str]:
    """A new, empty database on the stack's server, dropped afterwards."""
    with new_database(stack) as url:
        yield url


@contextmanager
def new_database(stack: Settings) -> Iterator[str]:
    """The URL of a new, empty database on the stack's server, until the block ends."""
    assert stack.database_url is not None
    server = stack.database_url.reveal()
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(make_conninfo(server, dbname="postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def on_own_database(stack: Settings, database_url: str) -> Settings:
    """Settings for roles on their own database: their own topics, groups and Redis keys too,
    so that what they publish never reaches the session's projector, and the reverse."""
    return msgspec.structs.replace(
        stack, database_url=Secret(database_url), namespace=f"t{uuid.uuid4().hex[:12]}"
    )


@pytest.fixture(scope="session")
def api_settings(stack: Settings) -> Settings:
    """The settings of the session's API, and of the roles that must call it back."""
    port = free_port()
    # One client IP runs the whole suite: limits generous enough not to get in its way.
    # tests/e2e/test_rate_limits.py checks the limits themselves.
    return msgspec.structs.replace(
        stack,
        http_port=port,
        public_url=f"http://{stack.http_host}:{port}",
        rate_limit_anonymous="100000/1s",
        rate_limit_authenticated="100000/1s",
        rate_limit_login="100000/1s",
        rate_limit_webhooks="100000/1s",
    )


@pytest.fixture(scope="session")
def api_url(api_settings: Settings) -> Iterator[str]:
    """Base URL of a running `herald serve api` process against the stack."""
    with Supervisor() as supervisor:
        supervisor.start(role_spec("api", api_settings), ready_timeout=30)
        yield api_settings.public_url


def with_redis(settings: Settings, url: str) -> Settings:
    return msgspec.structs.replace(settings, redis_url=Secret(url))
