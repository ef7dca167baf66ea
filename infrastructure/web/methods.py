"""The `Allow` header of litestar's automatic OPTIONS answers, from the routes as registered.

When two controllers serve one path (a command and a query side by side), litestar keeps the
OPTIONS answer of the first, which lists only that controller's methods; this hook answers
with every method the path serves, as its 405 answers already do.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import MutableScopeHeaders
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope


async def correct_allow(message: Message, scope: Scope) -> None:
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    headers = MutableScopeHeaders.from_message(message)
    app = scope.get("app")
    if "allow" not in headers or not isinstance(app, Litestar):
        return
    template = scope.get("path_template")
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path_format == template:
            headers["Allow"] = ", ".join(sorted(route.methods))
            return
