"""HTTP for identity commands: sessions, registration, passwords, users' roles, API keys.

Controllers translate HTTP into a command, hand it to the message bus, and translate the
result back; the rules live in the domain and the handlers.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from commands.identity.messages import (
    ChangePassword,
    DisableUser,
    GrantRole,
    IssueApiKey,
    RegisterUser,
    RevokeApiKey,
    RevokeRole,
)
from commands.identity.sessions import LogIn, LogOut, Refresh, TokenPair
from domain.identity.roles import (
    AROUND,
    EMAIL_PATTERN,
    MAX_PASSWORD_BYTES,
    MIN_PASSWORD_CHARS,
    Role,
)
from domain.identity.user import User
from infrastructure.auth.guard import ANY_ROLE, PUBLIC, AccessGate, allow, client_ip
from infrastructure.web.commands import Commands
from infrastructure.web.contract import problems

Email = Annotated[
    str,
    msgspec.Meta(
        max_length=254,
        pattern=rf"^{AROUND}{EMAIL_PATTERN}{AROUND}$",  # the shape domain.identity checks
        description="An email address, compared case-insensitively.",
    ),
]
Tenant = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit.",
    ),
]
NewPassword = Annotated[
    str,
    msgspec.Meta(
        min_length=MIN_PASSWORD_CHARS,
        max_length=MAX_PASSWORD_BYTES,
        description=f"{MIN_PASSWORD_CHARS} characters to {MAX_PASSWORD_BYTES} bytes in UTF-8.",
    ),
]
# Free text the handlers strip and store: not all blank, no control characters.
_TEXT = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=_TEXT)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=_TEXT)]


class LoginRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: Email
    password: str
    tenant: Tenant | None = None  # HERALD_DEFAULT_TENANT when left out, as the seed's login is


class RefreshRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refresh_token: str


class RegisterRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tenant: Tenant
    email: Email
    password: NewPassword


class RoleRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    role: Role


class ApiKeyRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: KeyName
    role: Role


class PasswordChangeRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    current_password: str
    new_password: NewPassword


class DisableRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Reason


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


class AuthCommands(Controller):
    path = "/auth"
    tags = ["auth"]  # noqa: RUF012

    @post(
        "/login",
        policy=PUBLIC,
        status_code=HTTP_200_OK,
        operation_id="login",
        summary="Exchange an email and password for an access token and a refresh token.",
        description="`tenant` names the tenant to sign in to; without it, the login goes to "
        "HERALD_DEFAULT_TENANT (as the seed's login, which sends only email and password). "
        "No other tenant is searched for the email.",
    )
    async def login(
        self,
        data: JSONBody[LoginRequest],
        request: Request[Any, Any, Any],
        gate: NamedDependency[AccessGate],
        commands: NamedDependency[Commands],
    ) -> TokenPair:
        await gate.limit(f"login:ip:{client_ip(request)}", gate.login)
        email = data.email.strip().lower()
        tenant = gate.default_tenant if data.tenant is None else data.tenant
        await gate.limit(f"login:account:{tenant}:{email}", gate.login)
        return await commands.handle(LogIn(tenant_id=tenant, email=email, password=data.password))

    @post(
        "/refresh",
        policy=PUBLIC,
        status_code=HTTP_200_OK,
        operation_id="refreshTokens",
        summary="Exchange a refresh token for a new pair; each refresh token works once.",
    )
    async def refresh(
        self, data: JSONBody[RefreshRequest], commands: NamedDependency[Commands]
    ) -> TokenPair:
        return await commands.handle(Refresh(refresh_token=data.refresh_token))

    @post(
        "/logout",
        policy=ANY_ROLE,
        status_code=HTTP_204_NO_CONTENT,
        operation_id="logout",
        summary="Revoke the access token used and every refresh token of its login.",
    )
    async def logout(self, commands: NamedDependency[Commands]) -> None:
        caller = commands.caller
        await commands.handle(LogOut(caller=caller))

    @post(
        "/register",
        policy=PUBLIC,
        status_code=HTTP_201_CREATED,
        operation_id="registerUser",
        responses=problems(HTTPStatus.CONFLICT),
        summary="Create an account with the `user` role in a tenant.",
    )
    async def register(
        self, data: JSONBody[RegisterRequest], commands: NamedDependency[Commands]
    ) -> UserAccount:
        command = RegisterUser(tenant_id=data.tenant, email=data.email, password=data.password)
        return _account(await commands.handle(command))

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
        commands: NamedDependency[Commands],
    ) -> None:
        caller = commands.caller
        if caller.kind != "user":
            raise PermissionDeniedException("API keys have no password")
        command = ChangePassword(
            tenant_id=caller.tenant_id,
            user_id=UUID(caller.subject),
            current_password=data.current_password,
            new_password=data.new_password,
        )
        await commands.handle(command)


class UserAdminController(Controller):
    path = "/admin/users/{user_id:uuid}"
    tags = ["admin"]  # noqa: RUF012

    @post(
        "/disable",
        policy=allow(Role.ADMIN),
        status_code=HTTP_200_OK,
        operation_id="disableUser",
        responses=problems(HTTPStatus.CONFLICT),
        summary="Disable a user of your tenant; their tokens stop working at once.",
    )
    async def disable(
        self,
        user_id: FromPath[UUID],
        data: JSONBody[DisableRequest],
        commands: NamedDependency[Commands],
    ) -> UserAccount:
        caller = commands.caller
        command = DisableUser(
            tenant_id=caller.tenant_id,
            user_id=user_id,
            reason=data.reason,
            disabled_by=caller.subject,
        )
        return _account(await commands.handle(command))


class UserRolesController(Controller):
    path = "/admin/users/{user_id:uuid}/roles"
    tags = ["admin"]  # noqa: RUF012

    @post(
        policy=allow(Role.ADMIN),
        status_code=HTTP_200_OK,
        operation_id="grantRole",
        responses=problems(HTTPStatus.CONFLICT),
        summary="Grant a role to a user of your tenant.",
    )
    async def grant(
        self,
        user_id: FromPath[UUID],
        data: JSONBody[RoleRequest],
        commands: NamedDependency[Commands],
    ) -> UserAccount:
        caller = commands.caller
        command = GrantRole(
            tenant_id=caller.tenant_id, user_id=user_id, role=data.role, granted_by=caller.subject
        )
        return _account(await commands.handle(command))

    @delete(
        "/{role:str}",
        policy=allow(Role.ADMIN),
        status_code=HTTP_200_OK,
        operation_id="revokeRole",
        responses=problems(HTTPStatus.CONFLICT),
        summary="Revoke a role; the user's current access tokens stop working at once.",
    )
    async def revoke(
        self,
        user_id: FromPath[UUID],
        role: FromPath[Role],
        commands: NamedDependency[Commands],
    ) -> UserAccount:
        caller = commands.caller
        command = RevokeRole(
            tenant_id=caller.tenant_id, user_id=user_id, role=role, revoked_by=caller.subject
        )
        return _account(await commands.handle(command))


class ApiKeyCommandsController(Controller):
    path = "/admin/api-keys"
    tags = ["admin"]  # noqa: RUF012

    @post(
        policy=allow(Role.ADMIN),
        status_code=HTTP_201_CREATED,
        operation_id="issueApiKey",
        responses=problems(HTTPStatus.CONFLICT),
        summary="Issue an API key for a service client; the key is shown only in this answer.",
    )
    async def issue(
        self,
        data: JSONBody[ApiKeyRequest],
        commands: NamedDependency[Commands],
    ) -> IssuedApiKey:
        caller = commands.caller
        command = IssueApiKey(
            tenant_id=caller.tenant_id, name=data.name, role=data.role, issued_by=caller.subject
        )
        key, presented = await commands.handle(command)
        return IssuedApiKey(key.id, key.tenant_id, key.name, key.role, presented)

    @delete(
        "/{key_id:uuid}",
        policy=allow(Role.ADMIN),
        status_code=HTTP_204_NO_CONTENT,
        operation_id="revokeApiKey",
        responses=problems(HTTPStatus.CONFLICT),
        summary="Revoke an API key; every process refuses it at once.",
    )
    async def revoke(
        self,
        key_id: FromPath[UUID],
        commands: NamedDependency[Commands],
    ) -> None:
        caller = commands.caller
        command = RevokeApiKey(tenant_id=caller.tenant_id, key_id=key_id, revoked_by=caller.subject)
        await commands.handle(command)


ROUTES = [AuthCommands, UserAdminController, UserRolesController, ApiKeyCommandsController]
