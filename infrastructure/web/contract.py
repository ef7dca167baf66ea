"""What the OpenAPI document says that litestar cannot read off a handler's signature.

The guard answers 401, 403, 429 and 503 from a route's policy, and litestar answers 404, 413
and 422 from its path, parameters and body; `ProblemResponses` documents those on every
operation from the same policy and signature, so the document cannot drift from the guard.
A handler declares the rest itself: `responses=problems(409, ...)` for what only its logic
answers, `content_types=(...)` for a body litestar sees only as bytes, `request_body=` for
a body it decodes itself. `complete_document` then puts the response headers (rate limits,
Retry-After, WWW-Authenticate) on the answers that carry them, and drops litestar's own 400
shape: Herald answers invalid input with a 422 problem.
"""

from __future__ import annotations

import copy
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.openapi.spec import (
    Parameter as OpenAPIParameter,
)
from litestar.params import QueryParameter
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

from infrastructure.auth.guard import POLICY, PROBE, Policy
from infrastructure.web.problems import PROBLEM_JSON, Problem

if TYPE_CHECKING:
    from litestar._kwargs import KwargsModel

_WHY = {
    HTTPStatus.BAD_REQUEST: "The body is not JSON.",
    HTTPStatus.UNAUTHORIZED: "Credentials are missing, malformed, expired or revoked.",
    HTTPStatus.FORBIDDEN: "The caller's role does not allow this.",
    HTTPStatus.NOT_FOUND: "Nothing of that id in the caller's tenant, or a malformed id.",
    HTTPStatus.CONFLICT: "What is asked for conflicts with the resource's current state.",
    HTTPStatus.GONE: "Archived past its tenant's retention; `archive` names the archive.",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "The body is larger than the API accepts.",
    HTTPStatus.UNPROCESSABLE_ENTITY: "Invalid input; `errors` names each field at fault.",
    HTTPStatus.TOO_MANY_REQUESTS: "Over a rate limit; retry after `Retry-After` seconds.",
    HTTPStatus.SERVICE_UNAVAILABLE: "A service this needs is unavailable; retry later.",
}
# Text with no control characters: what a filter on stored names may hold (PostgreSQL
# refuses NUL in any text it is given).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
# A filter on a stored name (an audit entry's action or actor), in a query or in a body.
NAME_FILTER = QueryParameter(min_length=1, max_length=100, pattern=PRINTABLE)
NameFilter = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=PRINTABLE)]
# The largest log position a request may name: positions are PostgreSQL bigints.
MAX_POSITION = 2**63 - 1
# A handler's keyword: the media types its success answer may have, when litestar sees
# only bytes or a stream (an export in the format asked for, Prometheus' text).
CONTENT_TYPES = "content_types"
# A handler's keyword: the schema of a JSON body the handler decodes itself.
REQUEST_BODY = "request_body"


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """A handler's `responses=`: the problem+json answers that only its own logic gives."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=_WHY.get(HTTPStatus(status), HTTPStatus(status).description),
            generate_examples=False,
        )
        for status in statuses
    }


def encoded(status: int, body: type, description: str) -> dict[int, ResponseSpec]:
    """The success answer of a handler that returns its body already encoded (a stored,
    replayable answer): `body` is the type it was encoded from."""
    return {status: ResponseSpec(data_container=body, description=description)}


def implied_statuses(handler: HTTPRouteHandler, inputs: KwargsModel) -> set[int]:
    """The problem statuses the guard and the framework give this handler: `inputs` is what
    litestar reads from a request for it, its dependencies' parameters included."""
    policy = handler.opt.get(POLICY)
    if not isinstance(policy, Policy) or policy == PROBE:
        return set()
    statuses: set[int] = set()
    if policy.credentials:
        statuses.add(HTTPStatus.UNAUTHORIZED)  # even a public route refuses bad credentials
    if policy.roles is not None:
        statuses.add(HTTPStatus.FORBIDDEN)
    if policy.rate_limited:
        statuses |= {HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE}
    if inputs.expected_path_params:
        statuses.add(HTTPStatus.NOT_FOUND)
    body = "data" in inputs.expected_reserved_kwargs
    if body:
        statuses |= {HTTPStatus.BAD_REQUEST, HTTPStatus.REQUEST_ENTITY_TOO_LARGE}
    parameters = (
        inputs.expected_path_params
        | inputs.expected_query_params
        | inputs.expected_header_params
        | inputs.expected_cookie_params
    )
    if body or parameters:
        statuses.add(HTTPStatus.UNPROCESSABLE_ENTITY)
    return statuses


class ProblemResponses(ReceiveRoutePlugin):
    """Adds each route's implied problem answers to its handlers' `responses` as litestar
    registers it, before the document is built from them."""

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler, inputs in route.route_handler_map.values():
            implied = implied_statuses(handler, inputs)
            handler.responses = {**problems(*implied), **(handler.responses or {})}


def _header(description: str, kind: OpenAPIType = OpenAPIType.INTEGER) -> OpenAPIHeader:
    return OpenAPIHeader(description=description, schema=Schema(type=kind))


_RATE_LIMIT = {
    "RateLimit-Limit": _header("Requests allowed in the tightest window."),
    "RateLimit-Remaining": _header("Requests left in that window."),
    "RateLimit-Reset": _header("Seconds until that window resets."),
    "RateLimit-Policy": _header(
        "Every window of the caller's limit, as `LIMIT;w=SECONDS, ...`.", OpenAPIType.STRING
    ),
}
_RETRY_AFTER = _header("Seconds to wait before retrying.")
_CHALLENGE = _header("The authentication scheme to use: Bearer.", OpenAPIType.STRING)


