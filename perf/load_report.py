"""What a load scenario observes: locust's per-endpoint figures, the pipeline's lags read
from the roles' /metrics, and the roles' memory and CPU."""

from __future__ import annotations

import csv
import dataclasses
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from infrastructure.devstack.supervisor import Supervisor
from perf.harness import ROOT, BenchmarkError
from perf.load_shapes import MIX

RSS_EVERY_S = 60
_LAGS = {
    "herald_relay_lag_events": "relay lag (events)",
    "herald_relay_lag_seconds": "relay lag (s)",
    "herald_projection_lag_events": "projector lag (events)",
    "herald_projection_lag_seconds": "projector lag (s)",
    "herald_dispatch_queue_depth": "dispatch queue (rows)",
    "herald_dispatch_oldest_due_age_seconds": "oldest due row (s)",
}


@dataclasses.dataclass
class Endpoint:
    name: str
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    per_s: float

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def run_locust(
    url: str, env: dict[str, str], prefix: Path, user_class: str, seconds: int
) -> list[Endpoint]:
    """Run locust headless until its shape ends; its per-endpoint figures."""
    argv = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "perf" / "locustfile.py"),
        "--headless", "--only-summary", "--host", url, "--csv", str(prefix),
        "--csv-full-history", "--loglevel", "WARNING", user_class,
    ]  # fmt: skip
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=seconds + 120, check=False
    )
    stats = Path(f"{prefix}_stats.csv")
    if not stats.exists():
        raise BenchmarkError(f"locust wrote no statistics: {done.stderr[-2000:]}")
    with stats.open() as f:
        return [
            Endpoint(
                name=f"{row['Type']} {row['Name']}".strip(),
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                p50_ms=float(row["50%"] if row["50%"] != "N/A" else 0),
                p95_ms=float(row["95%"] if row["95%"] != "N/A" else 0),
                p99_ms=float(row["99%"] if row["99%"] != "N/A" else 0),
                per_s=round(float(row["Requests/s"]), 1),
            )
            for row in csv.DictReader(f)
        ]


def stages(prefix: Path) -> list[dict[str, Any]]:
    """Per user count: the highest rate and the worst p95 locust saw over its 10-s window."""
    seen: dict[int, dict[str, float]] = {}
    with Path(f"{prefix}_stats_history.csv").open() as f:
        for row in csv.DictReader(f):
            if row["Name"] != "Aggregated" or row["95%"] == "N/A":
                continue
            users = int(row["User Count"])
            stage = seen.setdefault(users, {"req_s": 0.0, "p95_ms": 0.0})
            stage["req_s"] = max(stage["req_s"], float(row["Requests/s"]))
            stage["p95_ms"] = max(stage["p95_ms"], float(row["95%"]))
    return [{"users": users, **figures} for users, figures in sorted(seen.items()) if users]


class LagWatch(threading.Thread):
    """Reads the roles' /metrics every second, keeping each lag's highest and latest value,
    and each role's memory every RSS_EVERY_S, so that a trend shows rather than two points."""

    def __init__(self, ports: dict[str, int], supervisor: Supervisor) -> None:
        super().__init__(daemon=True)
        self.urls = [f"http://127.0.0.1:{port}/metrics" for port in ports.values()]
        self.highest: dict[str, float] = defaultdict(float)
        self.latest: dict[str, float] = {}
        self.halt = threading.Event()
        self.supervisor = supervisor
        self.rss: list[tuple[int, dict[str, float]]] = []  # (seconds into the run, MB by role)

    def read(self) -> dict[str, float]:
        now: dict[str, float] = defaultdict(float)
        for url in self.urls:
            text = httpx.get(url, timeout=5).text
            for family in text_string_to_metric_families(text):
                if family.name not in _LAGS:
                    continue
                for sample in family.samples:
                    label = _LAGS[family.name]
                    # Summed over lanes; for the lags, the slowest projection counts.
                    if family.name == "herald_dispatch_queue_depth":
                        now[label] += sample.value
                    else:
                        now[label] = max(now[label], sample.value)
        for label, value in now.items():
            self.highest[label] = max(self.highest[label], value)
        self.latest = dict(now)
        return self.latest

    def run(self) -> None:
        began = time.monotonic()
        while not self.halt.wait(1.0):
            elapsed = time.monotonic() - began
            if elapsed >= RSS_EVERY_S * len(self.rss):
                self.rss.append((round(elapsed), rss_mb(self.supervisor)))
            try:
                self.read()
            except httpx.HTTPError:
                continue  # a role busy past 5 s shows up in the lags once it answers


def rss_mb(supervisor: Supervisor) -> dict[str, float]:
    """Each role's resident memory, with its worker processes (the api's granian workers)."""
    out = {}
    for name, pid in supervisor.pids.items():
        process = psutil.Process(pid)
        tree = [process, *process.children(recursive=True)]
        out[name] = round(sum(p.memory_info().rss for p in tree) / 2**20, 1)
    return out


def cpu_s(supervisor: Supervisor) -> dict[str, float]:
    """Each role's CPU seconds so far (user and system), with its worker processes."""
    out = {}
    for name, pid in supervisor.pids.items():
        process = psutil.Process(pid)
        times = [p.cpu_times() for p in (process, *process.children(recursive=True))]
        out[name] = sum(t.user + t.system for t in times)
    return out


def print_report(
    name: str, endpoints: list[Endpoint], watch: LagWatch, thresholds: dict[str, bool]
) -> None:
    print(f"\nscenario {name}: per endpoint")
    print(f"  {'endpoint':48} {'requests':>8} {'req/s':>7} {'p50':>6} {'p95':>6} {'p99':>6} err%")
    for e in endpoints:
        print(
            f"  {e.name:48} {e.requests:8d} {e.per_s:7.1f} {e.p50_ms:6.0f} {e.p95_ms:6.0f}"
            f" {e.p99_ms:6.0f} {e.error_rate:6.2%}"
        )
    print("  pipeline, highest seen: " + ", ".join(f"{k} {v:g}" for k, v in watch.highest.items()))
    for label, held in thresholds.items():
        print(f"  {'pass' if held else 'FAIL'}  {label}")
    shares = {kind: weight / sum(MIX.values()) for kind, weight in MIX.items()}
    print("  mix: " + ", ".join(f"{kind} {share:.0%}" for kind, share in shares.items()))
