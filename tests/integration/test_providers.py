"""The provider adapters make real SDK calls to the provider simulator, run as a real process.

They send and return the provider's id, classify every kind of failure, and the simulator
dedupes by key and posts webhooks that the providers' own verifiers accept.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from sendgrid.helpers.eventwebhook import EventWebhook  # type: ignore[import-untyped]
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from domain.notifications.values import Channel
from infrastructure.devstack.dev import simulator_spec
from infrastructure.devstack.servers import free_port
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.providers import push_receipts
from infrastructure.providers.provider import OutboundMessage, Provider, ProviderError
from infrastructure.providers.registry import build_providers
from infrastructure.providers.sandbox import FCM_PROJECT, load_sandbox
from infrastructure.settings import Settings, load_settings

# Herald addresses devices by registration token, which firebase-admin 7.7 marks deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning")

TIMEOUT_MS = 1000
RECIPIENTS = {
    Channel.EMAIL: "ada@example.com",
    Channel.SMS: "+15005550006",
    Channel.PUSH: "device-token-1",
}


@dataclass(frozen=True)
class Webhook:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Herald's webhook endpoints, as far as the simulator can tell: it records every post."""

    url: str
    posts: queue.Queue[Webhook] = field(default_factory=queue.Queue)
    refusals_left: int = 0  # answer this many posts 503 first

    def next(self, timeout: float = 5.0) -> Webhook:
        return self.posts.get(timeout=timeout)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    port = free_port()
    found = Receiver(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if found.refusals_left > 0:
                found.refusals_left -= 1
                self.send_response(503)
            else:
                found.posts.put(Webhook(self.path, dict(self.headers.items()), body))
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield found
    server.shutdown()
    server.server_close()


def _settings(dev_dir: Path, public_url: str, **extra: str) -> Settings:
    environ = {
        "HERALD_DEV_DIR": str(dev_dir),
        "HERALD_PUBLIC_URL": public_url,
        "HERALD_SIMULATOR_URL": f"http://127.0.0.1:{free_port()}",
        "HERALD_PROVIDER_TIMEOUT_MS": str(TIMEOUT_MS),
        "HERALD_SIMULATOR_WEBHOOK_DELAY_MS": "0",
        "HERALD_JWT_SECRET": "the-push-receipt-key-derives-from-this-secret",
        **extra,
    }
    return load_settings(environ, None)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Settings]:
    """Settings of a running simulator; its webhooks go to `receiver`."""
    settings = _settings(tmp_path_factory.mktemp("herald-dev"), receiver.url)
    with Supervisor() as supervisor:
        supervisor.start(simulator_spec(settings), ready_timeout=30)
        yield settings


@pytest.fixture(scope="module")
def providers(settings: Settings) -> Iterator[dict[Channel, Provider]]:
    built = build_providers(settings)
    yield built
    for provider in built.values():
        provider.close()


@pytest.fixture
def simulator(settings: Settings, receiver: Receiver) -> Iterator[httpx.Client]:
    """A client of the simulator's control endpoints, on a fresh simulator."""
    with httpx.Client(base_url=settings.simulator_url, timeout=5) as client:
        client.post("/_simulator/reset").raise_for_status()
        while not receiver.posts.empty():
            receiver.posts.get_nowait()
        yield client
        zero = {"transient_rate": 0, "throttle_rate": 0, "timeout_rate": 0, "permanent_rate": 0}
        client.put("/_simulator/config", json={**zero, "latency_ms": 0}).raise_for_status()


def _message(channel: Channel, recipient: str | None = None, attempt: int = 1) -> OutboundMessage:
    return OutboundMessage(
        notification_id=uuid.uuid4(),
        attempt=attempt,
        tenant_id="acme",
        channel=channel,
        recipient=recipient or RECIPIENTS[channel],
        subject="Hello",
        body="Your code is 123456",
    )


def _refusal(provider: Provider, message: OutboundMessage) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.send(message)
    return caught.value


