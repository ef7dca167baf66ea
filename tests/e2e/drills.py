"""What the fault drills share: a whole Herald on servers of its own, each of which a drill
may stop and start again, a steady stream of commands, and the checks every drill ends with.

The servers are the embedded ones `herald dev` runs, one supervisor each, so that stopping
PostgreSQL, Redis or the broker touches neither the session's stack nor the other servers.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import msgspec
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from domain.identity.roles import Role
from infrastructure.auth.tokens import TokenService
from infrastructure.devstack import prepare_servers, servers
from infrastructure.devstack.dev import role_spec, simulator_spec
from infrastructure.devstack.servers import ProcessSpec, free_port, http_ok
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION, RELAY, stored_position
from infrastructure.kafka.topics import notifications_topic
from infrastructure.settings import Settings
from tests.kafka_helpers import eventually, positions_on_topic

TENANT = "drill"
SENT = {"sent", "delivered"}


@dataclass
class Server:
    """One server under a supervisor of its own: stop it, start it again on the same port."""

    spec: ProcessSpec
    supervisor: Supervisor = field(default_factory=Supervisor)

    def stop(self) -> None:
        self.supervisor.stop_all()

    def start(self) -> None:
        self.supervisor.start(self.spec)


@dataclass
class Drill:
    settings: Settings
    url: str
    servers: dict[str, Server]
    roles: Supervisor
    logs: Path
    metrics_ports: dict[str, int]  # each role but the api serves /metrics on its own port

    @property
    def database_url(self) -> str:
        assert self.settings.database_url is not None
        return self.settings.database_url.reveal()

    def headers(self, *roles: Role) -> dict[str, str]:
        token = TokenService(self.settings).issue(
            "access",
            subject=str(uuid.uuid4()),
            tenant_id=TENANT,
            family="drill",
            roles=frozenset(roles or (Role.SENDER,)),
        )
        return {"Authorization": f"Bearer {token.token}"}

    def metric(self, role: str, name: str, **labels: str) -> float:
        """The sum of `name`'s samples with `labels` on `role`'s /metrics."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_ports[role]}/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def herald(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "infrastructure.entrypoints.cli", *args],
            env={**os.environ, **self.settings.to_environ()},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


@contextmanager
def drill_stack(base: Settings, *roles: str) -> Iterator[Drill]:
    """`base`'s secrets on new PostgreSQL, Redis and broker servers, with the api and `roles`
    running as processes. Every process's output is kept in the drill's `logs`, which outlive
    the drill so that a failed one can be looked into."""
    logs = Path(tempfile.mkdtemp(prefix="herald-drill-logs-"))
    with tempfile.TemporaryDirectory(prefix="herald-drill-") as scratch, ExitStack() as stack:
        data = Path(scratch)
        started = {
            "postgres": Server(servers.postgres(data / "pg", free_port(), logs / "postgres.log")),
            "redis": Server(servers.redis_server(free_port(), logs / "redis.log")),
            "kafka": Server(servers.kafka_broker(free_port(), logs / "kafka.log")),
        }
        for server in started.values():
            stack.enter_context(server.supervisor)
            server.start()
        port = free_port()
        settings = msgspec.structs.replace(
            base.with_servers(
                database_url=started["postgres"].spec.url,
                redis_url=started["redis"].spec.url,
                kafka_bootstrap=started["kafka"].spec.url,
            ),
            http_port=port,
            public_url=f"http://127.0.0.1:{port}",
            simulator_url=f"http://127.0.0.1:{free_port()}",  # beside any other simulator
            # Retries and circuits on a drill's time scale, not production's.
            retry_base_ms=100,
            retry_max_ms=2000,
            breaker_open_s=2,
            namespace=f"drill-{uuid.uuid4().hex[:6]}",
        )
        prepare_servers(settings)
        if "simulator" in roles:  # a server of the drill's, to be stopped like the others
            started["simulator"] = Server(
                dataclasses.replace(simulator_spec(settings), log_path=logs / "simulator.log")
            )
            stack.enter_context(started["simulator"].supervisor)
            started["simulator"].start()
        supervisor = stack.enter_context(Supervisor())
        metrics: dict[str, int] = {}
        for name in ("api", *(r for r in roles if r != "simulator")):
            metrics[name] = free_port()
            own = msgspec.structs.replace(settings, metrics_port=metrics[name])
            spec = dataclasses.replace(role_spec(name, own), log_path=logs / f"{name}.log")
            if name != "api":  # ready once its health endpoint answers
                spec = dataclasses.replace(
                    spec,
                    ready=partial(http_ok, f"http://127.0.0.1:{metrics[name]}/health/liveness"),
                )
            supervisor.start(spec, ready_timeout=60)
        yield Drill(settings, settings.public_url, started, supervisor, logs, metrics)


@contextmanager
def under_load(base: Settings) -> Iterator[tuple[Drill, Commands, dict[str, int]]]:
    """A drill stack with every role and the simulator, commands flowing (20 accepted)
    before the drill breaks anything; yields the drill, the load and the roles' pids."""
    with drill_stack(base, "relay", "projector", "dispatcher", "simulator") as drill:
        pids = drill.roles.pids
        load = Commands(drill)
        load.start()
        try:
            eventually(lambda: load.accepted() >= 20, 60, "commands to be accepted")
            yield drill, load, pids
        finally:
            load.halt.set()


