"""Recording a provider's report on the notification it names, at most once."""

from __future__ import annotations

from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.trace import Span
from psycopg_pool import AsyncConnectionPool

from commands.notifications.handlers import decide_and_append
from commands.notifications.messages import Accepted
from commands.webhooks.provider_reports import Report, decide
from domain.notifications.events import NotificationEvent
from domain.notifications.notification import Notification
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.writer import GroupCommitWriter
from infrastructure.messagebus import Command, Handlers
from infrastructure.tracing import ending, sampled_parent, start_span, tracing


class RecordProviderReport(Command[Accepted], frozen=True, kw_only=True):
    report: Report


async def record_provider_report(
    cmd: RecordProviderReport,
    *,
    writer: GroupCommitWriter,
    pool: AsyncConnectionPool,
    codec: EventCodec,
) -> Accepted:
    """Nothing is recorded (position 0) for a stale or known report. Raises NotFoundError
    for an unknown notification, NotSentYetError when the report overtook its Sent event."""
    spans: list[Span] = []

    def decided(n: Notification) -> list[NotificationEvent]:
        if tracing() and not spans and sampled_parent(n.traceparent) is not None:
            spans.append(_report_span(n, cmd.report))
        events = decide(n, cmd.report, at=datetime.now(UTC))
        for span in spans:  # a report known already records nothing
            span.set_attribute("herald.events", len(events))
        return events

    # Failed when the report overtook its Sent event, or names no notification.
    with ending(spans):
        return await decide_and_append(
            cmd.report.notification_id,
            decided,
            tenant_id=None,  # the notification's own tenant; a report's claim is not trusted
            writer=writer,
            pool=pool,
            codec=codec,
        )


def _report_span(n: Notification, report: Report) -> Span:
    """Recording the report, in the trace of the request that asked for the notification
    (the provider's request starts a trace of its own, linked here)."""
    return start_span(
        "webhook.record_report",
        parent=n.traceparent,
        attributes={
            "herald.tenant": n.tenant_id,
            "herald.notification_id": str(n.id),
            "herald.channel": report.channel.value,
            "herald.attempt": report.attempt,
            "herald.outcome": report.outcome.value,
        },
        links=[trace.get_current_span().get_span_context()],
    )


HANDLERS: Handlers = {RecordProviderReport: record_provider_report}