def test_without_credentials_every_provider_is_the_sandbox(
    providers: dict[Channel, Provider],
) -> None:
    assert {channel: p.name for channel, p in providers.items()} == {
        Channel.EMAIL: "sendgrid",
        Channel.SMS: "twilio",
        Channel.PUSH: "fcm",
    }
    assert all(provider.sandbox for provider in providers.values())


def test_with_credentials_every_provider_is_the_real_service(tmp_path: Path) -> None:
    sandbox = load_sandbox(_settings(tmp_path, "http://127.0.0.1:9"))
    account = tmp_path / "firebase.json"
    account.write_text(json.dumps(sandbox.fcm_service_account("https://oauth2.googleapis.com")))
    configured = _settings(
        tmp_path,
        "https://herald.example.com",
        HERALD_SENDGRID_API_KEY="SG.real-looking-key",
        HERALD_TWILIO_ACCOUNT_SID="AC" + "0" * 32,
        HERALD_TWILIO_AUTH_TOKEN="real-looking-token",
        HERALD_FCM_SERVICE_ACCOUNT_FILE=str(account),
    )
    real = build_providers(configured)  # nothing is called until a first send
    assert not any(provider.sandbox for provider in real.values())
    for provider in real.values():
        provider.close()


def test_each_channel_sends_through_its_sdk_and_returns_the_providers_id(
    providers: dict[Channel, Provider], simulator: httpx.Client
) -> None:
    email = providers[Channel.EMAIL].send(_message(Channel.EMAIL))
    sms = providers[Channel.SMS].send(_message(Channel.SMS))
    push = providers[Channel.PUSH].send(_message(Channel.PUSH))

    assert len(email) >= 16
    assert sms.startswith("SM")
    assert push.startswith(f"projects/{FCM_PROJECT}/messages/")
    by_provider = simulator.get("/_simulator/stats").json()["by_provider"]
    assert {name: counts["accepted"] for name, counts in by_provider.items()} == {
        "sendgrid": 1,
        "twilio": 1,
        "fcm": 1,
    }


@pytest.mark.parametrize("channel", list(Channel))
def test_a_repeated_dedupe_key_is_accepted_once_and_answered_with_the_same_id(
    providers: dict[Channel, Provider], simulator: httpx.Client, channel: Channel
) -> None:
    message = _message(channel)
    first = providers[channel].send(message)
    second = providers[channel].send(message)
    another_attempt = providers[channel].send(_message(channel, attempt=2))

    assert second == first
    assert another_attempt != first
    stats = simulator.get("/_simulator/stats").json()
    assert stats["calls"][message.dedupe_key] == 2
    assert stats["accepted"][message.dedupe_key] == 1


def test_concurrent_sends_from_many_threads_all_succeed(
    providers: dict[Channel, Provider], simulator: httpx.Client
) -> None:
    messages = [_message(channel) for channel in Channel for _ in range(8)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        ids = list(pool.map(lambda m: providers[m.channel].send(m), messages))

    assert len(set(ids)) == len(messages)
    assert sum(simulator.get("/_simulator/stats").json()["accepted"].values()) == len(messages)


@pytest.mark.parametrize(
    ("config", "reasons", "retry_after_s"),
    [
        (
            {"transient_rate": 1},
            {
                "sendgrid": "sendgrid 503: service unavailable",
                "twilio": "twilio 503: service unavailable",
                "fcm": "fcm UNAVAILABLE: service unavailable",
            },
            None,
        ),
        (
            {"throttle_rate": 1},
            {
                "sendgrid": "sendgrid 429: too many requests",
                "twilio": "twilio 429: too many requests",
                "fcm": "fcm QUOTA_EXCEEDED: sending quota exceeded",
            },
            1.0,
        ),
    ],
    ids=["503", "429"],
)
def test_unavailable_and_throttled_calls_are_transient_and_made_once(
    providers: dict[Channel, Provider],
    simulator: httpx.Client,
    config: dict[str, float],
    reasons: dict[str, str],
    retry_after_s: float | None,
) -> None:
    simulator.put("/_simulator/config", json=config).raise_for_status()
    for channel, provider in providers.items():
        error = _refusal(provider, _message(channel))
        assert (error.reason, error.permanent) == (reasons[provider.name], False)
        assert error.retry_after_s == retry_after_s
    # The SDKs' own retries are off: Herald's dispatcher decides when to call again.
    by_provider = simulator.get("/_simulator/stats").json()["by_provider"]
    assert all(counts["calls"] == 1 for counts in by_provider.values())


def test_a_call_past_the_timeout_is_transient_and_bounded_by_it(
    providers: dict[Channel, Provider], simulator: httpx.Client
) -> None:
    simulator.put("/_simulator/config", json={"timeout_rate": 1}).raise_for_status()

    def timed(channel: Channel) -> tuple[ProviderError, float]:
        started = time.monotonic()
        error = _refusal(providers[channel], _message(channel))
        return error, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(timed, Channel))
    for error, elapsed in results:
        assert (error.reason, error.permanent) == (f"timed out after {TIMEOUT_MS} ms", False)
        assert elapsed < TIMEOUT_MS / 1000 * 2


