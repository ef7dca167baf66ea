"""compose.yaml sets only real Herald settings, with values that parse, on a healthy KRaft stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infrastructure.settings import describe, load_settings

ROOT = Path(__file__).resolve().parents[2]


def _services() -> dict[str, dict[str, Any]]:
    # safe_load resolves the `<<` merge keys, so each service is seen as Compose sees it.
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):  # Compose also accepts ["KEY=value", ...]
        raw = dict(item.split("=", 1) for item in raw)
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def _herald_environment(service: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in _environment(service).items() if k.startswith("HERALD_")}


def _image_service(prefix: str) -> dict[str, Any]:
    matches = [s for s in _services().values() if str(s.get("image", "")).startswith(prefix)]
    assert len(matches) == 1, f"expected one service with an image {prefix}*, got {len(matches)}"
    return matches[0]


HERALD_SERVICES = sorted(name for name, s in _services().items() if _herald_environment(s))


def test_compose_runs_herald_init_and_the_api() -> None:
    assert {"herald-init", "herald-api"} <= set(HERALD_SERVICES)


@pytest.mark.parametrize("name", HERALD_SERVICES)
def test_every_herald_variable_names_a_real_setting(name: str) -> None:
    known = {variable for variable, *_ in describe()}
    assert set(_herald_environment(_services()[name])) - known == set()


@pytest.mark.parametrize("name", HERALD_SERVICES)
def test_every_services_herald_variables_parse_as_settings(name: str) -> None:
    load_settings(environ=_herald_environment(_services()[name]), env_file=None)


def test_postgres_is_version_16_or_later() -> None:
    tag = _image_service("postgres:")["image"].split(":", 1)[1]
    assert int(tag.split(".")[0].split("-")[0]) >= 16


def test_redis_is_version_7() -> None:
    assert _image_service("redis:")["image"].split(":", 1)[1].split(".")[0].startswith("7")


def test_kafka_is_the_apache_image_in_kraft_mode() -> None:
    kafka = _image_service("apache/kafka")
    assert "controller" in _environment(kafka)["KAFKA_PROCESS_ROLES"].split(",")


def test_every_service_but_herald_init_has_a_healthcheck() -> None:
    missing = [n for n, s in _services().items() if n != "herald-init" and "healthcheck" not in s]
    assert missing == []


def test_the_api_starts_after_init_succeeds_and_the_servers_are_healthy() -> None:
    depends_on = _services()["herald-api"]["depends_on"]
    assert depends_on["herald-init"] == {"condition": "service_completed_successfully"}
    for server in ("postgres", "redis", "kafka"):
        assert depends_on[server] == {"condition": "service_healthy"}


def test_every_build_names_a_dockerfile_that_exists() -> None:
    builds = [s["build"] for s in _services().values() if "build" in s]
    assert builds
    for build in builds:
        assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()
