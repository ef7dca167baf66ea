"""The OpenAPI document, built from the app as the api role serves it, without any server."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import jsonschema_rs
import msgspec
import pytest

from domain.identity.roles import MIN_PASSWORD_CHARS
from domain.retention import MIN_DAYS
from infrastructure.entrypoints.app import create_app
from infrastructure.settings import load_settings
from infrastructure.web.problems import PROBLEM_JSON

METHODS = {"get", "post", "put", "delete", "patch"}
PROBES = {"getHealth", "getLiveness", "getReadiness"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = create_app(load_settings(environ={}, env_file=None))
    schema: dict[str, Any] = app.openapi_schema.to_schema()
    return schema


def _operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        operation["operationId"]: operation
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in METHODS
    }


def test_every_error_is_a_problem(document: dict[str, Any]) -> None:
    for name, operation in _operations(document).items():
        if name in PROBES:  # their 503 is the health report, naming what is down
            continue
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                content = response["content"]
                assert list(content) == [PROBLEM_JSON], (name, status)
                assert content[PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_every_guarded_operation_documents_the_guards_answers(document: dict[str, Any]) -> None:
    for name, operation in _operations(document).items():
        if name in PROBES or name.startswith("receive"):  # webhooks carry no credentials
            continue
        assert {"401", "429", "503"} <= set(operation["responses"]), name
        assert "Retry-After" in operation["responses"]["429"]["headers"], name
        success = min(operation["responses"])
        assert "RateLimit-Remaining" in operation["responses"][success]["headers"], name


def test_a_route_with_roles_documents_403_and_one_with_inputs_422(
    document: dict[str, Any],
) -> None:
    operations = _operations(document)
    assert "403" in operations["requestNotification"]["responses"]
    assert "403" not in operations["login"]["responses"]
    assert "422" in operations["getNotification"]["responses"]
    assert "404" in operations["getNotification"]["responses"]
    assert "422" not in operations["getMe"]["responses"]


def test_litestars_own_400_shape_is_not_documented(document: dict[str, Any]) -> None:
    for name, operation in _operations(document).items():
        for response in operation["responses"].values():
            assert "application/json" not in response.get("content", {}) or (
                "status_code" not in str(response["content"]["application/json"])
            ), name


def test_the_docs_pages_are_not_operations(document: dict[str, Any]) -> None:
    assert not [path for path in document["paths"] if path.startswith("/docs")]


def test_request_headers_are_parameters(document: dict[str, Any]) -> None:
    operations = _operations(document)
    for name in ("requestNotification", "requestNotificationBatch"):
        headers = {p["name"]: p for p in operations[name]["parameters"] if p["in"] == "header"}
        assert headers["Idempotency-Key"]["schema"]["pattern"], name
    reads = {p["name"] for p in operations["getNotification"]["parameters"]}
    assert {"Min-Position", "min_position"} <= reads


def test_the_batch_body_is_documented(document: dict[str, Any]) -> None:
    body = _operations(document)["requestNotificationBatch"]["requestBody"]
    items = body["content"]["application/json"]["schema"]["properties"]["notifications"]
    assert items["minItems"] == 1
    assert items["items"] == {"$ref": "#/components/schemas/NotificationRequest"}


def test_every_body_a_handler_reads_is_documented(document: dict[str, Any]) -> None:
    """Webhooks read their bodies as bytes (the signature covers them); the document still
    names what they carry."""
    operations = _operations(document)
    webhooks = [o for o in operations.values() if "webhooks" in o.get("tags", [])]
    assert len(webhooks) == 3
    for operation in webhooks:
        assert "requestBody" in operation, operation["operationId"]
    sendgrid = operations["receiveSendGridEvents"]["requestBody"]["content"]
    assert sendgrid["application/json"]["schema"]["items"]["required"] == ["event"]
    twilio = operations["receiveTwilioStatus"]
    form = twilio["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert "MessageStatus" in form["properties"]
    assert {p["name"] for p in twilio["parameters"]} >= {"notification_id", "attempt"}


def test_constraints_the_server_checks_are_in_the_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["RegisterRequest"]["properties"]["password"]["minLength"] == MIN_PASSWORD_CHARS
    assert schemas["ApiKeyRequest"]["properties"]["name"]["maxLength"] == 100
    assert schemas["RetentionRequest"]["properties"]["events_days"]["minimum"] == MIN_DAYS
    request = schemas["NotificationRequest"]["properties"]
    assert "pattern" in str(request["template_id"])


def test_streamed_answers_document_their_media_types(document: dict[str, Any]) -> None:
    operations = _operations(document)
    exported = operations["exportNotifications"]["responses"]["200"]["content"]
    assert {"text/csv", "application/x-ndjson", "application/json"} <= set(exported)
    assert set(operations["getPrometheusMetrics"]["responses"]["200"]["content"]) == {"text/plain"}


def test_a_requests_answer_documents_its_location_and_replays(document: dict[str, Any]) -> None:
    accepted = _operations(document)["requestNotification"]["responses"]["202"]["headers"]
    assert {"Location", "Idempotent-Replayed", "RateLimit-Limit"} <= set(accepted)


def test_routes_open_to_anyone_say_so(document: dict[str, Any]) -> None:
    """A bearer token is the document's default; probes and webhooks read none, and the
    login routes take one only if it is there."""
    operations = _operations(document)
    assert document["security"] == [{"bearer": []}]
    assert "security" not in operations["requestNotification"]
    for probe in PROBES:
        assert operations[probe]["security"] == [], probe
    assert operations["receiveSendGridEvents"]["security"] == []
    assert operations["login"]["security"] == [{}, {"bearer": []}]


def test_request_bodies_refuse_fields_they_do_not_name(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("NotificationRequest", "LoginRequest", "ErasureRequest", "ExportRequest"):
        assert schemas[name]["additionalProperties"] is False, name


def test_rules_across_fields_are_in_the_body_schemas(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]

    def valid(name: str, body: dict[str, Any]) -> bool:
        # The component with the document's components beside it, so that its refs resolve.
        # As served: JSON, where the document's examples are strings.
        schema = msgspec.json.decode(
            msgspec.json.encode({**schemas[name], "components": document["components"]})
        )
        return bool(jsonschema_rs.Draft202012Validator(schema).is_valid(body))

    sms = {"channel": "sms", "recipient": "+14155550100", "body": "b"}
    assert valid("NotificationRequest", sms)
    assert not valid("NotificationRequest", {**sms, "recipient": "ada@example.com"})
    assert not valid("NotificationRequest", {**sms, "template_id": "t"})  # body and template
    assert not valid("NotificationRequest", {**sms, "fallback": ["sms"]})  # the primary
    assert not valid("NotificationRequest", {**sms, "fallback": ["email"]})  # no address
    by_email = {"fallback": ["email"], "fallback_recipients": {"email": "ada@example.com"}}
    assert not valid("NotificationRequest", {**sms, **by_email})  # a body needs a subject
    assert valid("NotificationRequest", {**sms, **by_email, "subject": "s"})
    assert not valid("NotificationRequest", {**sms, "unknown": 1})
    assert valid("ErasureRequest", {"recipient": "+14155550100"})
    assert not valid("ErasureRequest", {"recipient": "+14155550100", "user_id": str(uuid4())})
    assert not valid("ErasureRequest", {})
    assert not valid("ExportRequest", {"kind": "events", "include_archived": True})
    assert valid("ExportRequest", {"kind": "notifications", "include_archived": True})


def test_log_positions_are_bounded_as_the_store_holds_them(document: dict[str, Any]) -> None:
    operations = _operations(document)
    for parameter in operations["getNotification"]["parameters"]:
        if parameter["name"] in {"min_position", "Min-Position"}:
            assert parameter["schema"]["minimum"] == 0
            assert parameter["schema"]["maximum"] == 2**63 - 1
    export = document["components"]["schemas"]["ExportRequest"]["properties"]["position"]
    assert (export["minimum"], export["maximum"]) == (0, 2**63 - 1)


def test_a_stored_answer_documents_the_body_it_was_encoded_from(
    document: dict[str, Any],
) -> None:
    operations = _operations(document)
    for name, view in (
        ("requestNotification", "AcceptedView"),
        ("requestNotificationBatch", "BatchAcceptedView"),
    ):
        content = operations[name]["responses"]["202"]["content"]["application/json"]
        assert content["schema"] == {"$ref": f"#/components/schemas/{view}"}, name
