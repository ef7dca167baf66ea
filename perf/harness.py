"""What every benchmark needs: servers (embedded unless configured), an HTTP process, wrk,
and the one-JSON-object last line."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from infrastructure.devstack import prepare_servers, start_servers
from infrastructure.devstack.dev import with_dev_secrets
from infrastructure.devstack.servers import ProcessSpec, free_port, http_ok
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.log import configure_logging
from infrastructure.settings import Settings, load_settings
from infrastructure.settings.values import Secret

ROOT = Path(__file__).resolve().parents[1]


class BenchmarkError(Exception):
    """A benchmark cannot run here; the message says what is missing."""


@contextmanager
def servers() -> Iterator[Settings]:
    """Settings with answering servers: the configured ones, or embedded ones started here."""
    configured = load_settings(env_file=None)
    configure_logging(msgspec.structs.replace(configured, log_level="warning"))
    with tempfile.TemporaryDirectory(prefix="herald-perf-") as scratch, Supervisor() as supervisor:
        data_dir = Path(scratch)
        settings = with_dev_secrets(start_servers(configured, supervisor, data_dir), data_dir)
        prepare_servers(settings)
        yield settings


def on_new_database(settings: Settings, label: str) -> Settings:
    """Settings for a new, migrated database on the same server, with topics of its own: a
    second log that the first one's relay and projector never see."""
    if settings.database_url is None:
        raise BenchmarkError("no database server")
    server = settings.database_url.reveal()
    name = f"perf_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(make_conninfo(server, dbname="postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    own = msgspec.structs.replace(
        settings,
        database_url=Secret(urlunsplit(urlsplit(server)._replace(path=f"/{name}"))),
        namespace=f"{settings.namespace}-{label}",
    )
    prepare_servers(own)
    return own


@contextmanager
def http_process(settings: Settings, target: str, workers: int = 2) -> Iterator[str]:
    """Serve app factory `target` with granian; yields its base URL."""
    port = free_port()
    served = msgspec.structs.replace(
        settings, http_port=port, http_workers=workers, log_level="warning"
    )
    url = f"http://127.0.0.1:{port}"
    spec = ProcessSpec(
        name="http",
        argv=[sys.executable, "-m", "perf.serve", target],
        env={**served.to_environ(), "PYTHONPATH": str(ROOT)},
        ready=lambda: http_ok(f"{url}/health/liveness"),
    )
    with Supervisor() as supervisor:
        supervisor.start(spec, ready_timeout=30)
        yield url


@dataclass(frozen=True)
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int = 64,
    headers: dict[str, str] | None = None,
    post: bytes | None = None,
    pause_ms: float | None = None,
    script: Path | None = None,
) -> Load:
    """Drive `url` with wrk (Debian package `wrk`) and parse its report.

    `post` sends that JSON body with POST. `pause_ms` makes each connection wait that long
    after each answer, which caps the rate near connections * 1000 / (pause + latency):
    wrk has no fixed-rate mode, and wrk2 is not packaged.
    """
    binary = shutil.which("wrk")
    if binary is None:
        raise BenchmarkError("wrk is needed for HTTP benchmarks: apt-get install wrk")
    argv = [binary, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    with tempfile.TemporaryDirectory() as scratch:
        if post is not None or pause_ms is not None:
            lines = []
            if post is not None:
                (Path(scratch) / "body.json").write_bytes(post)
                lines += [
                    'wrk.method = "POST"',
                    'wrk.headers["Content-Type"] = "application/json"',
                    f'local f = io.open("{scratch}/body.json", "rb")',
                    "wrk.body = f:read('*a')",
                    "f:close()",
                ]
            if pause_ms is not None:
                lines.append(f"function delay() return {pause_ms} end")
            script = Path(scratch) / "load.lua"
            script.write_text("\n".join(lines) + "\n")
        if script is not None:
            argv += ["-s", str(script)]
        out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rps = float(_find(r"Requests/sec:\s+([\d.]+)", out))
    non_2xx = int(_find(r"Non-2xx or 3xx responses:\s+(\d+)", out, "0"))
    return Load(rps, _latency(out, "50%"), _latency(out, "99%"), non_2xx)


def _find(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text)
    if match is None:
        if default is not None:
            return default
        raise BenchmarkError(f"unexpected wrk output: {text[-400:]}")
    return match.group(1)


def _latency(out: str, percentile: str) -> float:
    match = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if match is None:
        raise BenchmarkError(f"no {percentile} latency in wrk output")
    return round(float(match.group(1)) * _UNIT_MS[match.group(2)], 3)


def median_load(runs: list[Load]) -> Load:
    return Load(
        requests_per_s=round(statistics.median(r.requests_per_s for r in runs), 1),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        non_2xx=sum(r.non_2xx for r in runs),
    )


def sender_token(settings: Settings) -> str:
    """An access token for a `sender` of tenant `bench`, as a service client would hold."""
    from domain.identity.roles import Role  # noqa: PLC0415

    return token_for(settings, Role.SENDER)


def token_for(settings: Settings, *roles: Any) -> str:
    """An access token with `roles` in tenant `bench`."""
    from infrastructure.auth.tokens import TokenService  # noqa: PLC0415

    return (
        TokenService(settings)
        .issue(
            "access",
            subject=str(uuid.uuid4()),
            tenant_id="bench",
            family="bench",
            roles=frozenset(roles),
        )
        .token
    )


def wrk_paths(url: str, paths: list[str], *, seconds: int, headers: dict[str, str]) -> Load:
    """wrk GETs cycling through `paths` (each thread from its own offset)."""
    with tempfile.TemporaryDirectory() as scratch:
        listing = Path(scratch) / "paths.txt"
        listing.write_text("\n".join(paths) + "\n")
        script = Path(scratch) / "paths.lua"
        script.write_text(
            "\n".join(
                [
                    "local paths = {}",
                    f'for line in io.lines("{listing}") do paths[#paths + 1] = line end',
                    "local n = 0",
                    "function setup(thread) n = n + 1; thread:set('offset', n * 7919) end",
                    "function init(args) i = offset end",
                    "function request()",
                    "  i = i + 1",
                    "  return wrk.format('GET', paths[(i % #paths) + 1])",
                    "end",
                ]
            )
            + "\n"
        )
        return wrk(url, seconds=seconds, headers=headers, script=script)


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at `fraction` of the sorted samples (0.99: the p99), rounded to 0.01."""
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0]}


def emit(result: dict[str, Any]) -> None:
    """Print the result as the last line: one JSON object."""
    print(json.dumps(result, sort_keys=True), flush=True)
