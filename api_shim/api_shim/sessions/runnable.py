"""What the API refuses when a session is created because it could never run: a transport this
version of Facecast does not have (`avatar_crds.capabilities`), a quality tier this installation
does not serve (the neural tiers need model weights its workers may not have), or a room the
platform does not let workers connect to (`avatar_crds.transport_rules`). Refused here, with the
field at fault, instead of accepted and failed later as `room_unreachable`. Pure: no DNS (the
worker checks the resolved addresses before it joins)."""

from __future__ import annotations

from api_shim.errors import ApiError, ErrorType, invalid_request
from api_shim.sessions.mapping import quality_of
from api_shim.sessions.schemas import CreateSessionRequest, LiveKitTransportRequest
from avatar_crds.addresses import AddressAllowList
from avatar_crds.capabilities import NEEDS_MODEL_WEIGHTS, SUPPORTED_TRANSPORTS, ordered
from avatar_crds.enums import Quality, TransportType
from avatar_crds.transport_rules import (
    TransportForbiddenError,
    check_transport_host,
    parse_transport_url,
)


def check_runnable(
    request: CreateSessionRequest, allow: AddressAllowList, served: frozenset[Quality]
) -> None:
    """ApiError (400/422, naming the field) for a session that cannot run here; `served`: the
    tiers this installation serves (`Settings.served`)."""
    transport = request.transport
    if TransportType(transport.type) not in SUPPORTED_TRANSPORTS:
        available = ", ".join(kind for kind in TransportType if kind in SUPPORTED_TRANSPORTS)
        raise ApiError(
            ErrorType.UNPROCESSABLE,
            "transport_not_supported",
            f"The {transport.type} transport is not available yet; available: {available}.",
            param="transport.type",
        )
    quality = quality_of(request)
    if quality not in served:
        raise ApiError(
            ErrorType.UNPROCESSABLE,
            "quality_not_available",
            quality_not_served(quality, served),
            param="quality",
        )
    if isinstance(transport, LiveKitTransportRequest):
        check_destination(transport.url, allow)


def quality_not_served(quality: Quality, served: frozenset[Quality]) -> str:
    available = ", ".join(ordered(served))
    why = "."
    if quality in NEEDS_MODEL_WEIGHTS:
        why = (
            ": its workers have no model weights installed (the platform team installs them on"
            " the model volume, the chart's worker.modelVolumeClaim)."
        )
    return f"Quality {quality} is not available on this installation{why} Available: {available}."


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