def _headers_for(status: str, policy: Policy) -> dict[str, OpenAPIHeader]:
    headers: dict[str, OpenAPIHeader] = {}
    if policy.rate_limited and policy != PROBE:
        headers.update(_RATE_LIMIT)
    if status in {"429", "503"}:
        headers["Retry-After"] = _RETRY_AFTER
    if status == "401":
        headers["WWW-Authenticate"] = _CHALLENGE
    return headers


def complete_document(app: Litestar) -> None:
    """Finish the document litestar built from the handlers; call once the app has all its
    routes."""
    paths = app.openapi_schema.paths or {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path_format not in paths:
            continue
        item = paths[route.path_format]
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation: Operation | None = getattr(item, method.lower(), None)
                if operation is not None and operation.responses:
                    _complete(operation, handler)


def _complete(operation: Operation, handler: HTTPRouteHandler) -> None:
    policy = handler.opt.get(POLICY)
    if not isinstance(policy, Policy):
        return
    responses = operation.responses or {}
    if HTTPStatus.BAD_REQUEST not in (handler.responses or {}):
        responses.pop("400", None)
    _set_content_types(operation, handler)
    _bound_optional_parameters(operation, handler)
    body = handler.opt.get(REQUEST_BODY)
    if isinstance(body, Schema):  # JSON
        content = {"application/json": OpenAPIMediaType(schema=body)}
        operation.request_body = RequestBody(content=content, required=True)
    elif isinstance(body, RequestBody):  # in a media type of its own
        operation.request_body = body
    if policy.roles is None:
        # The document's default is a bearer token; a route open to anyone says otherwise:
        # a token is optional (anyone, or a caller known by it), or never read at all.
        optional = policy.credentials and policy != PROBE
        operation.security = [{}, {"bearer": []}] if optional else []
    success = responses.get(str(handler.status_code))
    if isinstance(success, OpenAPIResponse):
        # A success answer declared by `encoded` loses the handler's response_headers.
        declared = {
            header.name: OpenAPIHeader(description=header.description, schema=_STRING)
            for header in handler.resolve_response_headers()
        }
        _add_headers(success, declared)
    for status, response in responses.items():
        _add_headers(response, _headers_for(status, policy))


def _add_headers(response: Any, headers: dict[str, OpenAPIHeader]) -> None:
    if isinstance(response, OpenAPIResponse) and headers:
        response.headers = {**headers, **(response.headers or {})}


_STRING = Schema(type=OpenAPIType.STRING)
_TEXT = OpenAPIMediaType(schema=_STRING)
# A JSON body litestar sees only as bytes is an export: an array of rows.
_ROWS = OpenAPIMediaType(
    schema=Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT))
)


def _set_content_types(operation: Operation, handler: HTTPRouteHandler) -> None:
    media_types = handler.opt.get(CONTENT_TYPES)
    success = (operation.responses or {}).get(str(handler.status_code))
    if media_types and isinstance(success, OpenAPIResponse):
        # Parameters such as charset are the server's to add; the type is what a client picks.
        names = [media_type.split(";")[0] for media_type in media_types]
        success.content = {name: _ROWS if name == "application/json" else _TEXT for name in names}


# A parameter's declared bounds, by the name the schema gives each.
_BOUNDS = {
    "ge": "minimum",
    "le": "maximum",
    "gt": "exclusive_minimum",
    "lt": "exclusive_maximum",
    "min_length": "min_length",
    "max_length": "max_length",
    "pattern": "pattern",
}


def _declarations(handler: HTTPRouteHandler) -> dict[str, Any]:
    """Each parameter's declaration (QueryParameter, HeaderParameter...) by its name in the
    request, from the handler's signature and from those of its dependencies."""
    signatures = [handler.parsed_fn_signature]
    for provide in handler.resolve_dependencies().values():
        signatures.append(provide.parsed_fn_signature)
    declared: dict[str, Any] = {}
    for signature in signatures:
        for name, parameter in signature.parameters.items():
            if (kwarg := parameter.kwarg_definition) is not None:
                declared[getattr(kwarg, "name", None) or name] = kwarg
    return declared


def _bound_optional_parameters(operation: Operation, handler: HTTPRouteHandler) -> None:
    """litestar writes an optional parameter (`int | None`) as one of the value's type and
    null, and drops its bounds on the way. A parameter is left out, never sent as null: its
    schema is the value's own, with the bounds its declaration gives."""
    declared = _declarations(handler)
    for parameter in operation.parameters or []:
        if not isinstance(parameter, OpenAPIParameter) or not isinstance(parameter.schema, Schema):
            continue
        values = [s for s in parameter.schema.one_of or [] if not _is_null(s)]
        if len(values) != 1 or len(parameter.schema.one_of or []) != 2:  # noqa: PLR2004
            continue
        value = values[0]
        if isinstance(value, Schema):
            value = copy.copy(value)
            value.description = value.description or parameter.schema.description
            kwarg = declared.get(parameter.name)
            for ours, theirs in _BOUNDS.items():
                if (bound := getattr(kwarg, ours, None)) is not None:
                    setattr(value, theirs, bound)
        parameter.schema = value


def _is_null(schema: Schema | Reference) -> bool:
    return isinstance(schema, Schema) and schema.type == OpenAPIType.NULL
