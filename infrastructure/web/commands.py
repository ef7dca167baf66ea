"""The `commands` dependency: how a route turns a request into a use-case call.

A route builds a command from the request and `commands.caller` (the authenticated
principal, for routes whose policy requires one) and awaits `commands.handle(command)`,
which the message bus passes to the command's handler.

One dependency rather than two (`caller` and `bus`) on purpose: litestar resolves several
dependencies of one handler in a task group, which costs more than the rest of a small
request does.
"""

from __future__ import annotations

from typing import Any, TypeVar

from litestar import Request

from infrastructure.auth.guard import current_principal
from infrastructure.auth.principal import Principal
from infrastructure.messagebus import Command, MessageBus

T = TypeVar("T")
BUS = "bus"  # where the app's state keeps the message bus


class Commands:
    __slots__ = ("_bus", "_request")

    def __init__(self, bus: MessageBus, request: Request[Any, Any, Any]) -> None:
        self._bus = bus
        self._request = request

    @property
    def caller(self) -> Principal:
        """Who is calling; 401 on a route whose policy lets anyone in."""
        return current_principal(self._request)

    async def handle(self, command: Command[T]) -> T:
        return await self._bus.handle(command)


def provide_commands(request: Request[Any, Any, Any]) -> Commands:
    bus: MessageBus = request.app.state[BUS]
    return Commands(bus, request)
