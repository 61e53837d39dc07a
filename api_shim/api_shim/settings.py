"""Settings from the environment (`FACECAST_*`), read once at start-up."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from api_shim.managed_rooms import ManagedLiveKit
from avatar_crds import contract, voices
from avatar_crds.addresses import AddressAllowList
from avatar_crds.capabilities import parse_served_qualities
from avatar_crds.enums import Quality
from avatar_crds.voices import VoiceCatalogue

ENV_PREFIX = "FACECAST_"


@dataclass(frozen=True)
class Settings:
    # Where sessions, tenants and avatars live: one namespace per installation.
    namespace: str = "facecast"
    # Kubeconfig file; empty means in-cluster config, falling back to ~/.kube/config.
    kubeconfig: str = ""
    host: str = "0.0.0.0"  # a container listens on every interface
    port: int = 8080
    log_level: str = "info"
    # Sessions waiting in the namespace (created or queued) before new ones get 503 at_capacity.
    max_queued: int = 100
    at_capacity_retry_after_seconds: int = 10
    # A tenant at its concurrency limit is told to come back after this long.
    concurrency_retry_after_seconds: int = 5
    # How long a create waits for the operator to admit the session to the queue, so that it
    # answers `queued` (or further) as Protoface's does; after this it answers `created`. The
    # wait ends on the session watch's event, so it only costs this when no operator answers.
    create_queue_wait_seconds: float = 1.0
    # API keys are looked up in a cache of all Tenants; a revoked key stops working within this.
    auth_cache_ttl_seconds: float = 5.0
    # An unknown key reloads the cache at most this often, so random keys cannot flood the
    # API server; 0 reloads on every miss (tests).
    auth_miss_reload_seconds: float = 1.0
    # HTTP connections to the API server (requests beyond this wait for one to free up). A
    # create makes two writes in turn, and with fewer connections than creates in flight its
    # second write queues behind other sessions' first ones: at 50 concurrent creates, 32
    # connections cost up to a tenth of the throughput (bench/api_create.py). The API
    # server's priority and fairness limits, not this pool, are what protect it.
    kube_connections: int = 100
    kube_request_timeout_seconds: float = 10.0
    # Bodies beyond this are refused before parsing (the largest valid one is ~20 KiB).
    max_body_bytes: int = 64 * 1024
    # Bodies that may carry an image (POST /v1/avatars, and POST /v1/sessions with an inline
    # avatar): a 10 MB image as base64 is ~13.4 MB.
    max_image_body_bytes: int = 15 * 1024 * 1024
    # Such bodies (over max_body_bytes) in flight at once; more get 503 at_capacity. Each holds
    # up to ~70 MB while it is parsed (a base64 image as bytes, text and decoded) or 15 MiB
    # spooled to /tmp (multipart): this bounds both.
    max_large_bodies: int = 4
    # Avatar images: the store directory (a PersistentVolume shared read-only with the workers;
    # the same variable, FACECAST_AVATAR_STORE, tells the worker where it is mounted).
    avatar_store: str = contract.AVATAR_STORE_DIR
    # An insightface model pack (a directory of ONNX models) supplied by the platform operator;
    # empty: the bundled default detector (BlazeFace + Face Mesh, Apache-2.0).
    face_model_dir: str = ""
    # Threads for decoding, face analysis and encoding (each upload uses one at a time).
    avatar_threads: int = 2
    # Images fetched or waiting for one of those threads, on top of those being processed;
    # more get 503 at_capacity (each holds up to 10 MB, and a decode up to 128 MB).
    avatar_queue: int = 4
    # Retry-After of those two 503s: an upload takes about a second.
    busy_retry_after_seconds: int = 2
    # Fetching an image URL: the whole download must finish within this.
    avatar_fetch_timeout_seconds: float = 10.0
    # Where workers may connect besides public addresses: the platform's own LiveKit, as
    # comma-separated host names and CIDR ranges (FACECAST_TRANSPORT_ALLOWED_HOSTS / _CIDRS,
    # the same variables the operator passes on to the workers, which check again).
    transport_allowed_hosts: str = ""
    transport_allowed_cidrs: str = ""
    # The OpenAI-compatible speech server's voices, as JSON (avatar_crds.voices); empty: only
    # the offline espeak-ng voices.
    tts_openai_voices: str = ""
    # Managed rooms (`transport: {"type": "managed"}`): the platform's LiveKit server, which
    # the workers join (so it must be allowed above if it is not public) and the API calls.
    # Empty: managed rooms are off (400 managed_rooms_not_configured).
    managed_livekit_url: str = ""
    # What clients are told to join, when it differs (an in-cluster URL for the workers, a
    # public one for browsers); empty: managed_livekit_url.
    managed_livekit_client_url: str = ""
    managed_livekit_api_key: str = ""
    # The API secret: better from a mounted Secret file (the chart's way) than in the env.
    managed_livekit_api_secret: str = dataclasses.field(default="", repr=False)
    managed_livekit_api_secret_file: str = ""
    # Viewers' tokens are for joining only (LiveKit checks them when a client connects).
    managed_client_token_ttl_seconds: int = 600
    # How often each replica deletes the rooms of finished sessions (sessions/managed.py),
    # and how old a room without a session must be before it counts as left over.
    managed_room_sweep_seconds: float = 10.0
    managed_room_grace_seconds: float = 60.0
    # The secret Kaltura's session tokens are keyed from (compat/kaltura_token.py), a mounted
    # Secret file; empty: the managed LiveKit API secret (Kaltura needs managed rooms anyway).
    session_token_secret_file: str = ""
    # The quality tiers this installation serves (contract.ENV_SERVED_QUALITIES), set by the
    # chart: the neural ones only where the workers have the model volume; empty: mock, lite.
    served_qualities: str = ""

    def __post_init__(self) -> None:
        self.served()  # an unknown tier fails at start-up
        self.managed_livekit()  # half a LiveKit configuration fails at start-up too
        self.transport_allow_list()  # a bad range fails at start-up, not at the first create
        self.voice_catalogue()  # and so does a bad voice list

    def served(self) -> frozenset[Quality]:
        try:
            return parse_served_qualities(self.served_qualities)
        except ValueError as error:
            raise ValueError(f"{contract.ENV_SERVED_QUALITIES}: {error}") from None

    def voice_catalogue(self) -> VoiceCatalogue:
        return voices.catalogue(self.tts_openai_voices)

    def managed_livekit(self) -> ManagedLiveKit | None:
        if not self.managed_livekit_url:
            return None
        secret = self.managed_livekit_api_secret
        if self.managed_livekit_api_secret_file:
            secret = Path(self.managed_livekit_api_secret_file).read_text().strip()
        if not self.managed_livekit_api_key or not secret:
            raise ValueError(
                f"{ENV_PREFIX}MANAGED_LIVEKIT_URL is set: {ENV_PREFIX}MANAGED_LIVEKIT_API_KEY"
                f" and {ENV_PREFIX}MANAGED_LIVEKIT_API_SECRET(_FILE) must be too"
            )
        return ManagedLiveKit(
            url=self.managed_livekit_url,
            client_url=self.managed_livekit_client_url or self.managed_livekit_url,
            api_key=self.managed_livekit_api_key,
            api_secret=secret,
            client_token_ttl_seconds=self.managed_client_token_ttl_seconds,
        )

    def session_token_secret(self) -> str | None:
        """The installation secret session tokens are keyed from; None: there is none."""
        if self.session_token_secret_file:
            secret = Path(self.session_token_secret_file).read_text().strip()
            if not secret:
                raise ValueError(f"{ENV_PREFIX}SESSION_TOKEN_SECRET_FILE is empty")
            return secret
        managed = self.managed_livekit()
        return None if managed is None else managed.api_secret

    def transport_allow_list(self) -> AddressAllowList:
        try:
            return AddressAllowList.parse(
                self.transport_allowed_hosts, self.transport_allowed_cidrs
            )
        except ValueError as error:
            raise ValueError(f"{contract.ENV_TRANSPORT_ALLOWED_CIDRS}: {error}") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """`FACECAST_MAX_QUEUED=5` sets `max_queued`; unknown variables are ignored."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = source.get(ENV_PREFIX + field.name.upper())
            if raw is None:
                continue
            kind = type(getattr(cls(), field.name))
            try:
                values[field.name] = kind(raw)
            except ValueError as error:
                raise ValueError(f"{ENV_PREFIX}{field.name.upper()}={raw!r}: {error}") from error
        return cls(**values)
