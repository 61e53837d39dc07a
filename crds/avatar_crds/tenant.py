"""Tenant: a customer account, its plan limits, its hashed API keys and its usage."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from avatar_crds.enums import Quality
from avatar_crds.ids import API_KEY_PREFIX, public_id_pattern
from avatar_crds.meta import API_VERSION, CamelModel, ObjectMeta
from avatar_crds.session import SecretKeyRef


class Plan(CamelModel):
    max_concurrent_sessions: Annotated[int, Field(ge=0, le=10000)] = 1
    minutes: Annotated[int, Field(ge=0, le=10_000_000)] = Field(
        default=60, description="Session minutes included per billing period."
    )
    max_session_duration_seconds: Annotated[int, Field(ge=1, le=3600)] = 600
    allowed_qualities: list[Quality] = Field(
        default_factory=lambda: [Quality.MOCK, Quality.LITE],
        min_length=1,
        max_length=4,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    allow_url_avatars: bool = False
    allow_base64_avatars: bool = False
    requests_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 600

    @field_validator("allowed_qualities")
    @classmethod
    def _unique(cls, value: list[Quality]) -> list[Quality]:
        if len(set(value)) != len(value):
            raise ValueError("allowed_qualities must not repeat a quality")
        return value


class ApiKey(CamelModel):
    """An API key as stored: only its SHA-256. Keys carry 256 random bits, so a plain hash
    cannot be brute-forced, and a lookup by hash needs no per-key salt."""

    id: Annotated[str, Field(pattern=public_id_pattern(API_KEY_PREFIX))]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    hint: Annotated[str, Field(max_length=16)] = Field(
        default="", description="The key's last characters, to tell keys apart in a listing."
    )
    created_at: datetime | None = None
    description: Annotated[str, Field(max_length=256)] | None = None


class Webhook(CamelModel):
    """Where session events are POSTed, signed with HMAC-SHA256 by the key in a Secret."""

    url: Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s/?#]+[^\s]*$")]
    secret_ref: SecretKeyRef


class TenantSpec(CamelModel):
    display_name: Annotated[str, Field(max_length=128)] | None = None
    plan: Plan = Field(default_factory=Plan)
    webhook: Webhook | None = None
    api_keys: list[ApiKey] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]},
    )


CHARGED_SESSIONS_KEPT = 256
"""Sessions remembered as charged, so a retried charge is never added twice."""


class TenantUsage(CamelModel):
    """Written by the operator; read through `avatar_crds.billing`, which knows the period."""

    active_sessions: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="Sessions holding one of the plan's concurrent slots: from create until "
        "terminal or being deleted, queued included (avatar_crds.phases.holds_slot), as of the "
        "operator's last charge or change of a session's slot.",
    )
    seconds_used: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Seconds charged in the period that starts at period_start."
    )
    period_start: datetime | None = Field(
        default=None,
        description="Start of the billing period (a calendar month, UTC) of seconds_used; "
        "once that month is over, nothing counts as used until the next charge.",
    )
    charged_sessions: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=CHARGED_SESSIONS_KEPT,
        description="The latest sessions already added to seconds_used, so a retry never "
        "charges twice.",
    )


class TenantStatus(CamelModel):
    usage: TenantUsage = Field(default_factory=TenantUsage)


class Tenant(CamelModel):
    model_config = ConfigDict(extra="ignore")

    api_version: Literal["facecast.io/v1alpha1"] = API_VERSION
    kind: Literal["Tenant"] = "Tenant"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: TenantSpec = Field(default_factory=TenantSpec)
    status: TenantStatus = Field(default_factory=TenantStatus)
