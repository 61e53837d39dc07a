"""What a LiveKit transport may name: checked by the API when a session is created, and again by
the worker, on the addresses the host resolves to, before every join. Pure: no DNS here.

- The URL: `ws://` or `wss://`, a plain host (a DNS name or an IP literal) and an optional port,
  printable ASCII only, no user info and nothing two URL parsers could read differently (a
  backslash, an `@`, a percent-encoded host): the host checked here is the host the LiveKit SDK
  connects to.
- The host: an IP literal must be allowed (public, or in the platform's allow-list); a name must
  not be one that only means something inside a cluster or a host (a single label, `localhost`,
  `.local`, `.internal`, `.svc`, `.cluster.local`, `.arpa`, a numeric form such as `127.1`)
  unless the platform lists it. Any other name may still resolve to a private address: the
  worker refuses that (DNS can change after the create, so only the worker's check counts).
- The room name: LiveKit's own limit (livekit-server `limit.max_room_name_length`, 256 bytes by
  default), and no control characters (a NUL or a newline would be passed on to LiveKit, logs
  and webhooks).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from avatar_crds.addresses import AddressAllowList, IpAddress, parse_address

MAX_ROOM_NAME_BYTES = 256
# The syntax below as one regular expression (JSON Schema / ECMA-262 and Python alike), for the
# API's document: printable ASCII without a backslash, a bracketed IPv6 address or a host of
# letters, digits, dots and hyphens, an optional port. Limits it cannot say (label and port
# sizes, a valid IPv6 address) and the allow-list are checked by the functions here.
TRANSPORT_URL_PATTERN = (
    r"^wss?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?([/?#][!-\[\]-~]*)?$"
)
DEFAULT_PORTS = {"ws": 80, "wss": 443}

_URL = re.compile(r"^(?P<scheme>wss?)://(?P<authority>[^/?#]*)(?P<rest>[/?#].*)?$")
_AUTHORITY = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# The messages reach customers: they never list what the platform allows (its internal names).
_NOT_ALLOWED = "is not a public address"
# Names that resolve (if at all) only inside a host or a cluster, never on the internet.
_INTERNAL_SUFFIXES = ("localhost", "local", "internal", "svc", "cluster.local", "arpa")


class TransportUrlError(ValueError):
    """The URL is not one the worker can join safely."""


class TransportForbiddenError(ValueError):
    """The URL points somewhere the platform does not allow workers to connect."""


@dataclass(frozen=True)
class TransportTarget:
    """Where a transport URL connects: its host (lower case, IPv6 without brackets) and port."""

    host: str
    port: int

    @property
    def address(self) -> IpAddress | None:
        """The host as an address when it is an IP literal."""
        return parse_address(self.host)


def parse_transport_url(url: str) -> TransportTarget:
    """The host and port of a `ws(s)://` URL; TransportUrlError saying what is wrong."""
    if any(not "\x21" <= char <= "\x7e" or char == "\\" for char in url):
        raise TransportUrlError(
            "the URL must be printable ASCII without spaces or backslashes"
            " (write an international host name in its xn-- form)"
        )
    match = _URL.match(url)
    if match is None:
        raise TransportUrlError("the URL must start with ws:// or wss:// and name a host")
    authority = _AUTHORITY.match(match["authority"])
    if authority is None:
        raise TransportUrlError(
            "the URL's host must be a DNS name or an IP address, with an optional port,"
            " and no user name or password"
        )
    port = int(authority["port"]) if authority["port"] else DEFAULT_PORTS[match["scheme"]]
    if not 1 <= port <= 65535:
        raise TransportUrlError(f"port {port} is not a valid port")
    raw_host = authority["host"].lower()
    if raw_host.startswith("["):
        host = raw_host[1:-1]
        if parse_address(host) is None or ":" not in host:
            raise TransportUrlError(f"{raw_host} is not an IPv6 address")
        return TransportTarget(host, port)
    host = raw_host.rstrip(".")
    if parse_address(host) is not None:
        return TransportTarget(host, port)
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise TransportUrlError(f"{host!r} is not a valid host name")
    return TransportTarget(host, port)


def check_transport_host(target: TransportTarget, allow: AddressAllowList) -> None:
    """What can be told from the URL alone; TransportForbiddenError if it may not be joined."""
    if allow.allows_host(target.host):
        return
    address = target.address
    if address is not None:
        if not allow.allows_address(address):
            raise TransportForbiddenError(f"{address} {_NOT_ALLOWED}")
        return
    labels = target.host.split(".")
    internal = len(labels) == 1 or any(
        target.host == suffix or target.host.endswith("." + suffix) for suffix in _INTERNAL_SUFFIXES
    )
    if internal:
        raise TransportForbiddenError(f"{target.host} is a cluster-internal or local name")
    if not labels[-1][0].isalpha():
        # Every top-level domain starts with a letter; `127.1` or `10.1` is an address in a
        # shorthand the system resolver accepts, and would bypass the literal check above.
        raise TransportForbiddenError(f"{target.host} is not a host name or a plain IP address")


def check_resolved_addresses(
    target: TransportTarget, answers: Iterable[str], allow: AddressAllowList
) -> None:
    """Every address the host resolved to must be allowed: one private answer among public
    ones is how DNS rebinding starts. Hosts the platform lists are trusted as they resolve."""
    check_transport_host(target, allow)
    if allow.allows_host(target.host):
        return
    addresses = [address for address in map(parse_address, answers) if address is not None]
    if not addresses:
        raise TransportForbiddenError(f"{target.host} resolved to no IP address")
    refused = [address for address in addresses if not allow.allows_address(address)]
    if refused:
        raise TransportForbiddenError(
            f"{target.host} resolves to {refused[0]}, which {_NOT_ALLOWED}"
        )


def validate_room_name(name: str) -> str:
    """LiveKit's rule for room names, plus no control characters; ValueError if broken."""
    if not name:
        raise ValueError("the room name must not be empty")
    bad = next((char for char in name if unicodedata.category(char) in ("Cc", "Cs")), None)
    if bad is not None:
        raise ValueError(f"the room name must not contain control characters (U+{ord(bad):04X})")
    size = len(name.encode("utf-8"))
    if size > MAX_ROOM_NAME_BYTES:
        raise ValueError(
            f"the room name is {size} bytes as UTF-8; LiveKit allows at most {MAX_ROOM_NAME_BYTES}"
        )
    return name
