"""Operator settings, read once from `FACECAST_*` environment variables (set by the chart)."""

from __future__ import annotations

import os
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from avatar_crds.addresses import AddressAllowList
from avatar_crds.voices import parse_configured_voices

ENV_PREFIX = "FACECAST_"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class WorkerPodSettings(BaseModel):
    """What every worker pod gets from the operator, whichever pool it belongs to: volumes,
    priority, grace period, network and the servers it may reach. Its image, size, GPUs and
    placement are its pool's (`resources.WorkerShape`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority_class_name: str | None = None
    termination_grace_seconds: Annotated[int, Field(ge=1, le=600)] = 30
    avatar_store_claim: str | None = Field(
        default=None, description="PVC holding avatar images, mounted read-only in workers."
    )
    model_volume_claim: str | None = None
    # Where workers may connect besides public addresses (the platform's own LiveKit), passed
    # on to every worker pod, which checks the room's resolved addresses against it.
    transport_allowed_hosts: str = ""
    transport_allowed_cidrs: str = ""
    # For clusters where pods reach neither LiveKit through a pod network nor the API server
    # through the `kubernetes` Service (no kube-proxy): the chart's `hostNetwork` and
    # `kubernetesApi`. Off and empty on a usual cluster.
    host_network: bool = False
    kubernetes_api_host: str = ""
    kubernetes_api_port: Annotated[int, Field(ge=1, le=65535)] = 443

    # The OpenAI-compatible TTS server (chart `tts.openai`), passed on to every worker pod; its
    # API key is the named Secret's key, mounted as a file (contract.TTS_KEY_FILE).
    tts_openai_base_url: Annotated[str, Field(pattern=r"^(https?://\S+)?$")] = ""
    tts_openai_voices: str = ""
    """FACECAST_TTS_OPENAI_VOICES as the chart writes it (JSON, avatar_crds.voices)."""
    tts_openai_api_key_secret: str | None = None
    tts_openai_api_key_secret_key: str = "api-key"

    @field_validator("transport_allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        AddressAllowList.parse(networks=value)
        return value

    @field_validator("tts_openai_voices")
    @classmethod
    def _voices(cls, value: str) -> str:
        parse_configured_voices(value)
        return value


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = "facecast"
    worker: WorkerPodSettings = Field(default_factory=WorkerPodSettings)
    start_timeout_seconds: Annotated[float, Field(gt=0)] = 120.0
    heartbeat_timeout_seconds: Annotated[float, Field(gt=0)] = 20.0
    finalize_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    terminal_ttl_seconds: Annotated[float, Field(gt=0)] = 3600.0
    ending_soon_seconds: Annotated[float, Field(ge=0)] = 10.0
    """How long before an idle or max-duration cutoff `session.ending_soon` warns; 0: never."""
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9090
    webhook_max_attempts: Annotated[int, Field(ge=1, le=20)] = 6
    webhook_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    watch_check_interval_seconds: Annotated[float, Field(gt=0)] = 20.0
    """How often what kopf watches is LISTed to check that the watches keep up."""
    watch_stale_seconds: Annotated[float, Field(gt=0)] = 90.0
    """A watch that has not caught up with a listing this long fails the liveness probe.
    Longer than kopf's own 70 s reconnection of a silent stream, which may mend it first."""


# Environment variable -> dotted settings path.
_ENV_FIELDS = {
    "NAMESPACE": "namespace",
    "START_TIMEOUT_SECONDS": "start_timeout_seconds",
    "HEARTBEAT_TIMEOUT_SECONDS": "heartbeat_timeout_seconds",
    "FINALIZE_TIMEOUT_SECONDS": "finalize_timeout_seconds",
    "TERMINAL_TTL_SECONDS": "terminal_ttl_seconds",
    "ENDING_SOON_SECONDS": "ending_soon_seconds",
    "METRICS_PORT": "metrics_port",
    "WEBHOOK_MAX_ATTEMPTS": "webhook_max_attempts",
    "WEBHOOK_TIMEOUT_SECONDS": "webhook_timeout_seconds",
    "WATCH_CHECK_INTERVAL_SECONDS": "watch_check_interval_seconds",
    "WATCH_STALE_SECONDS": "watch_stale_seconds",
    "WORKER_PRIORITY_CLASS_NAME": "worker.priority_class_name",
    "WORKER_TERMINATION_GRACE_SECONDS": "worker.termination_grace_seconds",
    "WORKER_AVATAR_STORE_CLAIM": "worker.avatar_store_claim",
    "WORKER_MODEL_VOLUME_CLAIM": "worker.model_volume_claim",
    "WORKER_HOST_NETWORK": "worker.host_network",
    "KUBERNETES_API_HOST": "worker.kubernetes_api_host",
    "KUBERNETES_API_PORT": "worker.kubernetes_api_port",
    "TRANSPORT_ALLOWED_HOSTS": "worker.transport_allowed_hosts",
    "TRANSPORT_ALLOWED_CIDRS": "worker.transport_allowed_cidrs",
    "TTS_OPENAI_BASE_URL": "worker.tts_openai_base_url",
    "TTS_OPENAI_VOICES": "worker.tts_openai_voices",
    "TTS_OPENAI_API_KEY_SECRET": "worker.tts_openai_api_key_secret",
    "TTS_OPENAI_API_KEY_SECRET_KEY": "worker.tts_openai_api_key_secret_key",
}


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    for suffix, path in _ENV_FIELDS.items():
        name = ENV_PREFIX + suffix
        if name not in env or env[name] == "":
            continue
        value = env[name]
        head, _, leaf = path.rpartition(".")
        (data.setdefault(head, {}) if head else data)[leaf] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(f"invalid operator settings: {exc}") from exc
