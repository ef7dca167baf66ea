"""The identity model's rules, its value objects, and its events' storage round trip."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import ConflictError, InvalidValueError, NotFoundError
from domain.events import DomainEvent
from domain.identity import user as users
from domain.identity.roles import Role, check_password, normalise_email
from infrastructure.eventstore import catalog
from infrastructure.eventstore.codec import EventCodec, UnknownEventError

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _user(*roles: Role) -> users.User:
    event = users.register(
        tenant_id="t", email="a@example.com", password_hash="h", roles=roles, at=NOW
    )
    return users.evolve(None, event, uuid.uuid4())


def test_granting_a_held_role_records_nothing() -> None:
    assert users.grant_role(_user(Role.USER), Role.USER, by="admin", at=NOW) == []


def test_a_disabled_user_cannot_be_given_roles() -> None:
    user = _user(Role.USER)
    disabled = users.evolve(user, users.disable(user, by="a", reason="r", at=NOW)[0], user.id)
    with pytest.raises(ConflictError):
        users.grant_role(disabled, Role.ADMIN, by="admin", at=NOW)


def test_an_erased_user_is_gone_and_keeps_no_personal_data() -> None:
    user = _user(Role.ADMIN)
    erased = users.evolve(user, users.erase(user, by="a", at=NOW)[0], user.id)
    assert (erased.email, erased.password_hash, erased.roles) == ("", "", frozenset())
    with pytest.raises(NotFoundError):
        users.grant_role(erased, Role.USER, by="admin", at=NOW)


@pytest.mark.parametrize(
    ("raw", "ok"),
    [("Ada@Example.COM", "ada@example.com"), ("x", None), ("a@b", None), ("a b@c.io", None)],
)
def test_emails_are_validated_and_normalised(raw: str, ok: str | None) -> None:
    if ok is None:
        with pytest.raises(InvalidValueError, match="email"):
            normalise_email(raw)
    else:
        assert normalise_email(raw) == ok


def test_passwords_need_12_characters_and_at_most_72_bytes() -> None:
    assert check_password("x" * 12) == "x" * 12
    with pytest.raises(InvalidValueError, match="at least 12"):
        check_password("x" * 11)
    with pytest.raises(InvalidValueError, match="at most 72 bytes"):
        check_password("é" * 37)


actions = st.lists(
    st.tuples(
        st.sampled_from(["grant", "revoke", "disable", "erase"]), st.sampled_from(list(Role))
    ),
    max_size=20,
)


def _decide(action: str, user: users.User, role: Role) -> list[DomainEvent]:
    if action == "grant":
        return users.grant_role(user, role, by="x", at=NOW)
    if action == "revoke":
        return users.revoke_role(user, role, by="x", at=NOW)
    if action == "disable":
        return users.disable(user, by="x", reason="r", at=NOW)
    return users.erase(user, by="x", at=NOW)


@given(actions)
def test_replaying_recorded_events_rebuilds_the_same_user(steps: list[tuple[str, Role]]) -> None:
    user = _user(Role.USER)
    recorded: list[DomainEvent] = [
        users.register(
            tenant_id="t", email="a@example.com", password_hash="h", roles=[Role.USER], at=NOW
        )
    ]
    codec = catalog.codec()
    for action, role in steps:
        try:
            events = _decide(action, user, role)
        except (ConflictError, NotFoundError):
            continue
        for event in events:
            user = users.evolve(user, event, user.id)
        recorded += events
    stored = [codec.encode(e) for e in recorded]
    assert users.replay(user.id, [codec.decode(t, s) for t, s in stored]) == user
    assert user.version == len(recorded)


class Greeted(DomainEvent, frozen=True, kw_only=True):
    """Version 2 split `name` into given and family names."""

    version: ClassVar[int] = 2
    upcasters: ClassVar[dict[int, Any]] = {
        1: lambda d: {
            **{k: v for k, v in d.items() if k != "name"},
            "given": d["name"].split()[0],
            "family": d["name"].split()[-1],
        },
    }
    given: str
    family: str


class GreetedV1(msgspec.Struct, frozen=True, kw_only=True):
    at: datetime
    name: str


def test_an_event_stored_in_an_older_version_loads_as_the_current_one() -> None:
    old_bytes = msgspec.msgpack.encode(GreetedV1(at=NOW, name="Ada Lovelace"))
    codec = EventCodec([Greeted])
    assert codec.decode("Greeted@1", old_bytes) == Greeted(at=NOW, given="Ada", family="Lovelace")
    topic, state = codec.encode(Greeted(at=NOW, given="A", family="B"))
    assert topic == "Greeted@2"
    assert codec.decode(topic, state) == Greeted(at=NOW, given="A", family="B")


def test_a_renamed_event_still_loads_through_its_alias() -> None:
    topic, state = EventCodec([Greeted]).encode(Greeted(at=NOW, given="A", family="B"))
    renamed = EventCodec([], aliases={"Greeted": Greeted})
    assert renamed.decode(topic, state) == Greeted(at=NOW, given="A", family="B")
    with pytest.raises(UnknownEventError):
        EventCodec([]).decode(topic, state)
