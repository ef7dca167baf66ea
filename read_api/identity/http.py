"""Identity read endpoints, served from the users and api_keys read models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import QueryParameter

from domain.identity.roles import Role
from infrastructure.auth.guard import ANY_ROLE, allow, current_principal
from infrastructure.resources import Resources
from infrastructure.web.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor


class UserView(msgspec.Struct, frozen=True):
    id: UUID
    tenant: str
    email: str | None
    roles: list[str]
    status: str
    created_at: datetime


class ApiKeyView(msgspec.Struct, frozen=True):
    id: UUID
    tenant: str
    name: str
    role: str
    status: str
    created_by: str
    created_at: datetime


class Me(msgspec.Struct, frozen=True):
    kind: str
    user: UserView | None = None
    api_key: ApiKeyView | None = None


class UserPage(msgspec.Struct, frozen=True):
    items: list[UserView]
    next_cursor: str | None


class ApiKeyPage(msgspec.Struct, frozen=True):
    items: list[ApiKeyView]
    next_cursor: str | None


_USER = "user_id, tenant_id, email, roles, status, created_at"
_KEY = "key_id, tenant_id, name, role, status, created_by, created_at"

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page.")]


async def _page(
    resources: Resources,
    table: str,
    *,
    columns: str,
    id_column: str,
    tenant: str,
    limit: int,
    cursor: str | None,
) -> list[tuple[Any, ...]]:
    where = "tenant_id = %s"
    params: list[Any] = [tenant]
    if cursor is not None:
        created_at, row_id = decode_cursor(cursor)
        where += f" AND (created_at, {id_column}) > (%s, %s)"
        params += [created_at, row_id]
    if table == "users":
        where += " AND status <> 'erased'"
    sql = (
        f"SELECT {columns} FROM {table} WHERE {where}"  # noqa: S608 - names are ours
        f" ORDER BY created_at, {id_column} LIMIT %s"
    )
    async with resources.db.connection() as conn:
        rows = await (await conn.execute(sql, [*params, limit + 1])).fetchall()
    return list(rows)


def _next(rows: list[tuple[Any, ...]], limit: int) -> str | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(last[-1], last[0])


# Handlers are plain functions, not controllers: litestar cannot merge two controllers'
# handlers on one path (POST /admin/api-keys lives with the commands), but merges functions.


@get(
    "/auth/me",
    policy=ANY_ROLE,
    tags=["auth"],
    operation_id="getMe",
    summary="Who the credentials belong to.",
)
async def me(request: Request[Any, Any, Any], resources: NamedDependency[Resources]) -> Me:
    principal = current_principal(request)
    table, columns, id_column = (
        ("users", _USER, "user_id") if principal.kind == "user" else ("api_keys", _KEY, "key_id")
    )
    sql = f"SELECT {columns} FROM {table} WHERE {id_column} = %s AND tenant_id = %s"  # noqa: S608
    async with resources.db.connection() as conn:
        cursor = await conn.execute(sql, (UUID(principal.subject), principal.tenant_id))
        row = await cursor.fetchone()
    if row is None:
        raise NotFoundException("the account behind these credentials no longer exists")
    if principal.kind == "user":
        return Me(kind="user", user=UserView(*row))
    return Me(kind="api_key", api_key=ApiKeyView(*row))


@get(
    "/admin/users",
    policy=allow(Role.ADMIN),
    tags=["admin"],
    operation_id="listUsers",
    summary="Users of your tenant, oldest first, a page at a time.",
)
async def list_users(
    request: Request[Any, Any, Any],
    resources: NamedDependency[Resources],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> UserPage:
    rows = await _page(
        resources,
        "users",
        columns=_USER,
        id_column="user_id",
        tenant=current_principal(request).tenant_id,
        limit=limit,
        cursor=cursor,
    )
    return UserPage([UserView(*r) for r in rows[:limit]], _next(rows, limit))


@get(
    "/admin/api-keys",
    policy=allow(Role.ADMIN),
    tags=["admin"],
    operation_id="listApiKeys",
    summary="API keys of your tenant (never their secrets), a page at a time.",
)
async def list_api_keys(
    request: Request[Any, Any, Any],
    resources: NamedDependency[Resources],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ApiKeyPage:
    rows = await _page(
        resources,
        "api_keys",
        columns=_KEY,
        id_column="key_id",
        tenant=current_principal(request).tenant_id,
        limit=limit,
        cursor=cursor,
    )
    return ApiKeyPage([ApiKeyView(*r) for r in rows[:limit]], _next(rows, limit))


ROUTES = [me, list_users, list_api_keys]
