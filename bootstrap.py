#!/usr/bin/env python3
"""Set up `.venv` from the lock file, then run Herald or its test suite.

    python3 bootstrap.py dev     # install, then `herald dev`
    python3 bootstrap.py test    # install, then the whole test suite (extra args go to pytest)

Needs only python3 (3.11 or newer). Installation goes through uv, pinned below, which
installs exactly what uv.lock records.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
UV_VERSION = "0.13.9"
MIN_PYTHON = (3, 11)


def run(*argv: str | Path, env: dict[str, str] | None = None) -> None:
    result = subprocess.run([str(a) for a in argv], cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"bootstrap: `{' '.join(str(a) for a in argv)}` failed ({result.returncode})")


def ensure_environment() -> None:
    if sys.version_info < MIN_PYTHON:
        sys.exit(
            f"bootstrap: Python {'.'.join(map(str, MIN_PYTHON))}+ is needed, this is "
            f"{sys.version.split()[0]}"
        )
    if not (BIN / "python").exists():
        print("bootstrap: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not (BIN / "uv").exists():
        run(BIN / "python", "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}")
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(VENV), "UV_PYTHON_DOWNLOADS": "never"}
    # --inexact keeps pip and uv themselves, which the lock does not list.
    run(BIN / "uv", "sync", "--frozen", "--inexact", "--quiet", env=env)


def main() -> None:
    commands = {"dev": [BIN / "herald", "dev"], "test": [BIN / "python", "-m", "pytest"]}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:  # noqa: PLR2004 - argv[0] is us
        sys.exit("usage: python3 bootstrap.py {dev|test} [args...]")
    ensure_environment()
    argv = [str(a) for a in commands[sys.argv[1]]] + sys.argv[2:]
    os.execv(argv[0], argv)  # noqa: S606 - replace this process with the command asked for


if __name__ == "__main__":
    main()
