"""The load scenarios' traffic, for locust: `python -m perf scenario NAME` runs it.

Locust loads this file in a process of its own (gevent patches that process). The harness
passes everything through HERALD_LOAD_* variables: the scenario's name, the tokens, the
Twilio auth token the provider webhooks are signed with, and where to write the ids of the
notifications that were accepted, so that the harness can account for every one of them.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from locust import FastHttpUser, LoadTestShape, constant_throughput, events, task
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from perf.load_shapes import BATCH_SIZE, MIX, TASKS_PER_USER_S, Shape, Stage, shape_named

if "HERALD_LOAD_BASELINE_S" in os.environ:  # the no-op run: the peak's users, held
    SHAPE = Shape(
        "baseline",
        (
            Stage(
                int(os.environ["HERALD_LOAD_BASELINE_S"]),
                int(os.environ["HERALD_LOAD_BASELINE_USERS"]),
            ),
        ),
    )
else:
    SHAPE = shape_named(
        os.environ["HERALD_LOAD_SCENARIO"],
        os.environ.get("HERALD_LOAD_QUICK") == "1",
        int(os.environ["HERALD_LOAD_MINUTES"]) if os.environ.get("HERALD_LOAD_MINUTES") else None,
    )
SENDER = {"Authorization": f"Bearer {os.environ['HERALD_LOAD_SENDER_TOKEN']}"}
ADMIN = {"Authorization": f"Bearer {os.environ['HERALD_LOAD_ADMIN_TOKEN']}"}
PUBLIC_URL = os.environ["HERALD_LOAD_PUBLIC_URL"]
ACCEPTED_FILE = Path(os.environ["HERALD_LOAD_ACCEPTED_FILE"])
_twilio = RequestValidator(os.environ["HERALD_LOAD_TWILIO_TOKEN"])
_numbers = itertools.count()
_accepted: list[str] = []  # every notification id answered 202, for the harness to check
# An SMS is reported on only once it is old enough to have been sent, as a provider would.
_texts: deque[tuple[float, str]] = deque(maxlen=5000)
REPORT_AFTER_S = 5.0


def _recipient(n: int) -> tuple[str, str]:
    if n % 4 == 3:
        return "sms", f"+1415555{n % 10_000:04d}"
    return "email", f"user{n % 500}@example.com"


def _request(n: int) -> dict[str, Any]:
    channel, recipient = _recipient(n)
    return {
        "channel": channel,
        "recipient": recipient,
        "subject": "Your order shipped",
        "body": "It left the warehouse this morning and arrives tomorrow.",
        "priority": "high" if n % 10 == 0 else "normal",
        "metadata": {"campaign": "load"},
    }


class Traffic(FastHttpUser):
    wait_time = constant_throughput(TASKS_PER_USER_S)

    def on_start(self) -> None:
        self.mine: deque[tuple[str, int]] = deque(maxlen=200)  # (id, position) it created
        self.request_one()
        # Every path once, so that even a short run has exercised them all.
        for visit in (
            self.request_batch,
            self.read_one,
            self.read_one_at_position,
            self.list_recent,
            self.inbox,
            self.admin_list,
            self.queue_stats,
            self.dashboard,
            self.delivery_report,
        ):
            visit()

    def _accept(self, numbers: list[int], ids: list[str], position: int) -> None:
        _accepted.extend(ids)
        sent_at = time.monotonic()
        for n, notification_id in zip(numbers, ids, strict=True):
            self.mine.append((notification_id, position))
            if _recipient(n)[0] == "sms":
                _texts.append((sent_at, notification_id))

    @task(MIX["POST /notifications"])
    def request_one(self) -> None:
        n = next(_numbers)
        with self.client.post(
            "/notifications", json=_request(n), headers=SENDER, catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            body = response.json()
            self._accept([n], [body["id"]], body["position"])

    @task(MIX["POST /notifications/batch"])
    def request_batch(self) -> None:
        numbers = [next(_numbers) for _ in range(BATCH_SIZE)]
        batch = {"notifications": [_request(n) for n in numbers]}
        with self.client.post(
            "/notifications/batch", json=batch, headers=SENDER, catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            body = response.json()
            self._accept(numbers, body["ids"], body["last_position"])

    def _created(self) -> tuple[str, int]:
        if not self.mine:
            self.request_one()
        return random.choice(self.mine)

    @task(MIX["GET /notifications/{id}"])
    def read_one(self) -> None:
        notification_id, _ = self._created()
        # Right after its 202 a notification may not be projected yet: 404 is an answer.
        with self.client.get(
            f"/notifications/{notification_id}",
            headers=SENDER,
            name="/notifications/{id}",
            catch_response=True,
        ) as response:
            if response.status_code in (200, 404):
                response.success()

    @task(MIX["GET /notifications/{id} Min-Position"])
    def read_one_at_position(self) -> None:
        notification_id, position = self._created()
        self.client.get(
            f"/notifications/{notification_id}",
            headers={**SENDER, "Min-Position": str(position)},
            name="/notifications/{id} Min-Position",
        )

    @task(MIX["GET /notifications"])
    def list_recent(self) -> None:
        self.client.get("/notifications?limit=20", headers=SENDER, name="/notifications")

    @task(MIX["GET /recipients/{recipient}/inbox"])
    def inbox(self) -> None:
        _, recipient = _recipient(random.randrange(500))
        self.client.get(
            f"/recipients/{quote(recipient, safe='')}/inbox?limit=20",
            headers=SENDER,
            name="/recipients/{recipient}/inbox",
        )

    @task(MIX["GET /admin/notifications"])
    def admin_list(self) -> None:
        self.client.get(
            "/admin/notifications?limit=50&status=sent", headers=ADMIN, name="/admin/notifications"
        )

    @task(MIX["GET /admin/queue/stats"])
    def queue_stats(self) -> None:
        self.client.get("/admin/queue/stats", headers=ADMIN)

    @task(MIX["GET /admin/dashboard"])
    def dashboard(self) -> None:
        self.client.get("/admin/dashboard", headers=ADMIN)

    @task(MIX["POST /webhooks/twilio"])
    def delivery_report(self) -> None:
        """Twilio's status callback for a text old enough to be sent: Herald records it, or
        answers 200 to a report the simulator already made."""
        if not _texts or time.monotonic() - _texts[0][0] < REPORT_AFTER_S:
            notification_id, attempt = "00000000-0000-0000-0000-000000000000", 1
        else:
            notification_id, attempt = _texts.popleft()[1], 1
        query = urlencode({"notification_id": notification_id, "attempt": attempt})
        fields = {
            "MessageSid": "SM" + notification_id.replace("-", ""),
            "MessageStatus": "delivered",
        }
        signature = _twilio.compute_signature(f"{PUBLIC_URL}/webhooks/twilio?{query}", fields)
        self.client.post(
            f"/webhooks/twilio?{query}",
            data=urlencode(fields),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
            name="/webhooks/twilio",
        )


class Liveness(FastHttpUser):
    """The baseline: the api's cheapest route, at the same pace."""

    wait_time = constant_throughput(TASKS_PER_USER_S)

    @task
    def liveness(self) -> None:
        self.client.get("/health/liveness")


class Stages(LoadTestShape):
    """The scenario's users over time (perf/load_shapes.py)."""

    def tick(self) -> tuple[int, float] | None:
        users = SHAPE.users_at(self.get_run_time())  # type: ignore[no-untyped-call]
        if users is None:
            return None
        return users, max(1.0, users / 5)  # a new stage is reached within about 5 s


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _write_accepted(**_: Any) -> None:
    ACCEPTED_FILE.write_text(json.dumps(_accepted))
