"""RFC 9457 problem details for every error the API returns, stack traces never included."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import msgspec
import psycopg
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap
from psycopg_pool import PoolTimeout

from domain.errors import ConflictError, DomainError, InvalidValueError, NotFoundError
from infrastructure.auth.principal import CredentialsRefusedError
from infrastructure.eventstore.store import ConcurrencyError
from infrastructure.eventstore.writer import StoreUnavailableError
from infrastructure.log import get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
# How long a client should wait before retrying while the database is unreachable: about
# what a PostgreSQL restart or failover takes.
DATABASE_RETRY_AFTER_S = 2


class FieldError(msgspec.Struct, frozen=True):
    """One bad input: `name` is the field's path, `reason` says what is wrong with it."""

    name: str
    reason: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    title: str
    status: int
    type: str = "about:blank"
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None
    archive: str | None = None  # 410: the archive that holds what was asked for


class ArchivedError(Exception):
    """What was asked for left the read models and the log for an archive: 410 Gone."""

    def __init__(self, subject: str, archive: str) -> None:
        self.archive = archive
        super().__init__(
            f"{subject} was archived past its tenant's retention; the archive {archive} holds"
            " it (herald archive restore brings it back)"
        )


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    detail: str | None = None,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    archive: str | None = None,
) -> Response[Problem]:
    context = structlog.contextvars.get_contextvars()
    body = Problem(
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=request.url.path,
        request_id=context.get("request_id"),
        errors=errors,
        archive=archive,
    )
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_NAMED_FIELD = re.compile(r"(?:unknown|missing required) field `([^`]+)`")


def _client_name(request: Request[Any, Any, Any], name: str) -> str:
    """The name the client used for a handler's parameter: `from` for a parameter the code
    calls `start`, say, or the name of the header it comes in."""
    handler = request.scope.get("route_handler")
    signature = getattr(handler, "parsed_fn_signature", None)
    declared = signature.parameters.get(name) if signature is not None else None
    definition = getattr(declared, "kwarg_definition", None)
    for alias in ("name", "query", "header", "cookie"):
        value = getattr(definition, alias, None)
        if isinstance(value, str) and value:
            return value
    return name


def _validation_errors(
    request: Request[Any, Any, Any], exc: ValidationException
) -> list[FieldError]:
    errors = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            name = _client_name(request, str(item.get("key") or item.get("source") or "body"))
            reason = str(item.get("message", exc.detail))
            named = _NAMED_FIELD.search(reason)
            if named and name == "data":  # litestar names the whole body; name the field
                name = named.group(1)
            errors.append(FieldError(name=name, reason=reason.replace("`", "")))
    return errors


def _on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Problem]:
    # Unprocessable content: the request is well-formed HTTP but its data is not acceptable.
    return problem_response(
        request,
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "The request has invalid fields.",
        errors=_validation_errors(request, exc) or None,
    )


def _on_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    detail = exc.detail if exc.detail and exc.detail != HTTPStatus(status).phrase else None
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR and status != HTTPStatus.SERVICE_UNAVAILABLE:
        detail = None  # a 5xx detail may describe internals; 503s say what to wait for
    return problem_response(request, status, detail, headers=exc.headers)


def _on_domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[Problem]:
    errors = [FieldError(exc.field, exc.reason)] if isinstance(exc, InvalidValueError) else None
    if isinstance(exc, NotFoundError):
        return problem_response(request, HTTPStatus.NOT_FOUND, str(exc))
    if isinstance(exc, ConflictError):
        return problem_response(request, HTTPStatus.CONFLICT, str(exc), errors=errors)
    if isinstance(exc, InvalidValueError):
        return problem_response(
            request,
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "The request has invalid fields.",
            errors=errors,
        )
    return problem_response(request, HTTPStatus.CONFLICT, str(exc))


def _on_concurrent_change(
    request: Request[Any, Any, Any], exc: ConcurrencyError
) -> Response[Problem]:
    return problem_response(
        request, HTTPStatus.CONFLICT, "The resource changed while the request ran; retry it."
    )


def _on_refused_credentials(
    request: Request[Any, Any, Any], exc: CredentialsRefusedError
) -> Response[Problem]:
    return problem_response(request, HTTPStatus.UNAUTHORIZED, str(exc))


def _on_archived(request: Request[Any, Any, Any], exc: ArchivedError) -> Response[Problem]:
    return problem_response(request, HTTPStatus.GONE, str(exc), archive=exc.archive)


def _on_database_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    # A command's events are appended all together or not at all, but a connection lost
    # during the commit leaves unknown which: the Idempotency-Key makes the retry safe. No
    # traceback: the cause is outside this process.
    log.warning("database unavailable", path=request.url.path, error=type(exc).__name__)
    return problem_response(
        request,
        HTTPStatus.SERVICE_UNAVAILABLE,
        "The database is unavailable. Retry after Retry-After seconds, with the same"
        " Idempotency-Key so that a command is recorded once.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.exception("unhandled error", path=request.url.path, method=request.method)
    return problem_response(
        request,
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "An unexpected error occurred. Quote the request id when reporting it.",
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ValidationException: _on_validation,
    DomainError: _on_domain_error,
    ConcurrencyError: _on_concurrent_change,
    CredentialsRefusedError: _on_refused_credentials,
    ArchivedError: _on_archived,
    StoreUnavailableError: _on_database_unavailable,
    psycopg.OperationalError: _on_database_unavailable,
    PoolTimeout: _on_database_unavailable,
    HTTPException: _on_http_exception,
    Exception: _on_unexpected,
}

__all__ = [
    "EXCEPTION_HANDLERS",
    "PROBLEM_JSON",
    "ArchivedError",
    "FieldError",
    "Problem",
    "problem_response",
]
