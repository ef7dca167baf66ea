"""With HERALD_OTLP_ENDPOINT set, the api exports its spans over OTLP/HTTP to a receiver
(`infrastructure/devstack/otlp_receiver.py`, decoding the protocol's protobuf): a server span
per request named by its route, the database queries it made as its children, and nothing
that names a person: no address from a path or query string, no client address or user
agent."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import msgspec
import pytest

from domain.identity.roles import Role
from infrastructure.devstack.dev import role_spec
from infrastructure.devstack.otlp_receiver import Receiver, Span, receiving
from infrastructure.devstack.servers import free_port
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.settings import Settings
from tests.e2e.conftest import AccountFactory
from tests.kafka_helpers import eventually

ADDRESS = "traced.person@example.com"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with receiving() as server:
        yield server


@pytest.fixture(scope="module")
def traced_api(api_settings: Settings, receiver: Receiver) -> Iterator[str]:
    """A second api process against the same stack, exporting every trace to the receiver."""
    port = free_port()
    settings = msgspec.structs.replace(
        api_settings,
        http_port=port,
        otlp_endpoint=receiver.endpoint,
        trace_sample_ratio=1.0,
    )
    with Supervisor() as supervisor:
        supervisor.start(role_spec("api", settings), ready_timeout=30)
        yield f"http://127.0.0.1:{port}"


def test_the_api_exports_a_span_per_request_with_its_queries_and_no_personal_data(
    traced_api: str, receiver: Receiver, account: AccountFactory
) -> None:
    sender = account(Role.SENDER)
    headers = {**sender.headers, "User-Agent": "traced-client/1.0"}
    erasure = httpx.delete(f"{traced_api}/data-pipeline/anonymize/{ADDRESS}", headers=headers)
    assert erasure.status_code == 403  # a sender may not; the span is made all the same
    sent = httpx.post(
        f"{traced_api}/notifications",
        json={"channel": "email", "recipient": ADDRESS, "subject": "Hi", "body": "Hello"},
        headers=headers,
    )
    assert sent.status_code == 202, sent.text
    listed = httpx.get(
        f"{traced_api}/notifications", params={"recipient": ADDRESS}, headers=headers
    )
    assert listed.status_code == 200, listed.text

    def server_span(method: str) -> Span | None:
        return next(
            (
                s
                for s in receiver.spans
                if s.attributes.get("http.route") == "/notifications"
                and s.attributes.get("http.method", s.attributes.get("http.request.method"))
                == method
            ),
            None,
        )

    eventually(lambda: server_span("GET") is not None, 30, "the api's spans to arrive")
    post, get = server_span("POST"), server_span("GET")
    assert post is not None
    assert get is not None
    assert {s.service for s in receiver.spans} == {"herald-api"}
    assert post.name == "POST /notifications"
    assert any(s.name == "DELETE /data-pipeline/anonymize/{subject}" for s in receiver.spans)
    assert post.parent_id == ""  # the request starts the trace
    # The list query ran inside the GET's span: a child in its trace.
    queries = [s for s in receiver.spans if s.trace_id == get.trace_id and s.span_id != get.span_id]
    assert any(s.attributes.get("db.system") == "postgresql" for s in queries), queries
    # Nothing names the person: not the address in the query string, not the client.
    for span in receiver.spans:
        assert ADDRESS not in span.name
        for name, value in span.attributes.items():
            assert ADDRESS not in str(value), (span.name, name, value)
            assert "traced-client" not in str(value), (span.name, name, value)
    for attribute in ("http.url", "http.target"):
        if attribute in get.attributes:
            assert get.attributes[attribute] == "/notifications"
    for attribute in ("net.peer.ip", "client.address", "http.user_agent", "user_agent.original"):
        if attribute in get.attributes:
            assert get.attributes[attribute] == "[redacted]"
