"""The client's address: the TCP peer, or what a trusted proxy says it forwarded for.

`X-Forwarded-For` is believed only when the peer is one of HERALD_TRUSTED_PROXIES. Then the
client is the rightmost address in the header that is not itself a trusted proxy: each
proxy appends the address it saw, so everything left of that is the client's own say and
cannot be trusted. The address found replaces the ASGI scope's `client`, so the rate
limits, the logs and the audit trail all see the same one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from litestar.types import Scope

from infrastructure.settings import IpNetwork

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
HEADER = b"x-forwarded-for"


class TrustedProxies:
    def __init__(self, networks: Iterable[IpNetwork]) -> None:
        self._networks = tuple(networks)

    def trusts(self, address: IpAddress) -> bool:
        return any(address in network for network in self._networks)

    def client(self, scope: Scope) -> str | None:
        """The client's address for this request; None when the server gave no peer."""
        peer = scope.get("client")
        host = peer[0] if peer else None
        if host is None or not self._networks or not self._trusted_text(host):
            return host
        forwarded = [
            value.decode("latin-1") for name, value in scope.get("headers", ()) if name == HEADER
        ]
        hops = [hop.strip() for line in forwarded for hop in line.split(",") if hop.strip()]
        for hop in reversed(hops):
            try:
                address = ipaddress.ip_address(hop)
            except ValueError:
                return host  # a proxy we trust would not have written this: believe the peer
            if not self.trusts(address):
                return str(address)
        return hops[0] if hops else host

    def _trusted_text(self, host: str) -> bool:
        try:
            return self.trusts(ipaddress.ip_address(host))
        except ValueError:
            return False
