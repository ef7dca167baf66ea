"""The HTTP app in-process against real servers: problem details, request ids, health."""

from __future__ import annotations

import msgspec
from litestar import get, post
from litestar.params import JSONBody
from litestar.testing import TestClient

from infrastructure.auth.guard import PUBLIC
from infrastructure.devstack.servers import free_port
from infrastructure.entrypoints.app import asgi_app
from infrastructure.settings import Settings
from tests.conftest import with_redis


class Greeting(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    times: int


@get("/boom", sync_to_thread=False, policy=PUBLIC)
def boom() -> None:
    raise RuntimeError("secret internals: password=hunter2")


@post("/greet", sync_to_thread=False, policy=PUBLIC)
def greet(data: JSONBody[Greeting]) -> dict[str, str]:
    return {"hello": data.name}


def _client(settings: Settings) -> TestClient:  # type: ignore[type-arg]
    app = asgi_app(settings, extra_handlers=[boom, greet])
    return TestClient(app=app, raise_server_exceptions=False)


def test_an_unexpected_error_is_a_500_problem_without_internals(stack: Settings) -> None:
    with _client(stack) as client:
        response = client.get("/boom", headers={"X-Request-ID": "trace-me-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 500
    assert body["request_id"] == "trace-me-1"
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text


def test_invalid_input_is_a_422_problem_naming_the_field(stack: Settings) -> None:
    with _client(stack) as client:
        response = client.post("/greet", json={"name": "ada", "times": "often"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert any("times" in error["name"] + error["reason"] for error in errors)


def test_unknown_fields_are_a_422_problem(stack: Settings) -> None:
    with _client(stack) as client:
        response = client.post("/greet", json={"name": "ada", "times": 1, "extra": True})
    assert response.status_code == 422
    assert "extra" in response.text


def test_health_is_503_and_names_redis_when_redis_is_down_but_the_api_stays_ready(
    stack: Settings,
) -> None:
    dead_redis = with_redis(stack, f"redis://127.0.0.1:{free_port()}/0")
    with _client(dead_redis) as client:
        response = client.get("/health")
        readiness = client.get("/health/readiness")
        liveness = client.get("/health/liveness")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["redis"]
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["postgres"]["status"] == "up"
    assert "redis" in body["detail"]
    # Without Redis the api degrades (reads from PostgreSQL) but still serves.
    assert readiness.status_code == 200
    assert readiness.json()["failing"] == ["redis"]
    assert liveness.status_code == 200


def test_health_reports_each_dependency_with_its_latency(stack: Settings) -> None:
    with _client(stack) as client:
        body = client.get("/health").json()
    assert body["status"] == "pass"
    assert set(body["checks"]) == {"postgres", "redis", "kafka"}
    for check in body["checks"].values():
        assert check["status"] == "up"
        assert 0 <= check["latency_ms"] < 5000