def test_an_invalid_recipient_is_permanent(
    providers: dict[Channel, Provider], simulator: httpx.Client
) -> None:
    simulator.put("/_simulator/config", json={"permanent_rate": 1}).raise_for_status()
    reasons = {
        channel: _refusal(provider, _message(channel)) for channel, provider in providers.items()
    }

    assert all(error.permanent for error in reasons.values())
    assert reasons[Channel.EMAIL].reason == "sendgrid 400: Does not contain a valid address."
    assert reasons[Channel.SMS].reason == "twilio 21211: invalid 'To' number"
    assert reasons[Channel.PUSH].reason == "fcm INVALID_ARGUMENT: invalid message or device token"


@pytest.mark.parametrize(
    ("channel", "recipient", "reason"),
    [
        (Channel.EMAIL, "invalid-1@example.com", "sendgrid 400: Does not contain a valid address."),
        (Channel.SMS, "+15005550001", "twilio 21211: invalid 'To' number"),
        (Channel.SMS, "+15005550004", "twilio 21610: recipient unsubscribed"),
        (Channel.PUSH, "invalid-token", "fcm INVALID_ARGUMENT: invalid message or device token"),
        (Channel.PUSH, "unregistered-1", "fcm UNREGISTERED: device token no longer registered"),
    ],
)
def test_magic_recipients_are_refused_for_good(
    providers: dict[Channel, Provider],
    simulator: httpx.Client,
    channel: Channel,
    recipient: str,
    reason: str,
) -> None:
    error = _refusal(providers[channel], _message(channel, recipient))
    assert (error.reason, error.permanent, error.retry_after_s) == (reason, True, None)


def test_a_provider_nobody_answers_is_transient(tmp_path: Path) -> None:
    nowhere = build_providers(_settings(tmp_path, "http://127.0.0.1:9"))
    try:
        for channel, provider in nowhere.items():
            error = _refusal(provider, _message(channel))
            assert not error.permanent
            assert error.reason == f"{provider.name} unreachable: connection refused"
    finally:
        for provider in nowhere.values():
            provider.close()


def test_the_sendgrid_webhook_verifies_with_sendgrids_event_webhook(
    providers: dict[Channel, Provider],
    simulator: httpx.Client,
    settings: Settings,
    receiver: Receiver,
) -> None:
    message = _message(Channel.EMAIL, "bounce-me@example.com")
    message_id = providers[Channel.EMAIL].send(message)
    posted = receiver.next()

    assert posted.path == "/webhooks/sendgrid"
    verifier = EventWebhook(load_sandbox(settings).sendgrid_verification_key)
    signature = posted.headers["X-Twilio-Email-Event-Webhook-Signature"]
    timestamp = posted.headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    assert verifier.verify_signature(posted.body.decode(), signature, timestamp)
    assert not verifier.verify_signature(posted.body.decode() + " ", signature, timestamp)
    [event] = json.loads(posted.body)
    assert event["event"] == "bounce"
    assert event["email"] == "bounce-me@example.com"
    assert event["sg_message_id"].startswith(message_id)
    assert event["herald_dedupe_key"] == message.dedupe_key
    assert event["herald_tenant"] == "acme"


