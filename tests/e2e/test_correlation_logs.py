"""One correlation id end to end: the id a command was answered with (`X-Request-Id`) is in
every log line of the relay, projector and dispatcher that handles its notification (at debug
level the relay and the projector write one per event; at info, they log per batch)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import msgspec

from domain.identity.roles import Role
from infrastructure.devstack.servers import free_port
from infrastructure.settings import Settings
from tests.e2e.conftest import own_stack
from tests.kafka_helpers import eventually

ROLES = ("relay", "projector", "dispatcher")


def test_every_line_about_a_notification_names_the_request_behind_it(
    api_settings: Settings, fresh_database: str, tmp_path: Path
) -> None:
    settings = msgspec.structs.replace(
        api_settings,
        log_level="debug",
        simulator_url=f"http://127.0.0.1:{free_port()}",
        simulator_webhook_delay_ms=10,
    )
    with own_stack(settings, fresh_database, "simulator", "dispatcher", logs=tmp_path) as own:
        sender = own.account(Role.SENDER)
        request_id = f"corr-{uuid.uuid4().hex[:12]}"
        sent = httpx.post(
            f"{own.api_url}/notifications",
            json={"channel": "email", "recipient": "a@example.com", "subject": "Hi", "body": "x"},
            headers={**sender.headers, "X-Request-Id": request_id},
        )
        assert sent.status_code == 202, sent.text
        assert sent.headers["X-Request-Id"] == request_id
        notification = sent.json()["id"]

        def about(role: str) -> list[str]:
            text = (tmp_path / f"{role}.log").read_text(errors="replace")
            return [line for line in text.splitlines() if notification in line]

        def delivered_everywhere() -> bool:
            return all(
                any("NotificationDelivered" in line for line in about(role))
                for role in ("relay", "projector")
            ) and bool(about("dispatcher"))

        eventually(delivered_everywhere, 60, "every role's lines about the notification")
        for role in ROLES:
            lines = about(role)
            assert lines, role
            assert all(request_id in line for line in lines), (role, lines)
