"""Log lines carry timestamp, level, logger, role and request id; production writes JSON."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from infrastructure.log import configure_logging, get_logger
from infrastructure.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_production_writes_one_json_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(
        load_settings(environ={"HERALD_ENV": "production"}, env_file=None), role="api"
    )
    with structlog.contextvars.bound_contextvars(request_id="req-42"):
        get_logger("herald.test").info("something happened", notification="n-1")
        logging.getLogger("some.library").warning("plain stdlib line")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 2
    ours, theirs = lines
    assert ours["event"] == "something happened"
    assert ours["level"] == "info"
    assert ours["logger"] == "herald.test"
    assert ours["request_id"] == "req-42"
    assert ours["role"] == "api"
    assert ours["timestamp"].endswith("Z")
    assert theirs["logger"] == "some.library"
    assert theirs["request_id"] == "req-42"


def test_dev_writes_readable_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load_settings(environ={"HERALD_ENV": "dev"}, env_file=None))
    get_logger("herald.test").info("readable", answer=42)
    line = capsys.readouterr().err.strip()
    assert "readable" in line
    assert "answer=42" in line
    assert not line.startswith("{")


def test_dev_tracebacks_name_the_frames_but_print_no_locals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(load_settings(environ={"HERALD_ENV": "dev"}, env_file=None))
    address = "ada@example.com"
    try:
        _send_to(address)
    except ConnectionError:
        get_logger("herald.test").exception("dispatch failed")
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "in _send_to" in err
    assert "ConnectionError: refused" in err
    assert "ada@example.com" not in err  # a local of both frames


def _send_to(recipient: object) -> None:
    raise ConnectionError("refused")


def test_the_level_setting_filters(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load_settings(environ={"HERALD_LOG_LEVEL": "warning"}, env_file=None))
    get_logger("herald.test").info("hidden")
    get_logger("herald.test").warning("shown")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert "shown" in err


def test_production_lines_carry_no_personal_data(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load_settings(environ={"HERALD_ENV": "production"}, env_file=None))
    log = get_logger("herald.test")
    log.info("sending", recipient="ada@example.com", body="Code QX-4471", notification="n-1")
    log.info("request", path="/recipients/ada%40example.com/inbox", ip="198.51.100.23")
    logging.getLogger("some.library").warning("could not reach +14155550123 for bob@example.org")
    try:
        _refuse("ada@example.com")
    except ValueError:
        log.exception("send failed", meta={"email": "ada@example.com", "kept": "n-1"})
    out = capsys.readouterr().err
    for personal in (
        "ada@example.com",
        "ada%40example.com",
        "QX-4471",  # digits alone could turn up in a timestamp
        "198.51.100.23",
        "+14155550123",
        "bob@example.org",
    ):
        assert personal not in out, personal
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["notification"] == "n-1"  # what is not personal stays
    assert lines[0]["recipient"] == "[redacted]"
    assert lines[1]["path"] == "/recipients/[email]/inbox"
    assert lines[3]["meta"] == {"email": "[redacted]", "kept": "n-1"}


def _refuse(address: str) -> None:
    raise ValueError(f"provider refused {address}")


def test_production_tracebacks_name_the_frames_but_carry_no_locals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(load_settings(environ={"HERALD_ENV": "production"}, env_file=None))
    message = _Message(subject="Your code", body="Code QX-4471")  # no field name to redact
    try:
        _send_to(message)
    except ConnectionError:
        get_logger("herald.test").exception("dispatch failed")
    (line,) = capsys.readouterr().err.splitlines()
    assert "QX-4471" not in line
    (exception,) = json.loads(line)["exception"]
    assert exception["exc_type"] == "ConnectionError"
    assert [frame["name"] for frame in exception["frames"]][-1] == "_send_to"
    assert all("locals" not in frame for frame in exception["frames"])


@dataclasses.dataclass
class _Message:
    subject: str
    body: str


def test_production_samples_info_and_keeps_every_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    environ = {"HERALD_ENV": "production", "HERALD_LOG_SAMPLE_INFO": "0.1"}
    configure_logging(load_settings(environ=environ, env_file=None))
    log = get_logger("herald.test")
    for n in range(2000):
        log.info("routine", n=n)
        log.warning("worth a look", n=n)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    levels = [line["level"] for line in lines]
    assert levels.count("warning") == 2000
    # About 200 of 2,000 info lines; the odds of falling outside 120-280 are below 1e-8.
    assert 120 <= levels.count("info") <= 280


def test_a_sample_rate_out_of_range_is_refused() -> None:
    with pytest.raises(SettingsError, match="HERALD_LOG_SAMPLE_INFO"):
        load_settings(environ={"HERALD_LOG_SAMPLE_INFO": "1.5"}, env_file=None)


def test_a_line_logged_inside_a_span_names_its_trace_and_span(
    capsys: pytest.CaptureFixture[str],
) -> None:
    environ = {"HERALD_ENV": "production", "HERALD_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    configure_logging(load_settings(environ=environ, env_file=None))
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        get_logger("herald.test").info("inside")
    get_logger("herald.test").info("outside")
    inside, outside = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside
