"""Identity read endpoints, served from the users and api_keys read models."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException

from domain.identity.roles import Role
from infrastructure.auth.guard import ANY_ROLE, allow
from infrastructure.web.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_token, paginate
from read_api.viewing import ReadModels, Viewer


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


async def _page(
    models: ReadModels,
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
        created_at, row_id = decode_token(cursor, tuple[datetime, UUID])
        where += f" AND (created_at, {id_column}) > (%s, %s)"
        params += [created_at, row_id]
    if table == "users":
        where += " AND status <> 'erased'"
    sql = (
        f"SELECT {columns} FROM {table} WHERE {where}"  # noqa: S608 - names are ours
        f" ORDER BY created_at, {id_column} LIMIT %s"
    )
    async with models.db.connection() as conn:
        rows = await (await conn.execute(sql, [*params, limit + 1])).fetchall()
    return list(rows)


def _created_and_id(row: tuple[Any, ...]) -> tuple[datetime, UUID]:
    return row[-1], row[0]


# Handlers are plain functions, not controllers: litestar cannot merge two controllers'
# handlers on one path (POST /admin/api-keys lives with the commands), but merges functions.


@get(
    "/auth/me",
    policy=ANY_ROLE,
    tags=["auth"],
    operation_id="getMe",
    summary="Who the credentials belong to.",
)
async def me(viewer: NamedDependency[Viewer]) -> Me:
    principal = viewer.caller
    table, columns, id_column = (
        ("users", _USER, "user_id") if principal.kind == "user" else ("api_keys", _KEY, "key_id")
    )
    sql = f"SELECT {columns} FROM {table} WHERE {id_column} = %s AND tenant_id = %s"  # noqa: S608
    async with viewer.models.db.connection() as conn:
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
    viewer: NamedDependency[Viewer],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> UserPage:
    rows = await _page(
        viewer.models,
        "users",
        columns=_USER,
        id_column="user_id",
        tenant=viewer.tenant,
        limit=limit,
        cursor=cursor,
    )
    page, following = paginate(rows, limit, _created_and_id)
    return UserPage([UserView(*r) for r in page], following)


@get(
    "/admin/api-keys",
    policy=allow(Role.ADMIN),
    tags=["admin"],
    operation_id="listApiKeys",
    summary="API keys of your tenant (never their secrets), a page at a time.",
)
async def list_api_keys(
    viewer: NamedDependency[Viewer],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ApiKeyPage:
    rows = await _page(
        viewer.models,
        "api_keys",
        columns=_KEY,
        id_column="key_id",
        tenant=viewer.tenant,
        limit=limit,
        cursor=cursor,
    )
    page, following = paginate(rows, limit, _created_and_id)
    return ApiKeyPage([ApiKeyView(*r) for r in page], following)


ROUTES = [me, list_users, list_api_keys]