def test_the_twilio_callback_verifies_with_twilios_request_validator(
    providers: dict[Channel, Provider],
    simulator: httpx.Client,
    settings: Settings,
    receiver: Receiver,
) -> None:
    message = _message(Channel.SMS, "+15005550009")
    sid = providers[Channel.SMS].send(message)
    posted = receiver.next()

    assert posted.path.startswith("/webhooks/twilio?")
    fields = dict(parse_qsl(posted.body.decode()))
    validator = RequestValidator(load_sandbox(settings).twilio_auth_token)
    url = settings.public_url + posted.path
    assert validator.validate(url, fields, posted.headers["X-Twilio-Signature"])
    assert not validator.validate(url, {**fields, "MessageStatus": "delivered"}, "forged")
    assert fields["MessageSid"] == sid
    assert (fields["MessageStatus"], fields["ErrorCode"]) == ("undelivered", "30003")
    assert f"notification_id={message.notification_id}" in posted.path


def test_a_refused_webhook_is_posted_again_until_acknowledged(
    providers: dict[Channel, Provider], simulator: httpx.Client, receiver: Receiver
) -> None:
    receiver.refusals_left = 2
    providers[Channel.SMS].send(_message(Channel.SMS))

    assert "MessageStatus=delivered" in receiver.next().body.decode()
    deadline = time.monotonic() + 5  # the simulator counts the answer after we received it
    while (webhooks := simulator.get("/_simulator/stats").json()["webhooks"])["acknowledged"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (webhooks["posted"], webhooks["acknowledged"], webhooks["failed"]) == (3, 1, 2)


def test_the_device_posts_a_push_receipt_and_an_offline_one_does_not(
    providers: dict[Channel, Provider],
    simulator: httpx.Client,
    receiver: Receiver,
    settings: Settings,
) -> None:
    message = _message(Channel.PUSH)
    providers[Channel.PUSH].send(message)
    posted = receiver.next()

    assert posted.path == "/webhooks/push-receipts"
    body = json.loads(posted.body)
    assert (body["notification_id"], body["attempt"], body["event"]) == (
        str(message.notification_id),
        message.attempt,
        "delivered",
    )
    keys = push_receipts.receipt_keys(settings)
    assert push_receipts.verify(keys, message.notification_id, message.attempt, body["receipt"])
    assert not push_receipts.verify(keys, message.notification_id, 2, body["receipt"])

    providers[Channel.PUSH].send(_message(Channel.PUSH, "offline-device"))
    with pytest.raises(queue.Empty):
        receiver.next(timeout=0.3)


def test_calls_without_the_sandbox_credentials_are_refused(simulator: httpx.Client) -> None:
    assert simulator.post("/v3/mail/send", json={}).status_code == 401
    twilio = simulator.post("/2010-04-01/Accounts/AC1/Messages.json", auth=("AC1", "wrong"))
    assert (twilio.status_code, twilio.json()["code"]) == (401, 20003)
    fcm = simulator.post(f"/v1/projects/{FCM_PROJECT}/messages:send", json={})
    assert (fcm.status_code, fcm.json()["error"]["status"]) == (401, "UNAUTHENTICATED")


def test_the_config_changes_at_runtime_and_refuses_bad_values(simulator: httpx.Client) -> None:
    changed = simulator.put("/_simulator/config", json={"latency_ms": 5})
    assert changed.status_code == 200
    assert simulator.get("/_simulator/config").json()["latency_ms"] == 5

    for change, field_name in (
        ({"transient_rate": 1.5}, "transient_rate"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"webhook_delay_ms": "soon"}, "webhook_delay_ms"),
        ({"surprise_rate": 0.1}, "surprise_rate"),
    ):
        refused = simulator.put("/_simulator/config", json=change)
        assert refused.status_code == 400
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["errors"][0]["name"] == field_name
    assert simulator.get("/_simulator/config").json()["latency_ms"] == 5
