"""Helpers for calling a running API as different principals, and the `herald` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import msgspec
import pytest

from commands.identity.handlers import register_user
from commands.identity.messages import RegisterUser
from domain.identity.roles import Role
from infrastructure.auth.passwords import PasswordHasher
from infrastructure.devstack.dev import role_spec
from infrastructure.devstack.servers import free_port
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.eventstore import catalog
from infrastructure.eventstore.store import EventStore
from infrastructure.settings import Settings

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
def metrics_ports() -> dict[str, int]:
    """The port each of the session's relay and projector serves /metrics and /health/* on."""
    return {"relay": free_port(), "projector": free_port()}


@pytest.fixture(scope="session")
def relay(stack: Settings, metrics_ports: dict[str, int]) -> Iterator[None]:
    """The session's relay, following the stack's event store."""
    settings = msgspec.structs.replace(stack, metrics_port=metrics_ports["relay"])
    with Supervisor() as supervisor:
        supervisor.start(role_spec("relay", settings))
        yield


@pytest.fixture(scope="session")
def projector(stack: Settings, relay: None, metrics_ports: dict[str, int]) -> Iterator[None]:
    """The session's projector, consuming what the session's relay publishes."""
    settings = msgspec.structs.replace(stack, metrics_port=metrics_ports["projector"])
    with Supervisor() as supervisor:
        supervisor.start(role_spec("projector", settings))
        yield


AccountFactory = Callable[..., Account]


@pytest.fixture(scope="session")
def account(api_url: str, event_store: EventStore, stack: Settings) -> AccountFactory:
    """Make a user with `roles` in `tenant` (straight into the event store) and log it in."""
    hasher = PasswordHasher(stack.bcrypt_rounds)

    def make(*roles: Role, tenant: str | None = None) -> Account:
        tenant = tenant or f"t-{uuid.uuid4().hex[:10]}"
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        user = register_user(
            RegisterUser(
                tenant_id=tenant, email=email, password=PASSWORD, roles=roles or (Role.USER,)
            ),
            store=event_store,
            hasher=hasher,
        )
        tokens = login(api_url, tenant, email).raise_for_status().json()
        return Account(str(user.id), tenant, email, tokens["access_token"], tokens["refresh_token"])

    return make
