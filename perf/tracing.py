"""`python -m perf tracing`: what tracing costs on the two paths every notification takes,
each measured with tracing off, at sampling 0.01 and at 1.0, in the same run, exporting to a
local OTLP/HTTP receiver (`infrastructure/devstack/otlp_receiver.py`). Ratios are against
tracing off; the target is a cost under 5 % (a ratio above 0.95) at 0.01.

- **command**: `perf command`'s POST /notifications under wrk, 64 connections, against three
  api processes (off, 0.01, 1.0), started afresh each round and loaded in turn, each round
  starting one variant further along. A traced variant's ratio is the median of its ratios
  to tracing off in the same round.
- **project**: `perf project`'s projector over a log of notifications requested, dispatched,
  sent and delivered, published by the relay. Each variant has a log of its own as an api at
  that sampling would have recorded it (a sampled trace context on one notification in a
  hundred, or on all; none when off). Each round projects the three logs side by side, from
  empty stores, each in a new process with tracing set as the role would have it. A
  variant's cost is its events per second of its process's CPU; the ratio is the median of
  the per-round ratios of that. Its events per second while all three ran are reported too.
"""

from __future__ import annotations

import multiprocessing
import statistics
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from typing import Any

import msgspec
import psycopg

from infrastructure.devstack.otlp_receiver import Receiver, receiving
from infrastructure.entrypoints.roles import settle_heap
from infrastructure.log import configure_logging
from infrastructure.restoring import clear_redis
from infrastructure.settings import Settings, load_settings
from infrastructure.tracing import configure_tracing, shutdown_tracing
from perf.command import BODY, CONNECTIONS
from perf.harness import (
    Load,
    http_process,
    machine,
    median_load,
    on_new_database,
    sender_token,
    servers,
    wrk,
)
from perf.project import STAGES, _fill, _publish, projector_progress
from projections.notifications.shadow import TABLES

SAMPLING: dict[str, float | None] = {"off": None, "0.01": 0.01, "1.0": 1.0}
TARGET_RATIO_AT_0_01 = 0.95
APP = "perf.command_app:from_environment"
WARM_UP_S = 2
ROUNDS = {True: 5, False: 9}  # command rounds, by --quick
# Projection rounds and notifications per variant's log (four events each), by --quick.
PROJECTION_ROUNDS = {True: (7, 10_000), False: (11, 25_000)}
START_S = 300  # how long a projection waits for the others to be ready to start
MIN_BATCHES = 3  # batches each projection lands side by side with the others, at least
PROJECTION_TABLES = (*TABLES, "projection_offsets")


def _traced(settings: Settings, ratio: float | None, receiver: Receiver) -> Settings:
    if ratio is None:
        return msgspec.structs.replace(settings, otlp_endpoint=None)
    return msgspec.structs.replace(
        settings, otlp_endpoint=receiver.endpoint, trace_sample_ratio=ratio
    )


def _rotated(names: list[str], turn: int) -> list[str]:
    """The variants in the order round `turn` runs them: each round starts one further along,
    so that no variant always runs first, on a cold machine, or last."""
    return names[turn % len(names) :] + names[: turn % len(names)]


def _per_round(rates: dict[str, list[float]]) -> dict[str, list[float]]:
    """Each traced variant's rate in each round as a ratio to tracing off's in that round."""
    return {
        name: [round(rate / off, 3) for rate, off in zip(values, rates["off"], strict=True)]
        for name, values in rates.items()
        if name != "off"
    }


def _load(url: str, seconds: int, headers: dict[str, str]) -> Load:
    return wrk(
        f"{url}/notifications",
        seconds=seconds,
        headers=headers,
        post=BODY,
        connections=CONNECTIONS,
    )


def _command(settings: Settings, receiver: Receiver, seconds: int, rounds: int) -> dict[str, Any]:
    bench = msgspec.structs.replace(settings, rate_limit_enabled=False)
    headers = {"Authorization": f"Bearer {sender_token(bench)}"}
    names = list(SAMPLING)
    runs: dict[str, list[Load]] = {name: [] for name in names}
    for turn in range(rounds):
        # Fresh api processes every round: a process's own speed (its memory layout, its
        # hash seed) moves its rate by a few per cent, and would favour one variant in every
        # round. Each round loads every variant once.
        with ExitStack() as stack:
            urls = {
                name: stack.enter_context(
                    http_process(_traced(bench, SAMPLING[name], receiver), APP)
                )
                for name in names
            }
            for name in names:
                _load(urls[name], WARM_UP_S, headers)  # both workers, the writer's connection
            for name in _rotated(names, turn):
                runs[name].append(_load(urls[name], seconds, headers))
    for loads in runs.values():
        if any(run.non_2xx for run in loads):
            raise RuntimeError("non-2xx answers during the run")
    per_round = _per_round(
        {name: [run.requests_per_s for run in loads] for name, loads in runs.items()}
    )
    return {
        "req_s": {name: median_load(loads).requests_per_s for name, loads in runs.items()},
        "p99_ms": {name: median_load(loads).p99_ms for name, loads in runs.items()},
        "ratio": {name: statistics.median(ratios) for name, ratios in per_round.items()},
        "ratio_per_round": per_round,
        "spans_exported": len(receiver.spans),
    }


