"""The client's address: X-Forwarded-For is believed only from a trusted proxy."""

from __future__ import annotations

from typing import Any, cast

import pytest
from litestar.types import Scope

from infrastructure.settings import SettingsError, load_settings
from infrastructure.settings.values import parse_networks
from infrastructure.web.forwarded import TrustedProxies


def _scope(peer: str, *forwarded: str) -> Scope:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    scope: dict[str, Any] = {"client": (peer, 4321), "headers": [(b"host", b"api"), *headers]}
    return cast(Scope, scope)


PROXIES = TrustedProxies(parse_networks("10.0.0.0/8, 192.168.1.10, fd00::/8"))


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    assert PROXIES.client(_scope("203.0.113.9", "198.51.100.1")) == "203.0.113.9"


def test_a_trusted_proxy_gives_the_address_it_saw() -> None:
    assert PROXIES.client(_scope("10.1.2.3", "198.51.100.1")) == "198.51.100.1"


def test_the_rightmost_untrusted_hop_wins_over_what_the_client_claimed() -> None:
    # The client claims to be 1.1.1.1; our proxies (192.168.1.10, then 10.1.2.3) saw 198.51.100.1.
    scope = _scope("10.1.2.3", "1.1.1.1, 198.51.100.1", "192.168.1.10")
    assert PROXIES.client(scope) == "198.51.100.1"


def test_ipv6_works_as_ipv4_does() -> None:
    assert PROXIES.client(_scope("fd00::1", "2001:db8::7")) == "2001:db8::7"


def test_a_header_our_proxy_would_not_write_means_the_peer() -> None:
    assert PROXIES.client(_scope("10.1.2.3", "not-an-address")) == "10.1.2.3"


def test_without_a_header_the_peer_is_the_client() -> None:
    assert PROXIES.client(_scope("10.1.2.3")) == "10.1.2.3"


def test_with_no_trusted_proxy_nothing_forwarded_is_believed() -> None:
    assert TrustedProxies([]).client(_scope("10.1.2.3", "198.51.100.1")) == "10.1.2.3"


@pytest.mark.parametrize("value", ["10.0.0.0/33", "proxy.internal", "10.0.0.1,,x"])
def test_a_bad_trusted_proxies_setting_names_the_entry(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"HERALD_TRUSTED_PROXIES": value}, env_file=None)
    assert str(caught.value).startswith("HERALD_TRUSTED_PROXIES is invalid")
    assert "\n" not in str(caught.value)
