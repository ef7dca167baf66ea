"""`python -m perf SCENARIO [--quick]`: run one benchmark; its last output line is JSON."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from perf import (
    archive,
    auth,
    command,
    dispatch,
    e2e,
    export,
    ingest,
    project,
    read,
    relay,
    scenario,
    tracing,
)
from perf.harness import BenchmarkError, emit
from perf.load_shapes import SHAPES

SCENARIOS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "archive": archive.run,
    "auth": auth.run,
    "command": command.run,
    "dispatch": dispatch.run,
    "e2e": e2e.run,
    "export": export.run,
    "ingest": ingest.run,
    "project": project.run,
    "read": read.run,
    "relay": relay.run,
    "tracing": tracing.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m perf", description=__doc__)
    parser.add_argument("scenario", choices=[*sorted(SCENARIOS), "scenario"])
    parser.add_argument(
        "shape",
        nargs="?",
        choices=list(SHAPES),
        help="for `scenario`: which load scenario (docs/performance.md)",
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke check")
    parser.add_argument(
        "--minutes", type=int, help="for `scenario soak`: how long to hold the load (30)"
    )
    args = parser.parse_args()
    if (args.scenario == "scenario") != (args.shape is not None):
        parser.error(f"a load shape ({'|'.join(SHAPES)}) goes with `scenario`, and only with it")
    if args.minutes is not None and (args.shape != "soak" or args.quick):
        parser.error("--minutes goes with `scenario soak`, without --quick")
    if args.minutes is not None and args.minutes < 1:
        parser.error(f"--minutes {args.minutes}: must be at least 1")
    try:
        if args.shape is not None:
            result = scenario.run(args.shape, args.quick, args.minutes)
        else:
            result = SCENARIOS[args.scenario](args.quick)
    except BenchmarkError as exc:
        print(f"perf: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    emit(result)
    if result.get("passed") is False:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
