"""Recording a provider's report on the notification it names, at most once."""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool

from commands.notifications.handlers import decide_and_append
from commands.notifications.messages import Accepted
from commands.webhooks.provider_reports import Report, decide
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.writer import GroupCommitWriter
from infrastructure.messagebus import Command, Handlers


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
    return await decide_and_append(
        cmd.report.notification_id,
        lambda n: decide(n, cmd.report, at=datetime.now(UTC)),
        tenant_id=None,  # the notification's own tenant; a report's claim is not trusted
        writer=writer,
        pool=pool,
        codec=codec,
    )


HANDLERS: Handlers = {RecordProviderReport: record_provider_report}
