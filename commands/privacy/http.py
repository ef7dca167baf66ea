"""Erasure requests (admin only): the seed's DELETE /data-pipeline/anonymize/{subject}, and
POST /data-pipeline/erasures naming a recipient or a user. Both answer 202 at once with the
erasure's id; GET /data-pipeline/erasures/{id} shows its progress, then its receipt."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar
from uuid import UUID

import msgspec
from litestar import Response, delete, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_202_ACCEPTED

from commands.privacy.requests import ErasureAccepted, RequestErasure
from domain.identity.roles import AROUND, EMAIL_PATTERN, Role
from domain.notifications.values import DEVICE_TOKEN_PATTERN, E164_PATTERN
from infrastructure.auth.guard import allow
from infrastructure.web.commands import Commands

TAGS = ["data pipeline"]
# A recipient's address as `normalised_recipient` takes it: an email address (it has an @),
# an E.164 number (it starts with +), or else a device token.
ADDRESS = rf"^(?:{AROUND}{EMAIL_PATTERN}{AROUND}|{E164_PATTERN}|{DEVICE_TOKEN_PATTERN})$"
Address = Annotated[str, msgspec.Meta(min_length=1, max_length=320, pattern=ADDRESS)]


class ErasureRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Exactly one of the two: a recipient's address (email, E.164 number or device token),
    or a user account's id."""

    recipient: Address | None = None
    user_id: UUID | None = None

    # Read by infrastructure/web/struct_schemas.py: one of the two is given, the other null.
    OPENAPI_RULES: ClassVar[list[Schema]] = [
        Schema(
            one_of=[
                Schema(
                    required=[given],
                    properties={
                        given: Schema(type=OpenAPIType.STRING),
                        other: Schema(type=OpenAPIType.NULL),
                    },
                )
                for given, other in (("recipient", "user_id"), ("user_id", "recipient"))
            ]
        )
    ]


class ErasureStarted(msgspec.Struct, frozen=True, kw_only=True):
    erasure_id: UUID
    requested_at: datetime
    already_requested: bool  # an erasure of this subject was under way: this is that one
    status_url: str


async def _erase(
    commands: Commands, *, recipient: str | None, user_id: UUID | None
) -> Response[ErasureStarted]:
    """Ask for the erasure, in the caller's tenant; 202 with its id and where to follow it."""
    caller = commands.caller
    accepted: ErasureAccepted = await commands.handle(
        RequestErasure(
            tenant_id=caller.tenant_id,
            recipient=recipient,
            user_id=user_id,
            requested_by=caller.subject,
        )
    )
    url = f"/data-pipeline/erasures/{accepted.erasure_id}"
    body = ErasureStarted(
        erasure_id=accepted.erasure_id,
        requested_at=accepted.requested_at,
        already_requested=accepted.already_requested,
        status_url=url,
    )
    return Response(body, status_code=HTTP_202_ACCEPTED, headers={"Location": url})


_DESCRIPTION = (
    "Cancels the subject's notifications not yet sent, destroys its data keys (its personal "
    "data in the event log, Kafka and backups becomes unreadable), scrubs the read models, "
    "export files and archives, deletes the provider's copies where the provider allows, and "
    "records a receipt. A scheduler carries it out; asking again while it runs answers with "
    "the same erasure."
)


@post(
    "/data-pipeline/erasures",
    policy=allow(Role.ADMIN),
    tags=TAGS,
    status_code=HTTP_202_ACCEPTED,
    operation_id="requestErasure",
    summary="Erase a data subject: a recipient or a user account.",
    description=_DESCRIPTION,
)
async def request_erasure(
    data: JSONBody[ErasureRequest], commands: NamedDependency[Commands]
) -> Response[ErasureStarted]:
    return await _erase(commands, recipient=data.recipient, user_id=data.user_id)


@delete(
    "/data-pipeline/anonymize/{subject:str}",
    policy=allow(Role.ADMIN),
    tags=TAGS,
    status_code=HTTP_202_ACCEPTED,
    operation_id="anonymizeSubject",
    summary="Erase a data subject, by the seed's path: a user id, or a recipient's address.",
    description=_DESCRIPTION,
)
async def anonymize(
    subject: Annotated[str, PathParameter(pattern=ADDRESS, description="A user id or an address.")],
    commands: NamedDependency[Commands],
) -> Response[ErasureStarted]:
    try:
        user_id = UUID(subject)
    except ValueError:
        return await _erase(commands, recipient=subject, user_id=None)
    return await _erase(commands, recipient=None, user_id=user_id)


ROUTES = [request_erasure, anonymize]
