"""Facecast resource models: the single source of truth for the CRDs, the API and the operator."""

from avatar_crds.avatar import Avatar, AvatarSpec
from avatar_crds.enums import (
    AspectRatio,
    AudioSource,
    CancelReason,
    EndReason,
    FailureReason,
    Phase,
    Quality,
    TransportType,
    VideoCodec,
    Visibility,
)
from avatar_crds.meta import API_VERSION, GROUP, VERSION
from avatar_crds.session import AvatarSession, AvatarSessionSpec, AvatarSessionStatus
from avatar_crds.tenant import Tenant, TenantSpec, TenantStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "AspectRatio",
    "AudioSource",
    "Avatar",
    "AvatarSession",
    "AvatarSessionSpec",
    "AvatarSessionStatus",
    "AvatarSpec",
    "CancelReason",
    "EndReason",
    "FailureReason",
    "Phase",
    "Quality",
    "Tenant",
    "TenantSpec",
    "TenantStatus",
    "TransportType",
    "VideoCodec",
    "Visibility",
]
