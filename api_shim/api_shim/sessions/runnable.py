"""What the API refuses when a session is created because it could never run: a quality tier or
a transport this version of Facecast does not have (`avatar_crds.capabilities`), or a room the
platform does not let workers connect to (`avatar_crds.transport_rules`). Refused here, with the
field at fault, instead of accepted and failed later as `room_unreachable`. Pure: no DNS (the
worker checks the resolved addresses before it joins)."""

from __future__ import annotations

from api_shim.errors import ApiError, ErrorType, invalid_request
from api_shim.sessions.schemas import CreateSessionRequest, LiveKitTransportRequest
from avatar_crds.addresses import AddressAllowList
from avatar_crds.capabilities import RENDERABLE_QUALITIES, SUPPORTED_TRANSPORTS
from avatar_crds.enums import Quality, TransportType
from avatar_crds.transport_rules import (
    TransportForbiddenError,
    check_transport_host,
    parse_transport_url,
)


def check_runnable(request: CreateSessionRequest, allow: AddressAllowList) -> None:
    """ApiError (400/422, naming the field) for a session that cannot run here."""
    transport = request.transport
    if TransportType(transport.type) not in SUPPORTED_TRANSPORTS:
        available = ", ".join(kind for kind in TransportType if kind in SUPPORTED_TRANSPORTS)
        raise ApiError(
            ErrorType.UNPROCESSABLE,
            "transport_not_supported",
            f"The {transport.type} transport is not available yet; available: {available}.",
            param="transport.type",
        )
    if request.quality not in RENDERABLE_QUALITIES:
        available = ", ".join(tier for tier in Quality if tier in RENDERABLE_QUALITIES)
        raise ApiError(
            ErrorType.UNPROCESSABLE,
            "quality_not_available",
            f"Quality {request.quality} is not available yet; available: {available}.",
            param="quality",
        )
    if isinstance(transport, LiveKitTransportRequest):
        check_destination(transport.url, allow)


def check_destination(url: str, allow: AddressAllowList) -> None:
    """400 `transport_url_forbidden` for a URL whose host workers may not connect to (the
    schema has already refused a malformed one)."""
    try:
        check_transport_host(parse_transport_url(url), allow)
    except TransportForbiddenError as error:
        raise invalid_request(
            "transport_url_forbidden",
            f"transport.url: {error}. Use your LiveKit server's public address.",
            "transport.url",
        ) from None
