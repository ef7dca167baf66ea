"""Traces, exported over OTLP/HTTP when HERALD_OTLP_ENDPOINT is set (off otherwise).

Each process sets up one tracer provider, named for its role (`herald-api`, ...), sampling
HERALD_TRACE_SAMPLE_RATIO of the traces that start in it and following the decision of any
trace it continues. psycopg's and redis's own instrumentations add a span per query and
command (redis records a command's name, never its arguments, which may hold cached
personal data); the api adds its HTTP spans with litestar's OpenTelemetry plugin
(`web/tracing_plugin.py`). Spans carry no personal data: see docs/observability.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from structlog.typing import EventDict

from infrastructure.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

_configured: TracerProvider | None = None


def configure_tracing(settings: Settings, role: str) -> TracerProvider | None:
    """The process's tracer provider, exporting to HERALD_OTLP_ENDPOINT; None when unset.
    Call once per process, after any fork (the exporter runs a thread)."""
    global _configured  # noqa: PLW0603 - one provider per process, as OpenTelemetry's is
    if settings.otlp_endpoint is None:
        return None
    if _configured is not None:
        return _configured
    # Here, not at the top: every process imports this module, few trace.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: PLC0415
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: PLC0415

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"herald-{role}", "service.namespace": "herald"}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    RedisInstrumentor().instrument(tracer_provider=provider)
    _configured = provider
    return provider


def shutdown_tracing() -> None:
    """Send what is still buffered; for a process about to exit."""
    if _configured is not None:
        _configured.shutdown()


def add_trace_ids(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """A structlog processor: a line logged inside a span names its trace and span."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event
