"""Whether the worker may connect to the room's server: the check the API made at create, made
again on the addresses the host resolves to now, before every join. DNS can change after the
create (or be made to, which is DNS rebinding), so this is the check that counts.

The LiveKit SDK resolves the name once more when it connects, so an answer that changes in the
moment between the two lookups is not caught here; the workers' NetworkPolicy, which allows no
cluster or private range, is what stops that one.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from avatar_crds.addresses import AddressAllowList
from avatar_crds.enums import FailureReason
from avatar_crds.transport_rules import (
    TransportForbiddenError,
    TransportUrlError,
    check_resolved_addresses,
    check_transport_host,
    parse_transport_url,
)
from avatar_worker.errors import WorkerError

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (an IP literal resolves to itself)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class DestinationUnresolvedError(Exception):
    """The host did not resolve (now): worth trying again until the join deadline."""


async def check_destination(
    url: str, allow: AddressAllowList, resolver: Resolver = system_resolver
) -> None:
    """Returns if the room's server may be joined; WorkerError (room_unreachable, final) if the
    URL or any address it resolves to is not allowed; DestinationUnresolvedError if DNS failed."""
    try:
        target = parse_transport_url(url)
        check_transport_host(target, allow)  # a name refused as such is not even looked up
        try:
            answers = await resolver(target.host, target.port)
        except (OSError, UnicodeError) as error:
            raise DestinationUnresolvedError(f"cannot resolve {target.host}: {error}") from None
        check_resolved_addresses(target, answers, allow)
    except (TransportUrlError, TransportForbiddenError) as error:
        raise WorkerError(
            FailureReason.ROOM_UNREACHABLE, f"the room's server is not allowed: {error}"
        ) from None
