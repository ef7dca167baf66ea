"""What a role other than the api answers on HERALD_METRICS_PORT, for Prometheus and for an
orchestrator's probes:

- `/metrics`: the process's metrics in Prometheus text format;
- `/health/liveness`: 200 while the process runs;
- `/health/readiness`: 200 when its dependencies answer and it keeps up, else 503, with the
  checks as JSON.

prometheus-client's WSGI app serves /metrics; its threading WSGI server runs the whole in a
daemon thread, so a slow scrape never holds the role's own work.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from infrastructure.log import get_logger

log = get_logger(__name__)

Readiness = Callable[[], dict[str, Any]]  # its checks; "ready": bool among them

_JSON = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes come every few seconds: not a line each."""


class RoleListener:
    def __init__(
        self,
        role: str,
        host: str,
        port: int,
        readiness: Readiness,
        *,
        before_scrape: Callable[[], None] | None = None,
    ) -> None:
        self._role = role
        self._readiness = readiness
        self._before_scrape = before_scrape
        self._metrics = make_wsgi_app(REGISTRY)
        self._server = make_server(
            host, port, self._app, server_class=ThreadingWSGIServer, handler_class=_Quiet
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{role}-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def start(self) -> None:
        self._thread.start()
        log.info("metrics and health listening", role=self._role, port=self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            if self._before_scrape is not None:
                self._before_scrape()
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/health/liveness":
            return _answer(start_response, "200 OK", {"status": "ok", "role": self._role})
        if path == "/health/readiness":
            try:
                checks = self._readiness()
            except Exception as exc:  # a probe answers; it never takes the role down
                checks = {"ready": False, "error": str(exc)}
            ready = bool(checks.get("ready"))
            status = "200 OK" if ready else "503 Service Unavailable"
            return _answer(start_response, status, {"role": self._role, **checks})
        return _answer(start_response, "404 Not Found", {"error": f"no such path: {path}"})


def _answer(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
    start_response(status, list(_JSON))  # a copy: the server adds Content-Length to it
    return [json.dumps(body, default=str).encode()]
