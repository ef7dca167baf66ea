"""The bodies and headers of the notification commands' HTTP requests and answers, with the
constraints each field has: they validate a request and write the OpenAPI document both."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar
from uuid import UUID

import msgspec
from litestar.datastructures import ResponseHeader
from litestar.openapi.spec import OpenAPIType, Reference, Schema
from litestar.params import HeaderParameter

from domain.identity.roles import AROUND, EMAIL_PATTERN
from domain.notifications.values import (
    DEVICE_TOKEN_PATTERN,
    E164_PATTERN,
    MAX_BODY_BYTES,
    MAX_FALLBACK_CHANNELS,
    MAX_METADATA_KEYS,
    MAX_SUBJECT_CHARS,
    Channel,
    Priority,
)
from infrastructure.idempotency import MAX_KEY_LENGTH

MAX_BATCH = 10_000

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        pattern=rf"^[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}$",
        required=False,
        description="Makes the request safe to retry: the same key and body get the first "
        "answer again, with `Idempotent-Replayed: true`; another body under it is a 422.",
    ),
]
REPLAYED = ResponseHeader(
    name="Idempotent-Replayed",
    documentation_only=True,
    description="`true` when this is the stored answer to an earlier request with the key.",
)
LOCATION = ResponseHeader(
    name="Location", documentation_only=True, description="The notification's URL."
)
Recipient = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=4096,
        description="An email address, an E.164 number (+14155550100) or a device token, "
        "as the channel needs.",
    ),
]
Subject = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_SUBJECT_CHARS, pattern=r"^[^\r\n]*$", description="No line breaks."
    ),
]
Body = Annotated[
    str, msgspec.Meta(min_length=1, description=f"At most {MAX_BODY_BYTES} bytes in UTF-8.")
]
TemplateId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")]
Fallback = Annotated[list[Channel], msgspec.Meta(max_length=MAX_FALLBACK_CHANNELS)]
Metadata = Annotated[dict[str, str], msgspec.Meta(max_length=MAX_METADATA_KEYS)]


# The rules across a notification's fields that domain.notifications checks, as schemas the
# body must match each of.
_STRING, _NULL = Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.NULL)
ADDRESSES = {
    Channel.EMAIL: Schema(
        type=OpenAPIType.STRING, pattern=rf"^{AROUND}{EMAIL_PATTERN}{AROUND}$", max_length=254
    ),
    Channel.SMS: Schema(type=OpenAPIType.STRING, pattern=rf"^{E164_PATTERN}$"),
    Channel.PUSH: Schema(type=OpenAPIType.STRING, pattern=rf"^{DEVICE_TOKEN_PATTERN}$"),
}


def _lists(channel: Channel) -> Schema:
    return Schema(contains=Schema(const=channel.value))


def _fallback_needs_an_address(channel: Channel) -> Schema:
    """A fallback channel has its address in fallback_recipients, and only a fallback one."""
    return Schema(
        any_of=[
            Schema(
                required=["fallback", "fallback_recipients"],
                properties={
                    "fallback": _lists(channel),
                    "fallback_recipients": Schema(required=[channel.value]),
                },
            ),
            Schema(
                properties={
                    "fallback": Schema(schema_not=_lists(channel)),
                    "fallback_recipients": Schema(schema_not=Schema(required=[channel.value])),
                }
            ),
        ]
    )


RULES = [
    # The recipient is an address of the channel; the fallback never names the channel.
    Schema(
        one_of=[
            Schema(
                properties={
                    "channel": Schema(const=channel.value),
                    "recipient": ADDRESSES[channel],
                    "fallback": Schema(items=Schema(schema_not=Schema(const=channel.value))),
                }
            )
            for channel in Channel
        ]
    ),
    # A body or a template, not both.
    Schema(
        one_of=[
            Schema(required=[given], properties={given: _STRING, other: _NULL})
            for given, other in (("body", "template_id"), ("template_id", "body"))
        ]
    ),
    # A body that may go out by email (first or as a fallback) needs a subject.
    Schema(
        any_of=[
            Schema(properties={"body": _NULL}),
            Schema(
                required=["subject"],
                properties={"subject": Schema(type=OpenAPIType.STRING, min_length=1)},
            ),
            Schema(
                properties={
                    "channel": Schema(schema_not=Schema(const=Channel.EMAIL.value)),
                    "fallback": Schema(schema_not=_lists(Channel.EMAIL)),
                }
            ),
        ]
    ),
    Schema(
        properties={
            "fallback": Schema(unique_items=True),
            "fallback_recipients": Schema(
                properties={channel.value: address for channel, address in ADDRESSES.items()},
                additional_properties=False,
            ),
        }
    ),
    *(_fallback_needs_an_address(channel) for channel in Channel),
]


class NotificationRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`body` or `template_id`, not both; an email with a body needs a `subject`."""

    channel: Channel
    recipient: Recipient
    subject: Subject | None = None
    body: Body | None = None
    template_id: TemplateId | None = None
    variables: dict[str, str] = msgspec.field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    send_at: datetime | None = None
    # Other channels, tried in order when the first fails; never the primary one, none twice.
    fallback: Fallback = msgspec.field(default_factory=list)
    # The address on each fallback channel, e.g. {"sms": "+14155550100"}.
    fallback_recipients: dict[Channel, str] = msgspec.field(default_factory=dict)
    metadata: Metadata = msgspec.field(default_factory=dict)

    # Read by infrastructure/web/struct_schemas.py: the rules across fields.
    OPENAPI_RULES: ClassVar[list[Schema]] = RULES


class BatchRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    notifications: list[NotificationRequest]


class CancelRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: str | None = None


class AcceptedView(msgspec.Struct, frozen=True):
    id: UUID
    status: str
    position: int


class BatchAcceptedView(msgspec.Struct, frozen=True):
    accepted: int
    ids: list[UUID]
    first_position: int
    last_position: int


# The batch's body, which the handler decodes itself to report every bad item at once.
BATCH_BODY = Schema(
    type=OpenAPIType.OBJECT,
    required=["notifications"],
    properties={
        "notifications": Schema(
            type=OpenAPIType.ARRAY,
            min_items=1,
            max_items=MAX_BATCH,
            items=Reference(ref="#/components/schemas/NotificationRequest"),
        )
    },
    additional_properties=False,
)
