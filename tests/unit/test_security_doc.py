"""docs/security.md's route table is the live route table."""

from __future__ import annotations

from pathlib import Path

from infrastructure.entrypoints.app import create_app
from infrastructure.entrypoints.policy_table import END, START, markdown_table
from infrastructure.settings import load_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def test_the_documented_policy_table_matches_the_routes() -> None:
    text = DOC.read_text()
    documented = text.split(START, 1)[1].split(END)[0]
    expected = markdown_table(create_app(load_settings(environ={}, env_file=None)))
    assert documented == expected, "refresh it: python -m infrastructure.entrypoints.policy_table"
