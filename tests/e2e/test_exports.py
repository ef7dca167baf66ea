"""Exports over HTTP and from the command line: consistent at one log position (rows changed
since are rewound), the same bytes when asked again at it, in four formats, within the
caller's tenant, audited, and as jobs with manifests that expire."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyarrow.parquet as pq
import pytest

from commands.exports.jobs import ExportJobs, expire_exports
from domain.identity.roles import Role
from infrastructure.eventstore import catalog
from infrastructure.eventstore.store import EventStore
from infrastructure.settings import Settings
from projections.exports.exporter import open_export
from tests.e2e.conftest import Account, AccountFactory
from tests.kafka_helpers import eventually

EMAIL = {"channel": "email", "recipient": "ada@example.com", "subject": "s", "body": "b"}
EXPORT = "/data-pipeline/export"


def _send(api_url: str, sender: Account, count: int) -> list[dict[str, Any]]:
    body = {"notifications": [EMAIL] * count}
    response = httpx.post(f"{api_url}/notifications/batch", json=body, headers=sender.headers)
    assert response.status_code == 202, response.text
    made = response.json()
    settled = httpx.get(
        f"{api_url}/notifications",
        params={"min_position": made["last_position"]},
        headers=sender.headers,
        timeout=30,
    )
    assert settled.status_code == 200, settled.text
    return [{"id": i} for i in made["ids"]]


def _export(
    api_url: str, who: Account, kind: str = "notifications", **params: Any
) -> httpx.Response:
    return httpx.get(f"{api_url}{EXPORT}/{kind}", params=params, headers=who.headers, timeout=60)


def _csv(response: httpx.Response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.text)))


@pytest.fixture
def tenant_with_data(
    api_url: str, account: AccountFactory, projector: None
) -> tuple[Account, Account, list[dict[str, Any]]]:
    admin = account(Role.ADMIN)
    sender = account(Role.SENDER, tenant=admin.tenant)
    return admin, sender, _send(api_url, sender, 30)


def test_an_export_is_the_read_model_at_its_position_and_the_same_bytes_again(
    api_url: str, tenant_with_data: tuple[Account, Account, list[dict[str, Any]]]
) -> None:
    admin, sender, made = tenant_with_data
    first = _export(api_url, admin, format="csv")
    assert first.status_code == 200, first.text
    assert first.headers.get_list("content-type") == ["text/csv; charset=utf-8"]
    position = int(first.headers["herald-position"])
    rows = _csv(first)
    assert {r["id"] for r in rows} == {m["id"] for m in made}
    assert {r["status"] for r in rows} == {"requested"}

    # A change after the position: the export at it still shows the row as it was then.
    cancelled = made[0]["id"]
    moved = httpx.post(
        f"{api_url}/notifications/{cancelled}/cancel", json={}, headers=sender.headers
    ).json()
    httpx.get(
        f"{api_url}/notifications/{cancelled}",
        params={"min_position": moved["position"]},
        headers=sender.headers,
    ).raise_for_status()
    again = _export(api_url, admin, format="csv", position=position)
    assert again.content == first.content
    latest = _export(api_url, admin, format="csv")
    assert int(latest.headers["herald-position"]) >= moved["position"]
    status = {r["id"]: r["status"] for r in _csv(latest)}
    assert status[cancelled] == "cancelled"


def test_every_format_carries_the_same_rows(
    api_url: str, tenant_with_data: tuple[Account, Account, list[dict[str, Any]]]
) -> None:
    admin, _, made = tenant_with_data
    position = int(_export(api_url, admin).headers["herald-position"])
    ids = {m["id"] for m in made}
    ndjson = _export(api_url, admin, format="ndjson", position=position)
    assert {json.loads(line)["id"] for line in ndjson.text.splitlines()} == ids
    array = _export(api_url, admin, format="json", position=position)
    assert {item["id"] for item in array.json()} == ids
    parquet = _export(api_url, admin, format="parquet", position=position)
    table = pq.read_table(io.BytesIO(parquet.content))
    assert set(table.column("id").to_pylist()) == ids
    assert table.column("status").to_pylist() == ["requested"] * len(ids)
    by_filter = _export(api_url, admin, format="ndjson", status="cancelled", position=position)
    assert by_filter.text == ""


def test_events_and_audit_logs_export_too(
    api_url: str, tenant_with_data: tuple[Account, Account, list[dict[str, Any]]]
) -> None:
    admin, _, made = tenant_with_data
    events = _export(api_url, admin, kind="events", format="ndjson")
    assert events.status_code == 200, events.text
    lines = [json.loads(line) for line in events.text.splitlines()]
    assert len(lines) == len(made)  # one NotificationRequested each
    assert {line["type"] for line in lines} == {"NotificationRequested"}
    assert all(
        line["data"] and json.loads(line["data"])["tenant_id"] == admin.tenant for line in lines
    )
    audit = _export(api_url, admin, kind="audit-logs", format="csv")
    assert audit.status_code == 200, audit.text
    assert "action" in audit.text.splitlines()[0]


def test_bad_input_is_refused_naming_the_field(
    api_url: str, account: AccountFactory, projector: None
) -> None:
    admin = account(Role.ADMIN)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"format": "xml"}, "format"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"position": 10**15}, "position"),
    ]
    for params, field in cases:
        response = _export(api_url, admin, **params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["errors"][0]["name"] == field, response.text
    sender = account(Role.SENDER)
    assert _export(api_url, sender).status_code == 403


def _audit(stack: Settings, tenant: str, action: str) -> list[dict[str, Any]]:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url.reveal()) as conn:
        rows = conn.execute(
            "SELECT actor, details, count FROM audit_log WHERE tenant_id = %s AND action = %s",
            (tenant, action),
        ).fetchall()
    return [{"actor": a, "details": d, "count": c} for a, d, c in rows]


def test_every_export_is_audited_with_its_filters_and_rows(
    api_url: str,
    tenant_with_data: tuple[Account, Account, list[dict[str, Any]]],
    stack: Settings,
) -> None:
    admin, _, made = tenant_with_data
    _export(api_url, admin, format="ndjson", channel="email").raise_for_status()
    eventually(lambda: bool(_audit(stack, admin.tenant, "export.delivered")), 30, "an entry")
    (entry,) = _audit(stack, admin.tenant, "export.delivered")
    assert entry["actor"] == admin.user_id
    details = entry["details"]
    assert details["rows"] == len(made)
    assert details["filters"] == {"channel": "email"}
    assert details["complete"] is True
    assert details["kind"] == "notifications"


def test_an_export_job_writes_a_file_its_manifest_describes_then_it_expires(
    api_url: str,
    tenant_with_data: tuple[Account, Account, list[dict[str, Any]]],
    account: AccountFactory,
    stack: Settings,
    tmp_path: Path,
) -> None:
    admin, _, made = tenant_with_data
    requested = httpx.post(
        f"{api_url}/data-pipeline/exports",
        json={"kind": "notifications", "format": "parquet"},
        headers=admin.headers,
    )
    assert requested.status_code == 202, requested.text
    url = f"{api_url}{requested.json()['url']}"
    assert httpx.get(f"{url}/download", headers=admin.headers).status_code == 409
    outsider = account(Role.ADMIN)
    assert httpx.get(url, headers=outsider.headers).status_code == 404

    assert stack.database_url is not None
    database_url = stack.database_url.reveal()
    codec = catalog.codec_for(stack)
    store = EventStore(database_url, codec, pool_size=1)
    jobs = ExportJobs(
        database_url=database_url,
        exporter=lambda spec: open_export(database_url, codec, spec),
        store=store,
        directory=tmp_path,
        ttl=timedelta(hours=1),
    )
    assert jobs.run_waiting() >= 1
    store.close()
    job = httpx.get(url, headers=admin.headers).json()
    assert job["status"] == "done", job
    manifest = job["manifest"]
    assert manifest["rows"] == len(made)
    assert manifest["format"] == "parquet"
    downloaded = httpx.get(f"{url}/download", headers=admin.headers)
    assert downloaded.status_code == 200
    assert hashlib.sha256(downloaded.content).hexdigest() == manifest["sha256"]
    # The same export streamed at the manifest's position is the same bytes.
    streamed = _export(api_url, admin, format="parquet", position=manifest["position"])
    assert hashlib.sha256(streamed.content).hexdigest() == manifest["sha256"]
    eventually(
        lambda: any(
            e["details"].get("rows") == len(made)
            for e in _audit(stack, admin.tenant, "export.requested")
        ),
        30,
        "the request and its completion as one audit entry",
    )
    assert (
        expire_exports(database_url=database_url, now=datetime.now(UTC) + timedelta(hours=2)) >= 1
    )
    assert httpx.get(url, headers=admin.headers).json()["status"] == "expired"
    assert httpx.get(f"{url}/download", headers=admin.headers).status_code == 410


def test_the_command_line_writes_an_export_and_its_manifest(
    tenant_with_data: tuple[Account, Account, list[dict[str, Any]]],
    stack: Settings,
    tmp_path: Path,
) -> None:
    admin, _, made = tenant_with_data
    out = tmp_path / "notifications.csv"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infrastructure.entrypoints.cli",
            "export",
            "notifications",
            "--format",
            "csv",
            "--tenant",
            admin.tenant,
            "--out",
            str(out),
        ],
        env={**os.environ, **stack.to_environ()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(made)} row(s)" in result.stdout
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["rows"] == len(made)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "infrastructure.entrypoints.cli",
            "export",
            "notifications",
            "--out",
            str(out),
            "--from",
            "soon",
        ],
        env={**os.environ, **stack.to_environ()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "'soon' is not an RFC 3339 time" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
