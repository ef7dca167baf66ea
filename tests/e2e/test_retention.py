"""Retention per tenant: defaults until set, bounds enforced with the field named, nothing
written on refusal, every change audited."""

from __future__ import annotations

import httpx
import psycopg

from domain.identity.roles import Role
from infrastructure.settings import Settings
from tests.e2e.conftest import AccountFactory
from tests.kafka_helpers import eventually

URL = "/data-pipeline/retention"


def test_a_tenant_has_the_defaults_until_an_admin_sets_its_own(
    api_url: str, account: AccountFactory, projector: None, stack: Settings
) -> None:
    admin = account(Role.ADMIN)
    first = httpx.get(f"{api_url}{URL}", headers=admin.headers).json()
    assert first == {
        "notifications_days": 90,
        "events_days": 365,
        "default": True,
        "updated_at": None,
        "updated_by": None,
    }

    for body, field in (
        ({"notifications_days": 3, "events_days": 365}, "notifications_days"),
        ({"notifications_days": 60, "events_days": 30}, "events_days"),
        ({"notifications_days": 60}, "events_days"),
    ):
        refused = httpx.put(f"{api_url}{URL}", json=body, headers=admin.headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["name"] == field, refused.text
    assert httpx.get(f"{api_url}{URL}", headers=admin.headers).json()["default"] is True

    changed = httpx.put(
        f"{api_url}{URL}",
        json={"notifications_days": 30, "events_days": 400},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    now = httpx.get(f"{api_url}{URL}", headers=admin.headers).json()
    assert (now["notifications_days"], now["events_days"], now["default"]) == (30, 400, False)
    assert now["updated_by"] == admin.user_id
    # Setting the same again records nothing more.
    httpx.put(
        f"{api_url}{URL}",
        json={"notifications_days": 30, "events_days": 400},
        headers=admin.headers,
    ).raise_for_status()

    assert stack.database_url is not None
    with psycopg.connect(stack.database_url.reveal()) as conn:

        def audited() -> list[tuple[object, ...]]:
            rows = conn.execute(
                "SELECT actor, details FROM audit_log WHERE tenant_id = %s"
                " AND action = 'retention.changed'",
                (admin.tenant,),
            ).fetchall()
            conn.rollback()
            return rows

        eventually(lambda: bool(audited()), 30, "the audit entry")
        assert audited() == [(admin.user_id, {"notifications_days": 30, "events_days": 400})]

    operator = account(Role.OPERATOR, tenant=admin.tenant)
    assert httpx.get(f"{api_url}{URL}", headers=operator.headers).status_code == 403
