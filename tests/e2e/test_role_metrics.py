"""Every role answers /metrics and its health, and the metrics move when what they count
happens: notifications sent through the whole pipeline (api, relay, projector, dispatcher,
provider simulator, webhooks), a failure dead-lettered, a retry, a scheduled job run."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from domain.identity.roles import Role
from infrastructure.devstack.servers import free_port
from infrastructure.settings import Settings
from tests.conftest import new_database
from tests.e2e.conftest import Account, AccountFactory, own_stack
from tests.kafka_helpers import eventually

NEVER = "0 0 1 1 *"
FINAL = {"delivered", "dead_lettered"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclasses.dataclass
class Roles:
    settings: Settings
    urls: dict[str, str]  # role: base URL of its metrics and health
    simulator: str
    api_url: str
    account: AccountFactory

    def configure(self, **rates: float) -> None:
        """Every failure rate 0 but those given (the simulator keeps what is left out)."""
        kinds = ("transient", "throttle", "timeout", "permanent")
        healthy = {f"{kind}_rate": 0.0 for kind in kinds}
        body = {"latency_ms": 0, "webhook_delay_ms": 10, **healthy, **rates}
        response = httpx.put(f"{self.simulator}/_simulator/config", json=body)
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def roles(api_settings: Settings, stack: Settings) -> Iterator[Roles]:
    """Every role and the simulator on a database and topics of their own, each role but the
    api serving metrics on a port of its own. Their own: a dispatcher on the session's topic
    would first send every notification the earlier modules left unsent."""
    settings = msgspec.structs.replace(
        api_settings,
        simulator_url=f"http://127.0.0.1:{free_port()}",
        # Slow enough retries that the test sees one and heals the provider before the
        # attempts run out.
        retry_base_ms=1000,
        retry_max_ms=2000,
        provider_timeout_ms=5000,
        job_schedules="; ".join(
            f"{job}={NEVER}" for job in ("archive", "cleanup", "warm-read-models", "verify-sample")
        ),
        scheduler_poll_s=0.5,
    )
    ports = {role: free_port() for role in ("relay", "projector", "dispatcher", "scheduler")}
    with (
        new_database(stack) as database,
        own_stack(settings, database, "simulator", "dispatcher", "scheduler", metrics=ports) as own,
    ):
        urls = {role: f"http://127.0.0.1:{port}" for role, port in ports.items()}
        for url in urls.values():
            live = f"{url}/health/liveness"
            eventually(lambda live=live: _answers(live), 60, f"{url} to listen")  # type: ignore[misc]
        stack_of_own = Roles(own.settings, urls, settings.simulator_url, own.api_url, own.account)
        stack_of_own.configure()
        yield stack_of_own


@pytest.fixture(scope="module")
def api_url(roles: Roles) -> str:
    return roles.api_url


@pytest.fixture(scope="module")
def account(roles: Roles) -> AccountFactory:
    return roles.account


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(f"{url}/metrics", headers=headers or {}, timeout=10)
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _sum(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def _has(samples: Samples, name: str) -> bool:
    return any(n == name for n, _ in samples)


def _statuses(settings: Settings, ids: list[str]) -> dict[str, str]:
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url.reveal()) as conn:
        rows = conn.execute(
            "SELECT notification_id::text, status FROM notification_view"
            " WHERE notification_id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
    return dict(rows)


def _send(api_url: str, sender: Account, items: list[dict[str, Any]]) -> list[str]:
    response = httpx.post(
        f"{api_url}/notifications/batch", json={"notifications": items}, headers=sender.headers
    )
    assert response.status_code == 202, response.text
    return [str(i) for i in response.json()["ids"]]


def _item(channel: str, index: int) -> dict[str, Any]:
    recipient = {
        "email": f"metrics{index}@example.com",
        "sms": f"+1415666{index:04d}",
        "push": f"metrics-device-{index}",
    }[channel]
    return {"channel": channel, "recipient": recipient, "subject": "Hi", "body": f"m{index}"}


def _until_final(settings: Settings, ids: list[str]) -> dict[str, str]:
    def done() -> bool:
        statuses = _statuses(settings, ids)
        return len(statuses) == len(ids) and set(statuses.values()) <= FINAL

    eventually(done, 150, "the notifications to end")
    return _statuses(settings, ids)


def test_every_role_answers_its_health(roles: Roles, api_url: str) -> None:
    for role, url in roles.urls.items():
        live = httpx.get(f"{url}/health/liveness")
        assert live.status_code == 200
        assert live.json()["role"] == role
        ready = httpx.get(f"{url}/health/readiness")
        assert ready.status_code == 200, ready.text
        assert ready.json()["ready"] is True
        assert ready.json()["database"] == "ok"
    # The followers' readiness says how far behind they are.
    relay = httpx.get(f"{roles.urls['relay']}/health/readiness").json()
    assert set(relay["relay"]) == {"lag_events", "lag_seconds"}
    assert httpx.get(f"{roles.urls['relay']}/nowhere").status_code == 404
    # The api's /health says how far behind the log the relay and each projection are.
    followers = httpx.get(f"{api_url}/health").json()["followers"]
    assert set(followers) == {"relay", "notifications", "audit"}
    for state in followers.values():
        assert state["position"] >= 0
        assert state["lag_events"] >= 0
        assert state["lag_seconds"] >= 0


def _exercise(roles: Roles, api_url: str, sender: Account, admin: Account) -> None:
    """Everything the metrics count: twelve notifications across the channels delivered and
    read back, one refused for good (dead-lettered), one failing once (retried, then
    delivered), and the cleanup job run on request."""
    ids = _send(api_url, sender, [_item(("email", "sms", "push")[i % 3], i) for i in range(12)])
    assert set(_until_final(roles.settings, ids).values()) == {"delivered"}
    for notification_id in ids:
        read = httpx.get(f"{api_url}/notifications/{notification_id}", headers=sender.headers)
        assert read.status_code == 200, read.text
    roles.configure(permanent_rate=1.0)
    (dead,) = _send(api_url, sender, [_item("email", 100)])
    assert _until_final(roles.settings, [dead]) == {dead: "dead_lettered"}
    retries = _sum(_scrape(roles.urls["dispatcher"]), "herald_dispatch_retries_total")
    roles.configure(transient_rate=1.0)
    (retried,) = _send(api_url, sender, [_item("sms", 101)])
    eventually(
        lambda: _sum(_scrape(roles.urls["dispatcher"]), "herald_dispatch_retries_total") > retries,
        60,
        "a retry",
    )
    roles.configure()
    assert _until_final(roles.settings, [retried]) == {retried: "delivered"}
    last = _sum(_scrape(roles.urls["scheduler"]), "herald_job_last_success_timestamp_seconds")
    run = httpx.post(f"{api_url}/admin/jobs/cleanup/run", headers=admin.headers)
    assert run.status_code == 202, run.text

    def job_seen() -> bool:
        scraped = _scrape(roles.urls["scheduler"])
        return _sum(scraped, "herald_job_last_success_timestamp_seconds") > last

    eventually(job_seen, 60, "the cleanup job's success on the scheduler's metrics")


def test_the_metrics_move_with_what_they_count(
    roles: Roles, api_url: str, account: AccountFactory
) -> None:
    sender = account(Role.SENDER)
    operator = account(Role.OPERATOR, tenant=sender.tenant)
    admin = account(Role.ADMIN, tenant=sender.tenant)
    before = {role: _scrape(url) for role, url in roles.urls.items()}
    api_before = _scrape(api_url, operator.headers)

    _exercise(roles, api_url, sender, admin)

    after = {role: _scrape(url) for role, url in roles.urls.items()}
    api = _scrape(api_url, operator.headers)

    def moved(role: str, name: str, by: float = 1, **labels: str) -> None:
        grew = _sum(after[role], name, **labels) - _sum(before[role], name, **labels)
        assert grew >= by, f"{role}: {name}{labels} moved by {grew}, not {by}"

    def api_moved(name: str, by: float = 1, **labels: str) -> None:
        grew = _sum(api, name, **labels) - _sum(api_before, name, **labels)
        assert grew >= by, f"api: {name}{labels} moved by {grew}, not {by}"

    # The api: golden signals by route template, the group commit, business counts.
    api_moved(
        "herald_http_request_duration_seconds_count",
        3,
        route="/notifications/batch",
        method="POST",
        status="202",
    )
    assert _has(api, "herald_http_requests_in_flight")
    api_moved("herald_event_append_duration_seconds_count", 3)
    api_moved("herald_group_commit_units_count", 1)
    api_moved("herald_notifications_total", 14, event="requested")
    api_moved("herald_notifications_total", 4, event="requested", channel="email")
    api_moved("herald_notifications_total", 13, event="delivered")  # by the webhooks
    api_moved("herald_read_cache_total", 12)
    # What the api's workers hold.
    assert _sum(api, "herald_db_pool_size", pool="herald") > 0
    assert _has(api, "herald_db_pool_in_use")
    assert _has(api, "herald_db_pool_waiting")
    assert _sum(api, "herald_redis_up") >= 1
    assert _sum(api, "herald_redis_command_duration_seconds_count", command="ping") > 0
    assert _sum(api, "herald_api_resident_memory_bytes") > 10_000_000
    assert _sum(api, "herald_api_cpu_seconds_total") > 0
    # The relay and the projector: what they carried, and where they stand.
    moved("relay", "herald_relay_published_events_total", 14)
    assert _sum(after["relay"], "herald_relay_position") >= _sum(
        before["relay"], "herald_relay_position"
    )
    for name in ("herald_relay_lag_events", "herald_relay_lag_seconds"):
        assert _has(after["relay"], name)
    moved("projector", "herald_projection_events_total", 14, projection="notifications")
    moved("projector", "herald_projection_events_total", 1, projection="audit")
    for projection in ("notifications", "audit"):
        assert _has(after["projector"], "herald_projection_lag_seconds")
        assert _sum(after["projector"], "herald_projection_position", projection=projection) > 0
    # The dispatcher: attempts by outcome, call latency, retries, dead letters, the queue.
    moved("dispatcher", "herald_dispatch_attempts_total", 4, channel="email", outcome="ok")
    moved("dispatcher", "herald_dispatch_attempts_total", 1, outcome="refused")
    moved("dispatcher", "herald_dispatch_attempts_total", 1, outcome="failed")
    moved("dispatcher", "herald_provider_call_duration_seconds_count", 15)
    moved("dispatcher", "herald_dispatch_retries_total", 1, channel="sms")
    moved("dispatcher", "herald_dispatch_dead_letters_total", 1, channel="email")
    moved("dispatcher", "herald_notifications_total", 13, event="sent")
    moved("dispatcher", "herald_notifications_total", 1, event="dead_lettered")
    assert _has(after["dispatcher"], "herald_provider_circuit_open")
    for lane in ("critical", "high", "normal", "low"):
        assert _has(after["dispatcher"], "herald_dispatch_queue_depth")
        assert _sum(after["dispatcher"], "herald_dispatch_oldest_due_age_seconds", lane=lane) >= 0
    # The scheduler: its jobs' schedule and last success, and the export store's disk.
    assert _sum(after["scheduler"], "herald_job_interval_seconds", job_name="cleanup") > 0
    assert _sum(after["scheduler"], "herald_export_store_size_bytes") > 0
    assert _sum(after["scheduler"], "herald_export_store_free_bytes") > 0
    # Every non-api role is one process: its own RSS and CPU.
    for role in roles.urls:
        assert _sum(after[role], "process_resident_memory_bytes") > 0


DASHBOARDS = Path(__file__).resolve().parents[2] / "infrastructure" / "deploy" / "grafana"


def _prometheus_config(roles: Roles, api_url: str, key_file: Path) -> dict[str, Any]:
    api = urlsplit(api_url).netloc
    jobs: list[dict[str, Any]] = [
        {
            "job_name": "herald-api",
            "authorization": {"type": "Bearer", "credentials_file": str(key_file)},
            "static_configs": [{"targets": [api]}],
        }
    ]
    for role, url in roles.urls.items():
        jobs.append(
            {"job_name": f"herald-{role}", "static_configs": [{"targets": [urlsplit(url).netloc]}]}
        )
    return {"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_a_real_prometheus_scrapes_every_role_and_every_panel_has_data(
    roles: Roles, api_url: str, account: AccountFactory, tmp_path: Path
) -> None:
    """Debian's Prometheus scrapes the running roles (the api with an operator's API key),
    and every query of every dashboard panel answers with data."""
    sender = account(Role.SENDER)
    admin = account(Role.ADMIN, tenant=sender.tenant)
    issued = httpx.post(
        f"{api_url}/admin/api-keys",
        json={"name": "prometheus", "role": "operator"},
        headers=admin.headers,
    )
    assert issued.status_code == 201, issued.text
    key_file = tmp_path / "api-key"
    key_file.write_text(issued.json()["key"])
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(_prometheus_config(roles, api_url, key_file)))
    binary = shutil.which("prometheus")
    assert binary is not None, "Prometheus is needed: apt-get install prometheus"
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prometheus = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _answers(f"{prometheus}/-/ready"), 60, "Prometheus to start")
        _exercise(roles, api_url, sender, admin)

        def all_up() -> bool:
            up = _query(prometheus, 'up{job=~"herald-.*"} == 1')
            return len({series["metric"]["job"] for series in up}) == 5

        eventually(all_up, 60, "Prometheus to scrape every role")
        time.sleep(3)  # a few more scrapes, for the rates
        panels = [
            (board.name, panel["title"], target["expr"])
            for board in sorted((DASHBOARDS / "dashboards").glob("*.json"))
            for panel in json.loads(board.read_text())["panels"]
            for target in panel["targets"]
        ]
        assert len(panels) >= 30
        empty = [(board, title) for board, title, expr in panels if not _query(prometheus, expr)]
        assert not empty, f"panels without data: {empty}"
    finally:
        process.terminate()
        process.wait(timeout=30)
