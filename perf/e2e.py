"""`python -m perf e2e`: how long after a command's 202 its notification is visible in the
read API, with the api, relay and projector roles running as processes and wrk holding the
command load at about half of the maximum rate measured in the same run.

A probe sends one command every 20 ms and polls GET /notifications/{id} every 2 ms (without
min_position) until it answers 200; the time from the 202 to that 200 is one sample. The
baseline is the probe's own command latency (request to 202) under the same load.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from domain.identity.roles import Role
from infrastructure.devstack.dev import role_spec
from infrastructure.devstack.servers import free_port
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.settings import Settings
from perf.command import BODY, CONNECTIONS
from perf.harness import Load, machine, percentile, servers, token_for, wrk

TARGET_P99_MS = 250.0
PROBE_EVERY_S = 0.02
POLL_EVERY_S = 0.002


def _probe(
    url: str, headers: dict[str, str], stop: threading.Event
) -> tuple[list[float], list[float]]:
    visible: list[float] = []
    accepted: list[float] = []
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        while not stop.is_set():
            sent = time.perf_counter()
            response = client.post(
                "/notifications", content=BODY, headers={"Content-Type": "application/json"}
            )
            if response.status_code != 202:
                raise RuntimeError(f"command answered {response.status_code}")
            at_202 = time.perf_counter()
            accepted.append((at_202 - sent) * 1000)
            path = f"/notifications/{response.json()['id']}"
            while client.get(path).status_code != 200:
                time.sleep(POLL_EVERY_S)
            visible.append((time.perf_counter() - at_202) * 1000)
            time.sleep(max(0.0, PROBE_EVERY_S - (time.perf_counter() - sent)))
    return visible, accepted


def run(quick: bool) -> dict[str, Any]:
    seconds = 5 if quick else 20
    with servers() as started:
        settings: Settings = msgspec.structs.replace(
            started,
            http_port=free_port(),
            http_workers=2,
            rate_limit_enabled=False,
            log_level="warning",
        )
        url = f"http://{settings.http_host}:{settings.http_port}"
        sender = {"Authorization": f"Bearer {token_for(settings, Role.SENDER)}"}
        # The roles' logs are kept, so that an odd run can be looked into afterwards.
        logs = Path(tempfile.mkdtemp(prefix="herald-perf-e2e-"))
        with Supervisor() as supervisor:
            for role in ("relay", "projector", "api"):
                spec = dataclasses.replace(role_spec(role, settings), log_path=logs / f"{role}.log")
                supervisor.start(spec, ready_timeout=30)
            wrk(f"{url}/notifications", seconds=2, headers=sender, post=BODY)  # warm up
            maximum = wrk(f"{url}/notifications", seconds=seconds, headers=sender, post=BODY)
            half = 0.5 * maximum.requests_per_s
            pause_ms = max(0.0, CONNECTIONS / half * 1000 - maximum.p50_ms)
            results: dict[str, Any] = {}
            stop = threading.Event()

            def probe() -> None:
                results["probe"] = _probe(url, sender, stop)

            prober = threading.Thread(target=probe)
            prober.start()
            background: Load = wrk(
                f"{url}/notifications",
                seconds=seconds,
                headers=sender,
                post=BODY,
                pause_ms=round(pause_ms, 2),
            )
            stop.set()
            prober.join(30)
    visible, accepted = results["probe"]
    p99 = percentile(visible, 0.99)
    command_p99 = percentile(accepted, 0.99)
    return {
        "scenario": "e2e",
        "value": p99,
        "unit": "ms (p99, 202 to visible)",
        "baseline": command_p99,
        "ratio": round(p99 / command_p99, 3) if command_p99 else None,
        "p50_ms": percentile(visible, 0.5),
        "max_ms": round(max(visible), 2),
        "samples": len(visible),
        "command_p50_ms": round(statistics.median(accepted), 2),
        "max_command_req_s": maximum.requests_per_s,
        "load_req_s": background.requests_per_s,
        "target_p99_ms": TARGET_P99_MS,
        "role_logs": str(logs),
        "machine": machine(),
    }
