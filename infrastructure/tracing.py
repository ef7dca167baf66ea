"""Traces, exported over OTLP/HTTP when HERALD_OTLP_ENDPOINT is set (off otherwise).

Each process sets up one tracer provider, named for its role (`herald-api`, ...). Traces
start at the api's requests: HERALD_TRACE_SAMPLE_RATIO of them, chosen before any span is
made (a request not chosen runs with instrumentation suppressed, and costs next to nothing),
or as the caller's `traceparent` says. Every role follows the decision of a trace it
continues (from event metadata or a Kafka header) and starts none of its own; where a trace
was not sampled, no span is made for it downstream.

psycopg's, redis's, requests' and urllib's own instrumentations add a span per query, command
and HTTP call (redis records a command's name, never its arguments, which may hold cached
personal data); the api adds its HTTP spans with litestar's OpenTelemetry plugin
(`web/tracing_plugin.py`); the helpers below make the rest by hand. Spans carry no personal
data: see docs/observability.md.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import (
    is_instrumentation_enabled,
    suppress_instrumentation,
)
from opentelemetry.trace import (
    Link,
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util.types import Attributes
from structlog.typing import EventDict

from infrastructure.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler

_configured: TracerProvider | None = None
# Herald's hand-written spans. A proxy until `configure_tracing` sets the provider, then that
# provider's tracer, looked up once: asking the provider for it costs more than a span.
_TRACER = trace.get_tracer("herald")


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
    from opentelemetry.instrumentation.requests import RequestsInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.urllib import URLLibInstrumentor  # noqa: PLC0415
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased  # noqa: PLC0415

    # Traces start at the api's requests, chosen there (`chosen_for_tracing`); the other
    # roles continue those. Queries outside any request, and every span of a role's own
    # polling loops, would otherwise each start a trace of their own.
    starts = _traces_start_at_requests() if role == "api" else ALWAYS_OFF
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"herald-{role}", "service.namespace": "herald"}),
        sampler=ParentBased(starts),
    )
    endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    if role in QUERIES_IN_SPANS:
        PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
        RedisInstrumentor().instrument(tracer_provider=provider)
    if role == "dispatcher":
        # The HTTP libraries the providers' SDKs call through: SendGrid's client uses
        # urllib, Twilio's and Firebase's use requests.
        RequestsInstrumentor().instrument(tracer_provider=provider)
        URLLibInstrumentor().instrument(tracer_provider=provider)
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


# The roles whose queries run inside spans (a request's, an attempt's). The relay's and the
# projector's run in polling loops that no span covers: instrumenting them would only cost.
QUERIES_IN_SPANS = frozenset({"api", "dispatcher"})


def _traces_start_at_requests() -> Sampler:
    """For spans without a parent: a request's server span is sampled (`chosen_for_tracing`
    chose its request before any span was made), and any other span dropped."""
    from opentelemetry.sdk.trace.sampling import (  # noqa: PLC0415
        Decision,
        Sampler,
        SamplingResult,
    )

    class TracesStartAtRequests(Sampler):
        def should_sample(  # noqa: PLR0917 - the Sampler interface
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: TraceState | None = None,
        ) -> SamplingResult:
            if kind is SpanKind.SERVER:
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
            return SamplingResult(Decision.DROP, None, trace_state)

        def get_description(self) -> str:
            return "TracesStartAtRequests"

    return TracesStartAtRequests()


def tracing() -> bool:
    """Whether this process exports spans here: not when tracing is off, nor inside a request
    not chosen for tracing. Hand-written spans are skipped when it does not."""
    return _configured is not None and is_instrumentation_enabled()


def in_recorded_span() -> bool:
    """Whether work done here would be recorded: inside a sampled span of a traced process.
    A child span is worth making only then."""
    return _configured is not None and trace.get_current_span().is_recording()


def chosen_for_tracing(traceparent: bytes | None, ratio: float, rng: random.Random) -> bool:
    """Whether to trace a request: as its caller's trace says when it names one, else
    `ratio` of them. Decided before any span is made, so the others cost nothing."""
    if traceparent is not None:
        context = remote_context(traceparent.decode("latin-1"))
        return context is not None and context.trace_flags.sampled
    return rng.random() < ratio


@contextmanager
def untraced() -> Iterator[None]:
    """No spans within: no instrumentation's, no hand-written one."""
    with suppress_instrumentation():
        yield


def untraced_context() -> Context:
    """The context `untraced` makes, taken once. Attached whole where no other is current
    yet (a request's entry), it does `untraced`'s work at a fraction of its cost."""
    with suppress_instrumentation():
        return otel_context.get_current()


def traceparent_of(context: SpanContext) -> str | None:
    """The W3C `traceparent` of a span context; None for an invalid one."""
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, to store with the events it records."""
    return traceparent_of(trace.get_current_span().get_span_context())


def remote_context(traceparent: str | None) -> SpanContext | None:
    """The span context a W3C `traceparent` names; None when absent or malformed."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or parts[0] != "00":  # noqa: PLR2004 - version, trace, span, flags
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return context if context.is_valid else None


def sampled_parent(traceparent: str | None) -> SpanContext | None:
    """The span context a `traceparent` names when its trace is sampled: a trace that is not
    gets no span downstream (it would record nothing), and its header travels unchanged."""
    context = remote_context(traceparent)
    return context if context is not None and context.trace_flags.sampled else None


def start_span(
    name: str,
    *,
    parent: str | SpanContext | None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
    links: Iterable[SpanContext] = (),
) -> Span:
    """A span continuing the trace `parent` names (a `traceparent` or a span context), or
    the current span's when there is none (a new trace outside any); the caller ends it.
    Attributes never hold personal data: ids, counts and names of things."""
    context = remote_context(parent) if isinstance(parent, str) or parent is None else parent
    within = trace.set_span_in_context(trace.NonRecordingSpan(context)) if context else None
    return _TRACER.start_span(
        name,
        context=within,
        kind=kind,
        attributes=dict(attributes or {}),
        links=[Link(link) for link in links if link.is_valid],
    )


def shared_span(
    name: str, waits: Sequence[Span], attributes: Mapping[str, str | int]
) -> AbstractContextManager[Span]:
    """The current span, while it lasts, of work done at once for many callers (a group
    commit): in the trace of the first caller's `wait` span, linked to the others, and each
    `wait` linked back to it, so every caller's trace leads to it."""
    contexts = [wait.get_span_context() for wait in waits]
    span = start_span(
        name, parent=contexts[0] if contexts else None, attributes=attributes, links=contexts[1:]
    )
    for wait in waits:
        wait.add_link(span.get_span_context())
    return impersonal_span(span)


@contextmanager
def ending(spans: Sequence[Span]) -> Iterator[None]:
    """End `spans` when the block ends; a failure marks each with its exception's type only
    (messages may quote an address)."""
    try:
        yield
    except BaseException as exc:
        for span in spans:
            span.set_status(StatusCode.ERROR, type(exc).__name__)
        raise
    finally:
        for span in spans:
            span.end()


@contextmanager
def impersonal_span(span: Span) -> Iterator[Span]:
    """`span` as the current span until the block ends, then ended. A failure marks it with
    its exception's type only: messages may quote an address (a provider's error, say)."""
    with trace.use_span(
        span, end_on_exit=True, record_exception=False, set_status_on_exception=False
    ):
        try:
            yield span
        except BaseException as exc:
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
