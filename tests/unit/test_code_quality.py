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


@pytest.mark.parametrize(
    ("contract", "probe", "imports"),
    [
        ("independent-sides", "read_api/_contract_probe.py", "commands"),
        ("composition-root", "infrastructure/web/_contract_probe.py", "read_api"),
        ("composition-root", "infrastructure/eventstore/_contract_probe.py", "projections"),
        (
            "infrastructure-floors",
            "infrastructure/settings/_contract_probe.py",
            "infrastructure.web",
        ),
        (
            "infrastructure-floors",
            "infrastructure/web/_contract_probe.py",
            "infrastructure.entrypoints",
        ),
        ("pure-domain", "domain/_contract_probe.py", "infrastructure"),
    ],
    ids=[
        "read_api-imports-commands",
        "web-imports-read_api",
        "eventstore-imports-projections",
        "settings-imports-web",
        "web-imports-the-composition-root",
        "domain-imports-infrastructure",
    ],
)
def test_each_import_contract_can_fail(contract: str, probe: str, imports: str) -> None:
    """A module that breaks the contract makes lint-imports fail, naming that contract."""
    offender = ROOT / probe
    offender.write_text(f'"""Probe."""\n\nimport {imports}  # noqa: F401\n')
    try:
        whole = _run("lint-imports")
        alone = _run("lint-imports", "--contract", contract)
    finally:
        offender.unlink()
    assert whole.returncode != 0
    assert alone.returncode != 0, alone.stdout
    assert "BROKEN" in alone.stdout
    assert "1 broken" in alone.stdout
