"""A local OTLP/HTTP trace receiver, for the suite and the benchmarks: it answers each export
at once, as a collector would, and keeps the request bodies, decoded only when asked, so that
receiving costs the traced processes no more than a collector elsewhere would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_ANSWER = ExportTraceServiceResponse().SerializeToString()


@dataclass
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a span that starts its trace
    kind: int  # OTLP's enum: 1 internal, 2 server, 3 client, 4 producer, 5 consumer
    attributes: dict[str, Any] = field(default_factory=dict)
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace id, span id)


class Receiver(ThreadingHTTPServer):
    bodies: list[bytes]

    @property
    def endpoint(self) -> str:
        """What to set HERALD_OTLP_ENDPOINT to."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def spans(self) -> list[Span]:
        """Every span received so far, decoded now."""
        return [span for body in list(self.bodies) for span in _decoded(body)]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        self.server.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(_ANSWER)))
        self.end_headers()
        self.wfile.write(_ANSWER)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def _decoded(body: bytes) -> Iterator[Span]:
    request = ExportTraceServiceRequest.FromString(body)
    for resource in request.resource_spans:
        names = [a for a in resource.resource.attributes if a.key == "service.name"]
        service = names[0].value.string_value if names else ""
        for scope in resource.scope_spans:
            for span in scope.spans:
                yield Span(
                    service,
                    span.name,
                    span.trace_id.hex(),
                    span.span_id.hex(),
                    span.parent_span_id.hex(),
                    span.kind,
                    {a.key: _value(a.value) for a in span.attributes},
                    [(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                )


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A receiver listening on a free local port until the block ends."""
    server = Receiver(("127.0.0.1", 0), _Handler)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
