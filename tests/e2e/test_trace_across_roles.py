"""One trace follows a notification through every process. The api, relay, projector and
dispatcher run as their own processes, on their own database and topics, exporting to a real
OTLP/HTTP receiver; the provider simulator answers the dispatcher's SDK calls and posts its
delivery webhook back to the api. The spans of the one notification share a trace id and form
the chain: the request, its wait for the group commit (linked both ways), the relay's publish,
the projector's and the dispatch queue's apply, the dispatcher's attempt, its provider call
with the SDK's HTTP call below it, and the webhook that records delivery."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import msgspec
import pytest

from domain.identity.roles import Role
from infrastructure.devstack.otlp_receiver import Receiver, Span, receiving
from infrastructure.devstack.servers import free_port
from infrastructure.settings import Settings
from tests.e2e.conftest import own_stack
from tests.kafka_helpers import eventually

ADDRESS = "followed.person@example.com"
SPAN_KIND_CLIENT = 3  # OTLP's enum
LIFE = {"NotificationRequested", "DispatchStarted", "NotificationSent", "NotificationDelivered"}


@dataclass
class Traced:
    api: str
    headers: dict[str, str]
    receiver: Receiver


@pytest.fixture
def traced(api_settings: Settings, fresh_database: str) -> Iterator[Traced]:
    with receiving() as receiver:
        settings = msgspec.structs.replace(
            api_settings,
            simulator_url=f"http://127.0.0.1:{free_port()}",
            simulator_webhook_delay_ms=10,
            otlp_endpoint=receiver.endpoint,
            trace_sample_ratio=1.0,
        )
        with own_stack(settings, fresh_database, "simulator", "dispatcher") as own:
            sender = own.account(Role.SENDER)
            yield Traced(own.api_url, sender.headers, receiver)


def test_one_trace_follows_a_notification_through_every_role(traced: Traced) -> None:
    correlation = f"trace-{uuid.uuid4().hex[:12]}"
    sent = httpx.post(
        f"{traced.api}/notifications",
        json={"channel": "email", "recipient": ADDRESS, "subject": "Hi", "body": "Hello"},
        headers={**traced.headers, "X-Request-Id": correlation},
    )
    assert sent.status_code == 202, sent.text
    notification = sent.json()["id"]
    # A caller's own trace that it did not sample: no role makes a span for it.
    unsampled = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00"
    quiet = httpx.post(
        f"{traced.api}/notifications",
        json={"channel": "sms", "recipient": "+14155550100", "body": "Hello"},
        headers={**traced.headers, "traceparent": unsampled},
    )
    assert quiet.status_code == 202, quiet.text
    spans: list[Span] = []  # what the receiver had decoded at the last look

    def named(name: str, trace_id: str | None = None) -> list[Span]:
        return [s for s in spans if s.name == name and trace_id in (None, s.trace_id)]

    def request_span() -> Span | None:
        posts = [s for s in named("POST /notifications") if s.parent_id == ""]
        return posts[0] if posts else None

    def chain_complete() -> bool:
        spans[:] = traced.receiver.spans
        request = request_span()
        if request is None:
            return False
        recorded = [
            s
            for s in named("webhook.record_report", request.trace_id)
            if s.attributes.get("herald.outcome") == "delivered"
        ]
        published = {s.attributes.get("herald.event") for s in named("relay.publish")}
        return (
            bool(recorded)
            and published >= LIFE
            and all(
                len(named(name, request.trace_id)) >= len(LIFE)
                for name in ("projector.apply", "dispatch_queue.apply")
            )
        )

    eventually(chain_complete, 90, "every role's spans of the notification")
    request = request_span()
    assert request is not None
    trace_id = request.trace_id
    ours = [s for s in spans if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in ours}

    def parent(span: Span) -> Span:
        assert span.parent_id in by_id, f"{span.name}'s parent is not in the trace"
        return by_id[span.parent_id]

    # The api: the request waits for the group commit, which belongs to the same trace.
    (wait,) = [s for s in named("eventstore.append", trace_id) if s.service == "herald-api"]
    assert parent(wait) is request
    commits = named("eventstore.group_commit", trace_id)
    (commit,) = [s for s in commits if s.parent_id == wait.span_id]
    assert commit.service == "herald-api"
    assert (trace_id, commit.span_id) in wait.links
    assert commit.attributes["herald.units"] >= 1

    # The relay publishes each of its events as a child of the request; the projector and
    # the dispatch queue apply them as children of the publish.
    publishes = {s.span_id: s for s in named("relay.publish", trace_id)}
    assert {s.service for s in publishes.values()} == {"herald-relay"}
    assert all(parent(s) is request for s in publishes.values())
    assert {s.attributes["herald.event"] for s in publishes.values()} == LIFE
    for name, service in (
        ("projector.apply", "herald-projector"),
        ("dispatch_queue.apply", "herald-dispatcher"),
    ):
        applied = named(name, trace_id)
        assert applied
        assert {s.service for s in applied} == {service}
        assert all(s.parent_id in publishes for s in applied)
    for span in publishes.values():
        assert span.attributes["herald.notification_id"] == notification
        assert span.attributes["herald.correlation_id"] == correlation

    # The dispatcher: the attempt, its provider call, the SDK's HTTP request beneath.
    (attempt,) = named("dispatch.attempt", trace_id)
    assert attempt.service == "herald-dispatcher"
    assert parent(attempt) is request
    assert attempt.attributes["herald.notification_id"] == notification
    assert attempt.attributes["herald.correlation_id"] == correlation
    assert attempt.attributes["herald.channel"] == "email"
    assert attempt.attributes["herald.provider"] == "sendgrid"
    assert attempt.attributes["herald.attempt"] == 1
    assert attempt.attributes["herald.tenant"]
    (call,) = named("provider.send", trace_id)
    assert parent(call) is attempt
    http_calls = [s for s in ours if s.parent_id == call.span_id]
    assert http_calls
    assert all(s.kind == SPAN_KIND_CLIENT for s in http_calls)
    recorded = [s for s in named("eventstore.append", trace_id) if s.service == "herald-dispatcher"]
    assert recorded
    assert all(parent(s) is attempt for s in recorded)

    # The webhook: its own HTTP request starts a trace, linked from the recording's span.
    reports = named("webhook.record_report", trace_id)
    # Webhooks come at least once, and may overtake the Sent event (refused, to be sent
    # again): each try has its span; one records the delivery.
    (report,) = [s for s in reports if s.attributes.get("herald.events", 0) > 0]
    assert report.attributes["herald.outcome"] == "delivered"
    assert all(parent(s) is request for s in reports)
    assert report.service == "herald-api"
    assert parent(report) is request
    assert report.links
    assert all(link_trace != trace_id for link_trace, _ in report.links)

    # Nothing in any span names the person.
    for span in spans:
        assert ADDRESS not in span.name
        for key, value in span.attributes.items():
            assert ADDRESS not in str(value), (span.service, span.name, key)

    def delivered(notification_id: str) -> bool:
        view = httpx.get(f"{traced.api}/notifications/{notification_id}", headers=traced.headers)
        return view.status_code == 200 and view.json()["status"] == "delivered"

    eventually(lambda: delivered(quiet.json()["id"]), 60, "the unsampled notification")
    spans[:] = traced.receiver.spans
    assert not [s for s in spans if s.trace_id == unsampled.split("-")[1]]
    assert len(named("POST /notifications")) == 1
    kafka_spans = [s for s in spans if "herald.event" in s.attributes]
    assert {s.attributes["herald.notification_id"] for s in kafka_spans} == {notification}