@dataclass(frozen=True)
class Answer:
    status: int
    began: float  # time.monotonic() when the request was sent
    seconds: float
    retry_after: str | None
    notification_id: str | None


class Commands(threading.Thread):
    """POST /notifications every `every_s`, as a client service would, keeping every answer."""

    def __init__(self, drill: Drill, every_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.drill = drill
        self.every_s = every_s
        self.answers: list[Answer] = []
        self.halt = threading.Event()
        self._count = 0

    def run(self) -> None:
        headers = self.drill.headers(Role.SENDER)
        with httpx.Client(base_url=self.drill.url, headers=headers, timeout=30) as client:
            while not self.halt.is_set():
                self._count += 1
                body = {
                    "channel": "email",
                    "recipient": f"drill{self._count % 50}@example.com",
                    "subject": "Drill",
                    "body": f"Message {self._count}",
                }
                began = time.monotonic()
                try:
                    response = client.post("/notifications", json=body)
                except httpx.TransportError:
                    self.answers.append(Answer(0, began, time.monotonic() - began, None, None))
                    continue
                accepted = response.status_code == 202
                self.answers.append(
                    Answer(
                        response.status_code,
                        began,
                        time.monotonic() - began,
                        response.headers.get("Retry-After"),
                        response.json()["id"] if accepted else None,
                    )
                )
                time.sleep(self.every_s)

    def stop(self) -> list[Answer]:
        self.halt.set()
        self.join(60)
        return self.answers

    def sent_between(self, start: float, end: float) -> list[Answer]:
        """The answers to requests sent from `start` to `end` (time.monotonic())."""
        return [a for a in list(self.answers) if start <= a.began <= end]

    def accepted(self) -> int:
        return sum(a.status == 202 for a in list(self.answers))

    def until_accepted(self, more: int) -> None:
        """Wait until `more` further commands have been accepted."""
        before = self.accepted()
        eventually(lambda: self.accepted() >= before + more, 60, f"{more} more commands accepted")


def accounted_for(drill: Drill, answers: list[Answer]) -> None:
    """Every drill's ending: each accepted notification requested exactly once, every position
    of the log on Kafka, and the read model equal to a replay of the log."""
    accepted = {a.notification_id for a in answers if a.notification_id is not None}
    assert accepted, "no command was accepted"
    with psycopg.connect(drill.database_url) as conn:
        rows = conn.execute(
            "SELECT originator_id::text FROM stored_events"
            " WHERE topic LIKE 'NotificationRequested@%%' AND originator_id = ANY(%s::uuid[])",
            (list(accepted),),
        ).fetchall()
    requested = Counter(row[0] for row in rows)
    assert set(requested) == accepted, f"{len(accepted - set(requested))} accepted missing"
    assert max(requested.values()) == 1, "a notification was requested twice"
    logged = _wait_for_relay(drill)
    assert drill.settings.kafka_bootstrap is not None
    seen = positions_on_topic(
        drill.settings.kafka_bootstrap,
        notifications_topic(drill.settings.namespace),
        TENANT,
        lambda s: logged <= set(s),
        timeout=120,
    )
    assert logged <= set(seen), f"{len(logged - set(seen))} positions are not on Kafka"
    _wait_for_projection(drill, max(logged))
    verified = drill.herald("projections", "verify", "notifications")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def carried_on(drill: Drill, pids: dict[str, int], answers: list[Answer]) -> None:
    """Every role is the process it was before the drill, and the newest accepted
    notification went all the way: projected and sent."""
    assert drill.roles.pids == pids
    for name, pid in pids.items():
        assert _running(pid), f"{name} exited; see {drill.logs}"
    last = next(a.notification_id for a in reversed(answers) if a.notification_id)
    with httpx.Client(base_url=drill.url, headers=drill.headers(Role.ADMIN)) as client:

        def sent() -> bool:
            response = client.get(f"/notifications/{last}")
            return response.status_code == 200 and response.json()["status"] in SENT

        eventually(sent, 90, f"the newest notification to be sent; see {drill.logs}")


def _running(pid: int) -> bool:
    """The process exists and has not exited (a child not yet reaped is a zombie, 'Z')."""
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for_projection(drill: Drill, head: int) -> None:
    with psycopg.connect(drill.database_url, autocommit=True) as conn:
        eventually(
            lambda: stored_position(conn, NOTIFICATIONS_PROJECTION) >= head,
            120,
            "the notifications projection to reach the head of the log",
        )


def _wait_for_relay(drill: Drill) -> set[int]:
    """Once the relay has published the whole log: the positions of the drill's notifications."""
    with psycopg.connect(drill.database_url, autocommit=True) as conn:

        def caught_up() -> bool:
            row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM stored_events")
            head = int(row.fetchone()[0])  # type: ignore[index]
            return stored_position(conn, RELAY) >= head

        eventually(caught_up, 120, "the relay to publish the whole log")
        return {
            int(row[0])
            for row in conn.execute(
                "SELECT notification_id FROM stored_events"
                " WHERE topic LIKE 'Notification%%' OR topic LIKE 'Dispatch%%'"
            )
        }
