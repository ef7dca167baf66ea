"""One way to run a use case: a command goes to the handler registered for its type, called
with the collaborators it names.

Handlers are plain functions taking the command first and their collaborators by keyword
(`def grant_role(cmd: GrantRole, *, store: EventStore) -> User`). The bus is built once, in
the composition root, from each area's handler table and the process's collaborators; a
handler naming a collaborator the process lacks fails there, at start, not on a request.
Synchronous handlers (the event store's recorder is synchronous) run in a worker thread.
While a handler runs, the command's name and a fresh command id are bound to the metadata
its events are stored with.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, cast

import msgspec

from infrastructure.eventstore import meta

R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")


class Command(msgspec.Struct, Generic[R_co], frozen=True, kw_only=True):
    """What a caller asks for, in the imperative; `R_co` is what its handler returns."""


Handler = Callable[..., Any]
Handlers = Mapping[type[Command[Any]], Handler]


class MissingCollaboratorError(Exception):
    """A handler names a collaborator the bus was not given."""


class MessageBus:
    def __init__(self, handlers: Handlers, **collaborators: Any) -> None:
        self._handlers = {kind: _bind(handler, collaborators) for kind, handler in handlers.items()}

    async def handle(self, command: Command[T]) -> T:
        """Run the command's use case and return what it returns; its errors propagate."""
        handler, is_async = self._handlers[type(command)]
        # Every event the handler records is stored with the command's name and one id.
        with meta.command(type(command).__name__):
            if is_async:
                return cast(T, await handler(command))
            return cast(T, await asyncio.to_thread(handler, command))


def _bind(handler: Handler, collaborators: Mapping[str, Any]) -> tuple[Handler, bool]:
    keywords = [
        parameter
        for parameter in inspect.signature(handler).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    # A keyword with a default is optional: given when the bus has it, else left alone.
    wanted = [p.name for p in keywords if p.name in collaborators]
    missing = [p.name for p in keywords if p.default is p.empty and p.name not in collaborators]
    if missing:
        raise MissingCollaboratorError(
            f"{handler.__qualname__} needs {', '.join(missing)}, which the bus was not given"
        )
    bound = functools.partial(handler, **{name: collaborators[name] for name in wanted})
    return bound, inspect.iscoroutinefunction(handler)
