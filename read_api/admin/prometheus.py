"""GET /metrics: the API's Prometheus metrics, for a scraper holding an operator's credentials.

Before answering, the job gauges are set from `job_runs`: the jobs run in scheduler
processes, and this is where their outcome becomes a metric.
"""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency

from domain.identity.roles import Role
from infrastructure.auth.guard import allow
from infrastructure.metrics import exposition
from read_api.admin.jobs import refresh_job_gauges
from read_api.viewing import Viewer


@get(
    "/metrics",
    policy=allow(Role.ADMIN, Role.OPERATOR),
    tags=["admin"],
    content_types=("text/plain",),
    operation_id="getPrometheusMetrics",
    summary="Prometheus text exposition of the API's metrics, all workers together.",
)
async def prometheus_metrics(viewer: NamedDependency[Viewer]) -> Response[bytes]:
    await refresh_job_gauges(viewer.models.db)
    body, content_type = exposition()
    # As a header, not a media type: litestar would add a second charset to a text/* one.
    return Response(body, headers={"Content-Type": content_type})


ROUTES = [prometheus_metrics]
