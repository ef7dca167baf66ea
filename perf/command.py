"""`python -m perf command`: single POST /notifications under wrk, 64 connections.

Baselines from the same run and the same app (same guard, same body): a no-op POST
handler, and the eventsourcing library's stock path saving one aggregate per request.
Then the latency at 70 % of the measured maximum rate. Rate limiting is off, so the
figures show the command path rather than the limiter (see perf auth for that cost).
"""

from __future__ import annotations

from typing import Any

import msgspec

from perf.command_app import stock_application
from perf.harness import Load, http_process, machine, median_load, sender_token, servers, wrk

BODY = msgspec.json.encode(
    {
        "channel": "email",
        "recipient": "ada@example.com",
        "subject": "Your code",
        "body": "Your sign-in code is 424242. It expires in 10 minutes.",
        "priority": "high",
        "metadata": {"campaign": "sign-in"},
    }
)
TARGETS = {"vs_noop": 0.6, "vs_stock": 15.0, "p99_ms_at_70pct": 50.0}
ROUNDS = 3
CONNECTIONS = 64


def run(quick: bool) -> dict[str, Any]:
    seconds = 3 if quick else 10
    with servers() as settings:
        bench = msgspec.structs.replace(settings, rate_limit_enabled=False)
        token = sender_token(bench)
        headers = {"Authorization": f"Bearer {token}"}
        stock_application(bench, create_table=True).close()
        with http_process(bench, "perf.command_app:from_environment") as url:

            def load(path: str, **extra: Any) -> Load:
                return wrk(f"{url}{path}", seconds=seconds, headers=headers, post=BODY, **extra)

            load("/notifications")  # warm up both workers and the writer's connection
            load("/bench/noop")
            noop, command = [], []
            for _ in range(ROUNDS):
                noop.append(load("/bench/noop"))
                command.append(load("/notifications"))
            stock = load("/bench/stock")
            best_noop, best_command = median_load(noop), median_load(command)
            # 70 % of the maximum: each connection pauses so the offered rate drops.
            target_rate = 0.7 * best_command.requests_per_s
            per_connection_s = CONNECTIONS / target_rate
            pause_ms = max(0.0, per_connection_s * 1000 - best_command.p50_ms)
            at_70 = load("/notifications", pause_ms=round(pause_ms, 2))
    for result in (*noop, *command, stock, at_70):
        if result.non_2xx:
            raise RuntimeError("non-2xx answers during the run")
    return {
        "scenario": "command",
        "value": best_command.requests_per_s,
        "unit": "req/s",
        "baseline": best_noop.requests_per_s,
        "ratio": round(best_command.requests_per_s / best_noop.requests_per_s, 3),
        "stock_eventsourcing_req_s": stock.requests_per_s,
        "vs_stock": round(best_command.requests_per_s / stock.requests_per_s, 1),
        "latency_ms": {"p50": best_command.p50_ms, "p99": best_command.p99_ms},
        "at_70pct": {
            "offered_req_s": round(target_rate, 1),
            "achieved_req_s": at_70.requests_per_s,
            "p50_ms": at_70.p50_ms,
            "p99_ms": at_70.p99_ms,
        },
        "targets": TARGETS,
        "seconds_per_run": seconds,
        "machine": machine(),
    }
