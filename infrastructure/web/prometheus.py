"""GET /metrics: the API's Prometheus metrics, for a scraper holding an operator's credentials."""

from __future__ import annotations

from litestar import Response, get

from domain.identity.roles import Role
from infrastructure.auth.guard import allow
from infrastructure.metrics import exposition


@get(
    "/metrics",
    policy=allow(Role.ADMIN, Role.OPERATOR),
    tags=["admin"],
    operation_id="getPrometheusMetrics",
    summary="Prometheus text exposition of the API's metrics, all workers together.",
    sync_to_thread=False,
)
def prometheus_metrics() -> Response[bytes]:
    body, content_type = exposition()
    return Response(body, media_type=content_type)
