"""Helpers for calling a running API as different principals, and the `herald` CLI."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest

from commands.identity.handlers import register_user
from commands.identity.messages import RegisterUser
from domain.identity.roles import Role
from infrastructure.auth.passwords import PasswordHasher
from infrastructure.devstack import prepare_servers
from infrastructure.devstack.dev import role_spec, simulator_spec
from infrastructure.devstack.servers import free_port
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.eventstore import catalog
from infrastructure.eventstore.store import EventStore
from infrastructure.settings import Settings
from tests.conftest import on_own_database

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Account:
    user_id: str
    tenant: str
    email: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def herald(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `herald ARGS` against the servers of `settings`; never raises on its exit status."""
    return subprocess.run(
        [sys.executable, "-m", "infrastructure.entrypoints.cli", *args],
        env={**os.environ, **settings.to_environ()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def login(api_url: str, tenant: str, email: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(
        f"{api_url}/auth/login", json={"tenant": tenant, "email": email, "password": password}
    )


@pytest.fixture(scope="session")
def event_store(stack: Settings) -> Iterator[EventStore]:
    assert stack.database_url is not None
    store = EventStore(stack.database_url.reveal(), catalog.codec_for(stack), pool_size=2)
    yield store
    store.close()


@pytest.fixture(scope="session")
def relay(stack: Settings) -> Iterator[None]:
    """The session's relay, following the stack's event store."""
    with Supervisor() as supervisor:
        supervisor.start(role_spec("relay", stack))
        yield


@pytest.fixture(scope="session")
def projector(stack: Settings, relay: None) -> Iterator[None]:
    """The session's projector, consuming what the session's relay publishes."""
    with Supervisor() as supervisor:
        supervisor.start(role_spec("projector", stack))
        yield


AccountFactory = Callable[..., Account]


@pytest.fixture(scope="session")
def account(api_url: str, event_store: EventStore, stack: Settings) -> AccountFactory:
    """Make a user with `roles` in `tenant` (straight into the event store) and log it in."""
    return account_factory(api_url, event_store, stack.bcrypt_rounds)


def account_factory(api_url: str, store: EventStore, bcrypt_rounds: int) -> AccountFactory:
    """Accounts registered in `store`'s database, logged in through the api at `api_url`."""
    hasher = PasswordHasher(bcrypt_rounds)

    def make(*roles: Role, tenant: str | None = None) -> Account:
        tenant = tenant or f"t-{uuid.uuid4().hex[:10]}"
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        user = register_user(
            RegisterUser(
                tenant_id=tenant, email=email, password=PASSWORD, roles=roles or (Role.USER,)
            ),
            store=store,
            hasher=hasher,
        )
        tokens = login(api_url, tenant, email).raise_for_status().json()
        return Account(str(user.id), tenant, email, tokens["access_token"], tokens["refresh_token"])

    return make


@dataclass
class OwnStack:
    """An api, relay and projector (and any other roles asked for) on a database, topics,
    consumer groups and Redis keys of their own: for tests that kill processes or trace
    them, whose effects must not reach the session's roles."""

    settings: Settings
    api_url: str
    supervisor: Supervisor
    account: AccountFactory


@contextmanager
def own_stack(
    base: Settings,
    database_url: str,
    *roles: str,
    logs: Path | None = None,
    metrics: Mapping[str, int] | None = None,
) -> Iterator[OwnStack]:
    """`base` (the session's api settings, changed as the test needs) on `database_url`,
    migrated, with the api, relay and projector running, then `roles`: each a role's name or
    "simulator", with a suffix to run more than one ("dispatcher-1", "dispatcher-2"). With
    `logs`, each process writes its output to NAME.log there; with `metrics`, the processes
    it names serve /metrics and /health/* on the port it gives."""
    port = free_port()
    settings = msgspec.structs.replace(
        on_own_database(base, database_url),
        http_port=port,
        public_url=f"http://127.0.0.1:{port}",
    )
    prepare_servers(settings)
    store = EventStore(database_url, catalog.codec_for(settings), pool_size=1)
    try:
        with Supervisor() as supervisor:
            for name in ("api", "relay", "projector", *roles):
                role = name.split("-")[0]  # "dispatcher-2" is a second dispatcher
                own = msgspec.structs.replace(settings, metrics_port=(metrics or {}).get(name, 0))
                spec = simulator_spec(own) if role == "simulator" else role_spec(role, own)
                log_path = logs / f"{name}.log" if logs is not None else None
                spec = dataclasses.replace(spec, name=name, log_path=log_path)
                supervisor.start(spec, ready_timeout=30)
            accounts = account_factory(settings.public_url, store, settings.bcrypt_rounds)
            yield OwnStack(settings, settings.public_url, supervisor, accounts)
    finally:
        store.close()
