"""The layering contracts, lint, formatting and strict typing hold for the whole tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        ("lint-imports",),
        ("ruff", "check", "."),
        ("ruff", "format", "--check", "."),
        ("mypy",),
    ],
    ids=["import-contracts", "ruff-lint", "ruff-format", "mypy-strict"],
)
def test_the_tree_passes(command: tuple[str, ...]) -> None:
    result = _run(*command)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_import_contracts_can_fail(tmp_path: Path) -> None:
    """A read_api module importing commands breaks the independence contract."""
    offender = ROOT / "read_api" / "_contract_probe.py"
    offender.write_text('"""Probe."""\n\nimport commands  # noqa: F401\n')
    try:
        result = _run("lint-imports")
    finally:
        offender.unlink()
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
