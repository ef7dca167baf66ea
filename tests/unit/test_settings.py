"""Settings come from HERALD_* variables and .env, and bad values fail with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrastructure.settings import (
    Secret,
    SettingsError,
    describe,
    env_example,
    load_settings,
    redact_url,
)

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_bind_the_api_to_localhost_port_8000() -> None:
    settings = load_settings(environ={}, env_file=None)
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8000)
    assert settings.database_url is None
    assert not settings.json_logs


def test_http_port_is_read_from_the_environment() -> None:
    assert load_settings(environ={"HERALD_HTTP_PORT": "9123"}, env_file=None).http_port == 9123


@pytest.mark.parametrize("value", ["abc", "0", "70000", "-1", "8000.5"])
def test_a_bad_port_names_the_variable_and_gives_an_example(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"HERALD_HTTP_PORT": value}, env_file=None)
    message = str(caught.value)
    assert message.startswith("HERALD_HTTP_PORT ")
    assert repr(value) in message
    assert "example: HERALD_HTTP_PORT=8000" in message
    assert "\n" not in message


def test_an_unknown_herald_variable_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(SettingsError, match="did you mean HERALD_HTTP_PORT"):
        load_settings(environ={"HERALD_HTTP_PROT": "1"}, env_file=None)


def test_other_variables_are_ignored() -> None:
    load_settings(environ={"PATH": "/bin", "HERALDRY": "x"}, env_file=None)


def test_an_empty_variable_means_the_default() -> None:
    assert load_settings(environ={"HERALD_HTTP_PORT": ""}, env_file=None).http_port == 8000


def test_a_secret_value_never_appears_in_the_error() -> None:
    secret = "postgresql-but-not://user:hunter2@db/herald"
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"HERALD_DATABASE_URL": secret}, env_file=None)
    assert "hunter2" not in str(caught.value)
    assert "HERALD_DATABASE_URL" in str(caught.value)


def test_secrets_are_masked_in_repr_and_str() -> None:
    settings = load_settings(
        environ={"HERALD_REDIS_URL": "redis://:hunter2@cache:6379/0"}, env_file=None
    )
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.redis_url)
    assert settings.redis_url == Secret("redis://:hunter2@cache:6379/0")


def test_redacted_urls_hide_only_the_password() -> None:
    assert redact_url("postgresql://herald:pw@db:5432/x") == "postgresql://herald:***@db:5432/x"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"


def test_the_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("HERALD_HTTP_PORT=9001\nHERALD_LOG_LEVEL=debug\n")
    settings = load_settings(environ={"HERALD_HTTP_PORT": "9002"}, env_file=env_file)
    assert (settings.http_port, settings.log_level) == (9002, "debug")


def test_cross_field_rules_are_checked() -> None:
    with pytest.raises(SettingsError, match="HERALD_DB_POOL_MIN_SIZE"):
        load_settings(
            environ={"HERALD_DB_POOL_MIN_SIZE": "20", "HERALD_DB_POOL_MAX_SIZE": "5"},
            env_file=None,
        )


def test_kafka_bootstrap_must_be_host_port_pairs() -> None:
    ok = load_settings(environ={"HERALD_KAFKA_BOOTSTRAP": "k1:9092,k2:9092"}, env_file=None)
    assert ok.kafka_bootstrap == "k1:9092,k2:9092"
    with pytest.raises(SettingsError, match="HERALD_KAFKA_BOOTSTRAP"):
        load_settings(environ={"HERALD_KAFKA_BOOTSTRAP": "kafka"}, env_file=None)


def test_production_logs_json_unless_told_otherwise() -> None:
    assert load_settings(environ={"HERALD_ENV": "production"}, env_file=None).json_logs
    console = load_settings(
        environ={"HERALD_ENV": "production", "HERALD_LOG_FORMAT": "console"}, env_file=None
    )
    assert not console.json_logs


def test_env_example_documents_every_setting_as_the_code_describes_it() -> None:
    assert (ROOT / ".env.example").read_text() == env_example()
    assert all(f"# {variable}=" in env_example() for variable, *_ in describe())


# Settings that are only valid together: each one's example is loaded with its partner's.
PAIRS = {
    "HERALD_TWILIO_ACCOUNT_SID": "HERALD_TWILIO_AUTH_TOKEN",
    "HERALD_TWILIO_AUTH_TOKEN": "HERALD_TWILIO_ACCOUNT_SID",
}


def test_every_example_value_is_valid() -> None:
    examples = {variable: example for variable, _, example, _ in describe()}
    for variable, example in examples.items():
        environ = {variable: example}
        if variable in PAIRS:
            environ[PAIRS[variable]] = examples[PAIRS[variable]]
        load_settings(environ=environ, env_file=None)


def test_half_of_the_twilio_credentials_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"^HERALD_TWILIO_AUTH_TOKEN is needed"):
        load_settings(
            environ={"HERALD_TWILIO_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef"},
            env_file=None,
        )


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("HERALD_DISPATCH_MAX_ATTEMPTS", "critical=8,high=6,normal=5", "low missing"),
        ("HERALD_PROVIDER_CONCURRENCY", "sendgrid=1,twilio=1,fcm=0", "fcm must be at least 1"),
        ("HERALD_PROVIDER_RATE_LIMITS", "ses=1", "'ses' is not one of sendgrid, twilio, fcm"),
        ("HERALD_DISPATCH_LEASE_S", "5", "must exceed HERALD_PROVIDER_TIMEOUT_MS"),
        ("HERALD_DISPATCH_SWEEP_S", "5", "must exceed HERALD_PROVIDER_TIMEOUT_MS"),
    ],
)
def test_dispatch_settings_name_what_is_wrong(variable: str, value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={variable: value}, env_file=None)
    assert str(caught.value).startswith(variable)
    assert problem in str(caught.value)


@given(
    port=st.integers(1, 65535),
    workers=st.integers(1, 64),
    level=st.sampled_from(["debug", "info", "warning", "error"]),
    password=st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20),
)
def test_settings_survive_the_round_trip_through_child_environments(
    port: int, workers: int, level: str, password: str
) -> None:
    original = load_settings(
        environ={
            "HERALD_HTTP_PORT": str(port),
            "HERALD_HTTP_WORKERS": str(workers),
            "HERALD_LOG_LEVEL": level,
            "HERALD_DATABASE_URL": f"postgresql://u:{password}@db/herald",
        },
        env_file=None,
    )
    assert load_settings(environ=original.to_environ(), env_file=None) == original
