"""The running API against its own OpenAPI document: a property-based fuzzer over real HTTP.

Every operation gets schema-valid and schema-invalid requests from a caller holding every
role, so requests reach the handlers rather than stopping at the guard. Each answer must be
no 5xx, a status the operation documents, in a content type it documents for that status,
with a body and headers that its schema allows.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from domain.identity.roles import Role
from infrastructure.auth.tokens import TokenService
from infrastructure.settings import Settings
from infrastructure.web.problems import PROBLEM_JSON
from tests.conftest import new_database
from tests.e2e.conftest import Account, AccountFactory, OwnStack, own_stack

Operation = APIOperation[Any, Any, Any, Any]
# A 422 naming only these fields, for these reasons, refuses what JSON Schema cannot state:
# - the state a valid request meets: a value only the API issues, a position the log has not
#   reached, a password that is not the caller's, an idempotency key used before, the clock;
# - an order between two fields, and a time with an offset that takes it before year 1;
# - a size in bytes, of UTF-8 or of JSON (JSON Schema counts characters, items and keys).
# In a batch, each item's field is named `notifications[INDEX].FIELD`.
BEYOND_SCHEMA: dict[str, str | tuple[str, ...]] = {
    "cursor": "is not a cursor this API returned",
    "min_position": "is past the end of the event log",
    "position": "the read model reflects the log up to ",
    "current_password": "is not the current password",
    "Idempotency-Key": "was first used with a different request",
    "send_at": ("is in the past", "must be at most "),
    "from": ("must not be after to", "is before year 1 in UTC"),
    "to": "is before year 1 in UTC",
    "events_days": "must be at least notifications_days",
    "password": "must be at most 72 bytes in UTF-8",
    "body": "must be at most ",
    "variables": "must be at most ",
    "metadata": "must be at most ",
}
_ITEM = re.compile(r"^notifications\[\d+\]\.")


def _beyond_schema(response: Any) -> bool:
    if response.status_code != 422:
        return False
    errors = response.json().get("errors") or [{}]
    return all(
        str(error.get("reason", "")).startswith(
            BEYOND_SCHEMA.get(_ITEM.sub("", str(error.get("name"))), "\0")
        )
        for error in errors
    )


def schema_valid_request_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' positive_data_acceptance, but for the refusals of BEYOND_SCHEMA."""
    if _beyond_schema(response):
        return None
    return positive_data_acceptance(ctx, response, case)


CHECKS = [
    schema_valid_request_accepted,
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Each operation gets this many valid and this many invalid requests, from a fixed seed
# (derandomize), so that a run is reproducible and takes a minute or two.
EXAMPLES = 20
# Each of these hashes a password with bcrypt, a quarter of a second or more: fewer of them.
HASHING = {"login": 4, "changePassword": 4, "registerUser": 4}
# Revokes the token it is called with: each call gets a token of its own (see Fuzzer.headers).
LOGOUT = "logout"
METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH"}


@dataclass(frozen=True)
class Fuzzer:
    """The caller: every role, in a tenant of its own, on the module's own stack (`own`)."""

    api_url: str
    account: Account
    tokens: TokenService

    def headers(self, operation: Operation) -> dict[str, str]:
        if operation.definition.raw.get("operationId") != LOGOUT:
            return self.account.headers
        # Minted as a login would, without the login's password hashing.
        fresh = self.tokens.issue(
            "access",
            subject=self.account.user_id,
            tenant_id=self.account.tenant,
            family=uuid.uuid4().hex,
            roles=frozenset(Role),
        )
        return {"Authorization": f"Bearer {fresh.token}"}


@pytest.fixture(scope="module")
def own(api_settings: Settings, stack: Settings) -> Iterator[OwnStack]:
    """An api, relay and projector on a database of the module's own. The fuzzer's valid
    requests are real work (erasures, exports, jobs to run now): it waits in this database
    for a scheduler that never comes, not in the queue other tests' schedulers work through."""
    with new_database(stack) as database, own_stack(api_settings, database) as stack_of_own:
        yield stack_of_own


@pytest.fixture(scope="module")
def api_url(own: OwnStack) -> str:
    return own.api_url


@pytest.fixture(scope="module")
def account(own: OwnStack) -> AccountFactory:
    return own.account


@pytest.fixture(scope="module")
def fuzzer(api_url: str, api_settings: Settings, account: AccountFactory) -> Fuzzer:
    return Fuzzer(api_url, account(*Role), TokenService(api_settings))


@pytest.fixture(scope="module")
def contract(api_url: str) -> Any:
    return schemathesis.openapi.from_url(
        f"{api_url}/docs/openapi.json", config=schemathesis.Config()
    )


def _fuzz(operation: Operation, mode: GenerationMode, fuzzer: Fuzzer) -> None:
    examples = HASHING.get(operation.definition.raw.get("operationId", ""), EXAMPLES)

    @given(operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # the first failing case; shrinking is slow
    )
    def each(case: schemathesis.Case[Operation]) -> None:
        headers = fuzzer.headers(operation)
        case.call_and_validate(base_url=fuzzer.api_url, headers=headers, checks=CHECKS)

    each()


def _takes_input(operation: Operation) -> bool:
    """Whether a request to the operation has anything that could be made invalid. The
    probes and the open routes without a body have none: no negative case exists for them."""
    sets = (operation.path_parameters, operation.headers, operation.cookies, operation.query)
    return any(len(parameters) for parameters in sets) or len(operation.body) > 0


def test_every_answer_conforms_to_the_document(contract: Any, fuzzer: Fuzzer) -> None:
    """Every operation is fuzzed and every one that fails is reported, not just the first.
    The module's projector runs so that a read may ask for a position the log has reached."""
    failures = []
    for result in contract.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and not _takes_input(operation):
                continue
            try:
                _fuzz(operation, mode, fuzzer)
            except (AssertionError, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}):\n{exc}")
    assert not failures, "\n\n".join(failures)


def test_options_and_405_list_the_methods_each_path_serves(api_url: str, contract: Any) -> None:
    with httpx.Client(base_url=api_url) as client:
        for path, item in contract.raw_schema["paths"].items():
            documented = {method.upper() for method in item} & METHODS
            url = re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", path)
            answer = client.options(url)
            allowed = set(answer.headers["allow"].replace(" ", "").split(","))
            assert answer.status_code == 204, path
            assert allowed & METHODS == documented, path
            for method in METHODS - allowed:
                refused = client.request(method, url)
                assert refused.status_code == 405, (path, method)
                assert set(refused.headers["allow"].replace(" ", "").split(",")) == allowed, path


def test_a_body_that_is_not_json_is_a_documented_400(api_url: str, contract: Any) -> None:
    answer = httpx.post(
        f"{api_url}/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert "400" in contract.raw_schema["paths"]["/auth/login"]["post"]["responses"]
