"""`herald users create-admin`: the first admin of a tenant, since no default admin exists."""

from __future__ import annotations

import getpass
import sys
from uuid import UUID

from commands.identity.handlers import register_user
from commands.identity.messages import RegisterUser
from domain.errors import InvalidValueError
from domain.identity.roles import Role
from infrastructure.auth.passwords import PasswordHasher
from infrastructure.eventstore import catalog
from infrastructure.eventstore.store import EventStore
from infrastructure.settings import Settings


def read_password() -> str:
    """From a hidden prompt, asked twice, on a terminal; else the first line of stdin."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise InvalidValueError("password", "the two entries differ")
    return first


def create_admin(settings: Settings, database_url: str, *, email: str, tenant: str) -> UUID:
    password = read_password()
    store = EventStore(database_url, catalog.codec_for(settings), pool_size=1)
    try:
        command = RegisterUser(
            tenant_id=tenant,
            email=email,
            password=password,
            roles=(Role.ADMIN,),
            registered_by="herald users create-admin",
        )
        return register_user(command, store=store, hasher=PasswordHasher(settings.bcrypt_rounds)).id
    finally:
        store.close()
