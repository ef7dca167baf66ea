"""compose.yaml runs Herald: a service for every role, each given every setting its `serve`
needs (from the service's environment and the secrets env file the stack expects), every
file it mounts present, and docker-compose accepting the file."""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infrastructure.entrypoints.roles import ROLES, require_role_settings
from infrastructure.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
SECRETS_TEMPLATE = ROOT / "infrastructure" / "deploy" / "secrets.env.example"
# Files the operator provides (a key, a credential): named by a variable, under ./secrets/.
OPERATORS_OWN = re.compile(r"^\$\{[A-Z_]+:-\./secrets/[^}]+\}$")


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def _secrets_env(path: Path) -> Path:
    """The env file an operator fills in from the template, with generated values."""
    values = {
        "HERALD_JWT_SECRET": secrets.token_urlsafe(48),
        "HERALD_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "HERALD_PUBLIC_URL": "http://herald-api:8000",
    }
    names = re.findall(r"^(HERALD_[A-Z_]+)=", SECRETS_TEMPLATE.read_text(), re.MULTILINE)
    assert set(names) <= set(values), f"the test does not fill {set(names) - set(values)}"
    path.write_text("".join(f"{name}={values[name]}\n" for name in names))
    return path


def test_every_role_has_a_service_that_serves_it() -> None:
    served = {
        tuple(service["command"])[-1]: name
        for name, service in _services().items()
        if list(service.get("command", []))[:2] == ["herald", "serve"]
    }
    assert set(served) == set(ROLES), f"roles without a service: {set(ROLES) - set(served)}"


def test_each_role_gets_every_setting_its_serve_requires(tmp_path: Path) -> None:
    env_file = _secrets_env(tmp_path / "herald.env")
    for name, service in _services().items():
        command = list(service.get("command", []))
        if command[:2] != ["herald", "serve"]:
            continue
        assert service.get("env_file") == "${HERALD_ENV_FILE:-herald.env}", name
        environment = {key: str(value) for key, value in service["environment"].items()}
        # The same checks `herald serve ROLE` makes before it starts.
        require_role_settings(command[2], load_settings(environment, env_file=env_file))
    # And without the secrets, the api names what it lacks.
    api = {key: str(value) for key, value in _services()["herald-api"]["environment"].items()}
    with pytest.raises(SettingsError, match=r"HERALD_MASTER_KEY|HERALD_JWT_SECRET"):
        require_role_settings("api", load_settings(api, env_file=None))


def _source(volume: str) -> str:
    """The host side of a bind mount: a path, or a variable with its default."""
    found = re.match(r"^(\$\{[^}]+\}|[^:]+)", volume)
    assert found is not None, volume
    return found.group(1)


def test_every_mounted_file_exists() -> None:
    mounts = [
        (name, _source(str(volume)))
        for name, service in _services().items()
        for volume in service.get("volumes", [])
        if str(volume).startswith(("./", "${"))
    ]
    assert mounts, "no file is mounted"
    for name, source in mounts:
        if OPERATORS_OWN.match(source):
            continue
        assert (ROOT / source).exists(), f"{name} mounts {source}, which is not there"


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    tool = shutil.which("docker-compose")
    assert tool is not None, "docker-compose is needed: apt-get install docker-compose"
    env = {
        **os.environ,
        "HERALD_ENV_FILE": str(_secrets_env(tmp_path / "herald.env")),
        "HERALD_PROMETHEUS_KEY_FILE": str(tmp_path / "key"),
    }
    for profiles in ([], ["--profile", "simulator"]):
        checked = subprocess.run(
            [tool, "--project-directory", str(ROOT), "-f", str(COMPOSE), *profiles, "config", "-q"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
