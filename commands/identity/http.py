"""HTTP for identity commands: registration, role changes, API keys.

Controllers translate HTTP into a command, run its handler, and translate back; the rules
live in the domain and the handlers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from commands.identity import handlers
from commands.identity.messages import (
    ChangePassword,
    DisableUser,
    GrantRole,
    IssueApiKey,
    RegisterUser,
    RevokeApiKey,
    RevokeRole,
)
from domain.identity.api_key import ApiKey
from domain.identity.roles import Role
from domain.identity.user import User
from infrastructure.auth.api_keys import CACHE_TTL_S
from infrastructure.auth.guard import ANY_ROLE, PUBLIC, allow, current_principal
from infrastructure.resources import Resources


class RegisterRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tenant: str
    email: str
    password: str


class RoleRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    role: Role


class ApiKeyRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    role: Role


class PasswordChangeRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    current_password: str
    new_password: str


class DisableRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: str


class UserAccount(msgspec.Struct, frozen=True):
    id: UUID
    tenant: str
    email: str
    roles: list[Role]
    status: str


class IssuedApiKey(msgspec.Struct, frozen=True):
    id: UUID
    tenant: str
    name: str
    role: Role
    key: str  # shown once; only its hash is kept


def _account(user: User) -> UserAccount:
    status = "disabled" if user.disabled else "active"
    return UserAccount(user.id, user.tenant_id, user.email, sorted(user.roles), status)


class RegistrationController(Controller):
    path = "/auth"
    tags = ["auth"]  # noqa: RUF012

    @post(
        "/register",
        policy=PUBLIC,
        status_code=HTTP_201_CREATED,
        operation_id="registerUser",
        summary="Create an account with the `user` role in a tenant.",
    )
    async def register(
        self, data: JSONBody[RegisterRequest], resources: NamedDependency[Resources]
    ) -> UserAccount:
        command = RegisterUser(tenant_id=data.tenant, email=data.email, password=data.password)
        user = await asyncio.to_thread(
            handlers.register_user, command, store=resources.event_store, hasher=resources.hasher
        )
        return _account(user)

    @post(
        "/password",
        policy=ANY_ROLE,
        status_code=HTTP_204_NO_CONTENT,
        operation_id="changePassword",
        summary="Change your password; every token of yours stops working, so log in again.",
    )
    async def change_password(
        self,
        data: JSONBody[PasswordChangeRequest],
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
    ) -> None:
        principal = current_principal(request)
        if principal.kind != "user":
            raise PermissionDeniedException("API keys have no password")
        command = ChangePassword(
            tenant_id=principal.tenant_id,
            user_id=UUID(principal.subject),
            current_password=data.current_password,
            new_password=data.new_password,
        )
        await asyncio.to_thread(
            handlers.change_password, command, store=resources.event_store, hasher=resources.hasher
        )
        await resources.revocations.revoke_user(principal.subject)


class UserAdminController(Controller):
    path = "/admin/users/{user_id:uuid}"
    tags = ["admin"]  # noqa: RUF012

    @post(
        "/disable",
        policy=allow(Role.ADMIN),
        status_code=HTTP_200_OK,
        operation_id="disableUser",
        summary="Disable a user of your tenant; their tokens stop working at once.",
    )
    async def disable(
        self,
        user_id: FromPath[UUID],
        data: JSONBody[DisableRequest],
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
    ) -> UserAccount:
        principal = current_principal(request)
        command = DisableUser(
            tenant_id=principal.tenant_id,
            user_id=user_id,
            reason=data.reason,
            disabled_by=principal.subject,
        )
        user = await asyncio.to_thread(handlers.disable_user, command, store=resources.event_store)
        await resources.revocations.revoke_user(str(user_id))
        return _account(user)


class UserRolesController(Controller):
    path = "/admin/users/{user_id:uuid}/roles"
    tags = ["admin"]  # noqa: RUF012

    @post(
        policy=allow(Role.ADMIN),
        status_code=HTTP_200_OK,
        operation_id="grantRole",
        summary="Grant a role to a user of your tenant.",
    )
    async def grant(
        self,
        user_id: FromPath[UUID],
        data: JSONBody[RoleRequest],
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
    ) -> UserAccount:
        principal = current_principal(request)
        command = GrantRole(
            tenant_id=principal.tenant_id,
            user_id=user_id,
            role=data.role,
            granted_by=principal.subject,
        )
        user = await asyncio.to_thread(handlers.grant_role, command, store=resources.event_store)
        return _account(user)

    @delete(
        "/{role:str}",
        policy=allow(Role.ADMIN),
        status_code=HTTP_200_OK,
        operation_id="revokeRole",
        summary="Revoke a role; the user's current access tokens stop working at once.",
    )
    async def revoke(
        self,
        user_id: FromPath[UUID],
        role: FromPath[Role],
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
    ) -> UserAccount:
        principal = current_principal(request)
        command = RevokeRole(
            tenant_id=principal.tenant_id,
            user_id=user_id,
            role=role,
            revoked_by=principal.subject,
        )
        before = await asyncio.to_thread(handlers.revoke_role, command, store=resources.event_store)
        await resources.revocations.revoke_user(str(user_id))
        return _account(before)


class ApiKeyCommandsController(Controller):
    path = "/admin/api-keys"
    tags = ["admin"]  # noqa: RUF012

    @post(
        policy=allow(Role.ADMIN),
        status_code=HTTP_201_CREATED,
        operation_id="issueApiKey",
        summary="Issue an API key for a service client; the key is shown only in this answer.",
    )
    async def issue(
        self,
        data: JSONBody[ApiKeyRequest],
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
    ) -> IssuedApiKey:
        principal = current_principal(request)
        command = IssueApiKey(
            tenant_id=principal.tenant_id,
            name=data.name,
            role=data.role,
            issued_by=principal.subject,
        )
        key, presented = await asyncio.to_thread(
            handlers.issue_api_key, command, store=resources.event_store
        )
        return _issued(key, presented)

    @delete(
        "/{key_id:uuid}",
        policy=allow(Role.ADMIN),
        status_code=HTTP_204_NO_CONTENT,
        operation_id="revokeApiKey",
        summary="Revoke an API key; every process refuses it at once.",
    )
    async def revoke(
        self,
        key_id: FromPath[UUID],
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
    ) -> None:
        principal = current_principal(request)
        command = RevokeApiKey(
            tenant_id=principal.tenant_id, key_id=key_id, revoked_by=principal.subject
        )
        await asyncio.to_thread(handlers.revoke_api_key, command, store=resources.event_store)
        # Processes cache key records for CACHE_TTL_S; deny the key until caches expire.
        await resources.revocations.revoke_token(
            f"key:{key_id}", int(time.time() + CACHE_TTL_S + 5)
        )


def _issued(key: ApiKey, presented: str) -> IssuedApiKey:
    return IssuedApiKey(key.id, key.tenant_id, key.name, key.role, presented)


ROUTES = [
    RegistrationController,
    UserAdminController,
    UserRolesController,
    ApiKeyCommandsController,
]
