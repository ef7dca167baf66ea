"""`python -m perf scenario smoke|load|stress|spike|soak [--quick]`: the seed's k6 scenarios,
run with locust against the whole of Herald.

The api, relay, projector, dispatcher and provider simulator run as processes, as
`herald dev` runs them. locust (perf/locustfile.py, in a process of its own) sends the mix in
perf/load_shapes.py at the scenario's user counts. Meanwhile the relay's, projector's and
dispatcher's /metrics are read every second for their lags. When the load ends, the
pipeline is given time to drain, and then every notification answered 202 must be in the
event store once, on Kafka and in the read model, and `projections verify` must pass.

Baseline: the same locust, at the scenario's peak user count and pace, against the api's
GET /health/liveness, in the same run: the latency of the HTTP path alone on this machine.

The run fails (exit status 1) when the seed's thresholds fail on all requests together
(p95 under 100 ms, p99 under 500 ms, errors under 1 %) or when anything accepted is missing.
Rate limiting stays on, with limits far above the offered load, so its cost is counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg

from domain.identity.roles import Role
from infrastructure.devstack.dev import role_spec, simulator_spec, with_dev_public_url
from infrastructure.devstack.servers import free_port
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.eventstore.catalog import NOTIFICATION_EVENT_NAMES
from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION, RELAY, read_position
from infrastructure.providers.sandbox import load_sandbox
from infrastructure.settings import Settings
from perf.harness import ROOT, BenchmarkError, machine, servers, token_for
from perf.load_report import Endpoint, LagWatch, cpu_s, print_report, rss_mb, run_locust, stages
from perf.load_shapes import MAX_ERROR_RATE, P95_MS, P99_MS, Shape, shape_named

ROLES = ("relay", "projector", "dispatcher")
FOLLOWERS = (RELAY, NOTIFICATIONS_PROJECTION)
_HEAD = (
    "SELECT coalesce(max(notification_id), 0) FROM stored_events"
    " WHERE split_part(topic, '@', 1) = ANY(%s)"
)
DRAIN_S = 180.0
BASELINE_S = {True: 10, False: 30}


@dataclasses.dataclass
class Observed:
    """What one scenario run saw."""

    endpoints: list[Endpoint]
    baseline: list[Endpoint]
    lags: LagWatch
    rss_start: dict[str, float]
    rss_end: dict[str, float]
    cpu_s: dict[str, float]  # each role's CPU seconds during the load
    drained_s: float | None  # None: the pipeline did not catch up within DRAIN_S
    accounted: dict[str, int]
    verified: bool
    logs: Path


def _drain(watch: LagWatch, database_url: str) -> float | None:
    """Wait until the relay has published the whole log and the projections have applied it;
    the seconds it took, or None when it did not happen within DRAIN_S."""
    began = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() - began < DRAIN_S:
            row = conn.execute(_HEAD, (list(NOTIFICATION_EVENT_NAMES),)).fetchone()
            head = int(row[0]) if row else 0
            if min(read_position(conn, name) for name in FOLLOWERS) >= head:
                return round(time.monotonic() - began, 1)
            time.sleep(0.5)
    with contextlib.suppress(httpx.HTTPError):
        watch.read()  # the lags as they were left, for the report
    return None


def _account(database_url: str, accepted: list[str]) -> dict[str, int]:
    """Where the accepted notifications are: each must be requested once and viewable."""
    with psycopg.connect(database_url) as conn:
        requested = conn.execute(
            "SELECT count(*), count(DISTINCT originator_id) FROM stored_events"
            " WHERE originator_id = ANY(%s::uuid[]) AND topic LIKE 'NotificationRequested@%%'",
            (accepted,),
        ).fetchone()
        viewed = conn.execute(
            "SELECT count(*) FROM notification_view WHERE notification_id = ANY(%s::uuid[])",
            (accepted,),
        ).fetchone()
    if requested is None or viewed is None:
        raise BenchmarkError("the event store did not answer a count")
    return {
        "accepted": len(accepted),
        "distinct_accepted": len(set(accepted)),
        "requested_events": int(requested[0]),
        "requested_streams": int(requested[1]),
        "in_read_model": int(viewed[0]),
    }


def _verified(settings: Settings, logs: Path) -> bool:
    """`herald projections verify notifications`; its report goes to logs/verify.log."""
    done = subprocess.run(
        [sys.executable, "-m", "infrastructure.entrypoints.cli", "projections", "verify",
         "notifications"],
        env={**os.environ, **settings.to_environ(), "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    (logs / "verify.log").write_text(done.stdout + done.stderr)
    return done.returncode == 0


def _settings(started: Settings, seconds: int) -> Settings:
    busy = "1000000/1s"
    return with_dev_public_url(
        msgspec.structs.replace(
            started,
            # The load's tokens are issued once: they must outlive the run (the soak's 30 min).
            access_token_ttl_s=max(started.access_token_ttl_s, min(86_400, seconds + 600)),
            http_port=free_port(),
            http_workers=2,
            simulator_url=f"http://127.0.0.1:{free_port()}",  # beside any other simulator
            log_level="warning",
            rate_limit_authenticated=busy,
            rate_limit_webhooks=busy,
        )
    )


def run(name: str, quick: bool, minutes: int | None = None) -> dict[str, Any]:
    """`minutes`: for the soak, how long to hold its users (30 unless given)."""
    shape = shape_named(name, quick, minutes)
    with servers() as started:
        settings = _settings(started, shape.seconds)
        seen = _observe(name, quick, shape, settings, minutes)
    label = name + (f" ({minutes} min)" if minutes is not None else "")
    return _result(label, quick, shape.peak_users, seen)


def _observe(
    name: str, quick: bool, shape: Shape, settings: Settings, minutes: int | None
) -> Observed:
    seconds, users = shape.seconds, shape.peak_users
    url = f"http://{settings.http_host}:{settings.http_port}"
    database_url = settings.database_url.reveal() if settings.database_url else ""
    out = Path(tempfile.mkdtemp(prefix=f"herald-load-{name}-"))
    ports = {role: free_port() for role in ROLES}
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HERALD_LOAD_SCENARIO": name,
        "HERALD_LOAD_QUICK": "1" if quick else "0",
        "HERALD_LOAD_MINUTES": "" if minutes is None else str(minutes),
        "HERALD_LOAD_SENDER_TOKEN": token_for(settings, Role.SENDER),
        "HERALD_LOAD_ADMIN_TOKEN": token_for(settings, Role.ADMIN),
        "HERALD_LOAD_TWILIO_TOKEN": load_sandbox(settings).twilio_auth_token,
        "HERALD_LOAD_PUBLIC_URL": settings.public_url,
        "HERALD_LOAD_ACCEPTED_FILE": str(out / "accepted.json"),
    }
    with Supervisor() as supervisor:
        supervisor.start(dataclasses.replace(simulator_spec(settings), log_path=out / "sim.log"))
        for role in (*ROLES, "api"):
            # The api at warning (a line per request would dwarf the rest), the others at info.
            own = msgspec.structs.replace(
                settings,
                metrics_port=ports.get(role, 0),
                log_level="warning" if role == "api" else "info",
            )
            spec = dataclasses.replace(role_spec(role, own), log_path=out / f"{role}.log")
            supervisor.start(spec, ready_timeout=60)
        floor_s = BASELINE_S[quick]
        held = {"HERALD_LOAD_BASELINE_S": str(floor_s), "HERALD_LOAD_BASELINE_USERS": str(users)}
        baseline = run_locust(
            url,
            {**env, **held},
            out / "baseline",
            "Liveness",
            floor_s,
        )
        rss_start = rss_mb(supervisor)
        cpu_start = cpu_s(supervisor)
        watch = LagWatch(ports, supervisor)
        watch.start()
        endpoints = run_locust(url, env, out / "load", "Traffic", seconds)
        watch.halt.set()
        supervisor.check()
        rss_end = rss_mb(supervisor)
        cpu_end = cpu_s(supervisor)
        drained_s = _drain(watch, database_url)
        accepted = json.loads((out / "accepted.json").read_text())
        return Observed(
            endpoints=endpoints,
            baseline=baseline,
            lags=watch,
            rss_start=rss_start,
            rss_end=rss_end,
            cpu_s={role: round(cpu_end[role] - cpu_start[role], 1) for role in cpu_end},
            drained_s=drained_s,
            accounted=_account(database_url, accepted),
            verified=_verified(settings, out),
            logs=out,
        )


def _result(name: str, quick: bool, users: int, seen: Observed) -> dict[str, Any]:
    total = next(e for e in seen.endpoints if e.name == "Aggregated")
    floor = next(e for e in seen.baseline if e.name == "Aggregated")
    accounted = seen.accounted
    nothing_lost = (
        accounted["accepted"]
        == accounted["distinct_accepted"]
        == accounted["requested_events"]
        == accounted["requested_streams"]
        == accounted["in_read_model"]
    )
    thresholds = {
        f"p95 < {P95_MS:.0f} ms": total.p95_ms < P95_MS,
        f"p99 < {P99_MS:.0f} ms": total.p99_ms < P99_MS,
        f"errors < {MAX_ERROR_RATE:.0%}": total.error_rate < MAX_ERROR_RATE,
        "every accepted notification stored once and viewable": nothing_lost,
        f"pipeline caught up within {DRAIN_S:.0f} s": seen.drained_s is not None,
        "projections verify": seen.verified,
    }
    print_report(name, seen.endpoints, seen.lags, thresholds)
    print(
        "  CPU seconds during the load: " + ", ".join(f"{k} {v:g}" for k, v in seen.cpu_s.items())
    )
    return {
        "scenario": f"scenario {name}" + (" (quick)" if quick else ""),
        "value": total.p95_ms,
        "unit": "ms (p95, all requests)",
        "baseline": floor.p95_ms,
        "ratio": round(total.p95_ms / floor.p95_ms, 3) if floor.p95_ms else None,
        "passed": all(thresholds.values()),
        "thresholds": thresholds,
        "peak_users": users,
        "requests": total.requests,
        "req_s": total.per_s,
        "p99_ms": total.p99_ms,
        "error_rate": round(total.error_rate, 5),
        "baseline_p99_ms": floor.p99_ms,
        "baseline_req_s": floor.per_s,
        "endpoints": {
            e.name: dataclasses.asdict(e) for e in seen.endpoints if e.name != "Aggregated"
        },
        "stages": stages(seen.logs / "load"),
        "lags_highest": dict(seen.lags.highest),
        "drained_s": seen.drained_s,
        "accounted": accounted,
        "rss_mb": {"start": seen.rss_start, "end": seen.rss_end},
        "rss_mb_every_minute": seen.lags.rss,
        "cpu_s": seen.cpu_s,
        "logs": str(seen.logs),
        "machine": machine(),
    }
