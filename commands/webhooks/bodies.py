"""The request bodies of the provider webhooks, as the OpenAPI document shows them.

The handlers read these bodies as bytes (the signature covers the bytes), so litestar cannot
infer them: each is written here, naming the fields Herald reads. Providers send more fields
than these, and Herald accepts and ignores the rest.
"""

from __future__ import annotations

from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, RequestBody, Schema

_TEXT = Schema(type=OpenAPIType.STRING)

SENDGRID_EVENT = Schema(
    type=OpenAPIType.OBJECT,
    description="One SendGrid event. Herald's custom args come back as top-level keys. An "
    "event other than delivered, open, bounce or dropped (processed, deferred, ...) is ignored; "
    "a malformed one is skipped (and logged).",
    required=["event"],
    properties={
        "event": Schema(type=OpenAPIType.STRING, examples=["delivered"]),
        "sg_event_id": _TEXT,
        "sg_message_id": _TEXT,
        "reason": _TEXT,
        "herald_notification_id": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID),
        "herald_attempt": Schema(one_of=[Schema(type=OpenAPIType.INTEGER), _TEXT]),
        "herald_tenant": _TEXT,
    },
)
SENDGRID_BODY = RequestBody(
    required=True,
    content={
        "application/json": OpenAPIMediaType(
            schema=Schema(type=OpenAPIType.ARRAY, items=SENDGRID_EVENT)
        )
    },
)
TWILIO_BODY = RequestBody(
    required=True,
    description="Twilio's status callback form. The notification and the attempt are in "
    "the query of the callback URL Herald gave Twilio.",
    content={
        "application/x-www-form-urlencoded": OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                properties={
                    "MessageSid": _TEXT,
                    "MessageStatus": Schema(
                        type=OpenAPIType.STRING,
                        description="delivered, undelivered and failed are recorded; "
                        "other statuses are ignored.",
                    ),
                    "ErrorCode": _TEXT,
                },
            )
        )
    },
)
