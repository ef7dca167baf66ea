"""A real `herald serve api` process, called over HTTP as a client would."""

from __future__ import annotations

import httpx


def test_health_is_200_with_every_dependency_up(api_url: str) -> None:
    response = httpx.get(f"{api_url}/health")
    assert response.status_code == 200
    assert {name: c["status"] for name, c in response.json()["checks"].items()} == {
        "postgres": "up",
        "redis": "up",
        "kafka": "up",
    }


def test_liveness_and_readiness_answer(api_url: str) -> None:
    assert httpx.get(f"{api_url}/health/liveness").status_code == 200
    assert httpx.get(f"{api_url}/health/readiness").status_code == 200


def test_a_request_id_is_echoed_back(api_url: str) -> None:
    response = httpx.get(f"{api_url}/health/liveness", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


def test_a_request_id_is_generated_when_missing_or_unsafe(api_url: str) -> None:
    generated = httpx.get(f"{api_url}/health/liveness").headers["x-request-id"]
    unsafe = httpx.get(
        f"{api_url}/health/liveness", headers={"X-Request-ID": "bad id\twith spaces"}
    ).headers["x-request-id"]
    assert len(generated) == 32
    assert unsafe != "bad id\twith spaces"
    assert len(unsafe) == 32


def test_an_unknown_path_is_a_404_problem(api_url: str) -> None:
    response = httpx.get(f"{api_url}/no/such/thing", headers={"X-Request-ID": "r-404"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "title": "Not Found",
        "status": 404,
        "instance": "/no/such/thing",
        "request_id": "r-404",
    }


def test_a_wrong_method_is_a_405_problem(api_url: str) -> None:
    response = httpx.delete(f"{api_url}/health")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 405
    assert "GET" in response.headers["allow"]


def test_openapi_and_its_docs_page_are_served(api_url: str) -> None:
    schema = httpx.get(f"{api_url}/docs/openapi.json").json()
    assert schema["info"]["title"] == "Herald"
    assert "/health" in schema["paths"]
    page = httpx.get(f"{api_url}/docs")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