def _traceparents(ratio: float | None) -> Callable[[int], str | None] | None:
    """The trace context an api at this sampling would have recorded the i-th request in:
    a sampled one for the requests it chose, none for the others (they ran untraced)."""
    if ratio is None:
        return None
    every = round(1 / ratio)

    def traceparent(i: int) -> str | None:
        if i % every:
            return None
        return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    return traceparent


def _progress_in_child(
    environ: dict[str, str], events: int, start: Any
) -> list[tuple[float, float, int]]:
    """One variant's projection in a process of its own, traced as `herald serve projector`
    is, starting with the other variants' at the barrier `start`."""
    settings = load_settings(environ=environ, env_file=None)
    configure_logging(msgspec.structs.replace(settings, log_level="warning"))
    configure_tracing(settings, "projector")
    try:
        _, progress = projector_progress(settings, events, ready=lambda: _ready(start))
    finally:
        shutdown_tracing()
    return progress


def _ready(start: Any) -> None:
    settle_heap()  # as the role does once started
    start.wait(START_S)


def _side_by_side(
    progress: dict[str, list[tuple[float, float, int]]],
) -> dict[str, tuple[float, float]]:
    """Each projection's events per second while all of them ran (between the first and the
    last of its batches that landed after every projection had landed one and before any
    had finished), and its events per second of its process's CPU, first batch to last."""
    start = max(batches[0][0] for batches in progress.values())
    end = min(batches[-1][0] for batches in progress.values())
    rates = {}
    for name, batches in progress.items():
        inside = [batch for batch in batches if start <= batch[0] <= end]
        if len(inside) < MIN_BATCHES:
            raise RuntimeError(f"{name}: {len(inside)} batches landed side by side; log too short")
        (first_at, _, first), (last_at, _, last) = inside[0], inside[-1]
        (_, first_cpu, first_all), (_, last_cpu, last_all) = batches[0], batches[-1]
        rates[name] = (
            (last - first) / (last_at - first_at),
            (last_all - first_all) / (last_cpu - first_cpu),
        )
    return rates


def _forget_projection(settings: Settings) -> None:
    """Empty the notifications projection's stores, as on a new database and namespace, so
    that the next projection of the same log writes every row and key again."""
    assert settings.database_url is not None  # noqa: S101 - set by on_new_database
    assert settings.redis_url is not None  # noqa: S101 - servers() set it
    with psycopg.connect(settings.database_url.reveal(), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(PROJECTION_TABLES)}")
    clear_redis(settings.redis_url.reveal(), settings.namespace, progress=lambda _: None)


def _project(settings: Settings, receiver: Receiver, rounds: int, count: int) -> dict[str, Any]:
    names = list(SAMPLING)
    logs: dict[str, tuple[Settings, int]] = {}
    for index, name in enumerate(names):
        ratio = SAMPLING[name]
        own = _traced(on_new_database(settings, f"tracing{index}"), ratio, receiver)
        assert own.database_url is not None  # noqa: S101 - set by on_new_database
        events = _fill(own.database_url.reveal(), count, traceparent=_traceparents(ratio))
        _publish(msgspec.structs.replace(own, otlp_endpoint=None), events)
        logs[name] = (own, events)
    rates: dict[str, list[float]] = {name: [] for name in names}
    per_cpu_s: dict[str, list[float]] = {name: [] for name in names}
    before = len(receiver.spans)
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager:
        for _ in range(rounds):
            # Every variant at once, each in a new process: the machine's speed moves by up
            # to a third within seconds, and moves them all alike.
            for own, _ in logs.values():
                _forget_projection(own)
            start = manager.Barrier(len(logs))
            with ProcessPoolExecutor(max_workers=len(logs), mp_context=spawn) as children:
                futures = {
                    name: children.submit(_progress_in_child, own.to_environ(), events, start)
                    for name, (own, events) in logs.items()
                }
                progress = {name: future.result() for name, future in futures.items()}
            for name, (rate, per_cpu) in _side_by_side(progress).items():
                rates[name].append(rate)
                per_cpu_s[name].append(per_cpu)
    per_round = _per_round(per_cpu_s)
    return {
        "events_per_s": {name: round(statistics.median(r), 1) for name, r in rates.items()},
        "events_per_cpu_s": {name: round(statistics.median(r), 1) for name, r in per_cpu_s.items()},
        "wall_ratio_per_round": _per_round(rates),
        "ratio": {name: statistics.median(ratios) for name, ratios in per_round.items()},
        "ratio_per_round": per_round,
        "spans_exported": len(receiver.spans) - before,
        "events_per_variant": count * STAGES,
    }


def run(quick: bool) -> dict[str, Any]:
    seconds = 3 if quick else 10
    with servers() as settings, receiving() as receiver:
        command = _command(settings, receiver, seconds, ROUNDS[quick])
        project = _project(settings, receiver, *PROJECTION_ROUNDS[quick])
    worst = min(command["ratio"]["0.01"], project["ratio"]["0.01"])
    return {
        "scenario": "tracing",
        "value": command["req_s"]["0.01"],
        "unit": "req/s",
        "baseline": command["req_s"]["off"],
        "ratio": command["ratio"]["0.01"],
        "command": command,
        "project": project,
        "worst_ratio_at_0_01": worst,
        "target_ratio_at_0_01": TARGET_RATIO_AT_0_01,
        "rounds": {"command": ROUNDS[quick], "project": PROJECTION_ROUNDS[quick][0]},
        "seconds_per_run": seconds,
        "machine": machine(),
    }
