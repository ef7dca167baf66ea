"""The api app plus the two baselines of `perf command`, behind the same guard and body:
a no-op POST, and the eventsourcing library's stock path (one Application.save per request)."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from litestar import post
from litestar.params import JSONBody
from litestar.types import ASGIApp
from psycopg.conninfo import conninfo_to_dict

from commands.notifications.http import SENDERS, NotificationRequest
from infrastructure.entrypoints.app import asgi_app
from infrastructure.log import configure_logging
from infrastructure.settings import Settings, load_settings


class StockNotification(Aggregate):
    @event("Requested")
    def __init__(self, channel: str, recipient: str, subject: str | None, body: str | None) -> None:
        self.channel = channel
        self.recipient = recipient
        self.subject = subject
        self.body = body


class StockNotifications(Application[Any]):
    name = "stocknotifications"


def stock_application(settings: Settings, *, create_table: bool) -> StockNotifications:
    """The library's Application on the same database; its tables are made once, up front."""
    if settings.database_url is None:
        raise ValueError("the stock baseline needs HERALD_DATABASE_URL")
    params = conninfo_to_dict(settings.database_url.reveal())
    return StockNotifications(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(params.get("dbname", "postgres")),
            "POSTGRES_HOST": str(params.get("host", "127.0.0.1")),
            "POSTGRES_PORT": str(params.get("port", 5432)),
            "POSTGRES_USER": str(params.get("user", "postgres")),
            "POSTGRES_PASSWORD": str(params.get("password", "")),
            "POSTGRES_POOL_SIZE": "8",
            "POSTGRES_MAX_OVERFLOW": "8",
            "CREATE_TABLE": "yes" if create_table else "no",
        }
    )


ACCEPTED = {"status": "accepted"}


@post("/bench/noop", policy=SENDERS, status_code=202, sync_to_thread=False, include_in_schema=False)
def noop(data: JSONBody[NotificationRequest]) -> dict[str, str]:
    return ACCEPTED


def from_environment() -> ASGIApp:
    settings = load_settings()
    configure_logging(settings)
    stock = stock_application(settings, create_table=False)

    @post(
        "/bench/stock",
        policy=SENDERS,
        status_code=202,
        sync_to_thread=True,
        include_in_schema=False,
    )
    def stock_save(data: JSONBody[NotificationRequest]) -> dict[str, str]:
        aggregate = StockNotification(data.channel.value, data.recipient, data.subject, data.body)
        stock.save(aggregate)
        return {"id": str(aggregate.id)}

    return asgi_app(settings, extra_handlers=[noop, stock_save])
