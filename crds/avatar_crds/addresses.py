"""Which network addresses Facecast may connect to on a customer's behalf (the avatar-URL fetcher
in the API, the worker joining a customer's LiveKit room). Pure: the callers resolve host names
at their edges and pass the answers in.

By default only public addresses: never loopback, private, link-local (the 169.254.169.254
cloud metadata service), CGNAT, multicast, reserved, or an IPv6 form of any of those. A
platform that runs its own LiveKit inside the cluster names it in an `AddressAllowList`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, NAT64, 6to4, Teredo)."""
    embedded: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        embedded.append(address.ipv4_mapped)
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.extend(address.teredo)
    return embedded


def is_public_address(address: IpAddress) -> bool:
    """True only for globally routable unicast addresses, looking inside the IPv6 forms that
    embed an IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded:
            return all(is_public_address(inner) for inner in embedded)
    return bool(
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_loopback
        and not address.is_link_local
        and not address.is_private
        and not address.is_unspecified
    )


def parse_address(text: str) -> IpAddress | None:
    """An IP literal as a resolver answers it (an IPv6 zone is dropped), None if not one."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class AddressAllowList:
    """What the platform allows on top of public addresses, for its own LiveKit.

    `hosts`: host names (lower case) trusted whatever they resolve to: the platform's own DNS
    names, such as `livekit.facecast.svc.cluster.local`. `networks`: non-public ranges any
    host may resolve to; keep them as narrow as the LiveKit service itself (a /32), since
    every address in them becomes reachable by every customer.
    """

    hosts: frozenset[str] = frozenset()
    networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def parse(cls, hosts: str = "", networks: str = "") -> AddressAllowList:
        """From comma-separated settings; ValueError naming the entry that is not valid."""
        names = frozenset(_entries(hosts))
        ranges: list[IpNetwork] = []
        for entry in _entries(networks):
            try:
                ranges.append(ipaddress.ip_network(entry, strict=True))
            except ValueError as error:
                raise ValueError(f"{entry!r} is not a CIDR range ({error})") from None
        return cls(hosts=names, networks=tuple(ranges))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: IpAddress) -> bool:
        if is_public_address(address):
            return True
        candidates: list[IpAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address):
            candidates.extend(_embedded_ipv4(address))  # ::ffff:10.0.0.5 is 10.0.0.5
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.networks
        )


def _entries(text: str) -> Iterable[str]:
    """`"a, B.,"` -> `a`, `b`: names compare in lower case, without the root's trailing dot."""
    for entry in text.split(","):
        cleaned = entry.strip().lower().rstrip(".")
        if cleaned:
            yield cleaned
