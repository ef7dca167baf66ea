"""The W3C `traceparent` that events and Kafka headers carry: written from a span context,
read back to the same one, and anything malformed read as no parent at all."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.trace import SpanContext, TraceFlags

from infrastructure.tracing import remote_context, traceparent_of


@given(
    trace_id=st.integers(1, 2**128 - 1),
    span_id=st.integers(1, 2**64 - 1),
    sampled=st.booleans(),
)
def test_a_traceparent_reads_back_as_the_span_context_it_was_written_from(
    trace_id: int, span_id: int, sampled: bool
) -> None:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    written = traceparent_of(SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags))
    assert written is not None
    assert len(written) == 55  # 2 + 32 + 16 + 2 hex digits and three dashes
    read = remote_context(written)
    assert read is not None
    assert (read.trace_id, read.span_id, read.trace_flags.sampled) == (trace_id, span_id, sampled)
    assert read.is_remote


@pytest.mark.parametrize(
    "malformed",
    [
        None,
        "",
        "garbage",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # unknown version
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # no trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # no span id
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333z-01",  # not hex
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
    ],
)
def test_a_malformed_traceparent_is_no_parent(malformed: str | None) -> None:
    assert remote_context(malformed) is None


def test_an_invalid_span_context_has_no_traceparent() -> None:
    assert traceparent_of(SpanContext(0, 0, is_remote=False)) is None
