"""The FastAPI application: wiring only."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api_shim import compat
from api_shim.auth import Authenticator
from api_shim.avatars.fetch import Fetcher
from api_shim.avatars.pipeline import AvatarPipeline, default_detector
from api_shim.avatars.service import AvatarService
from api_shim.avatars.store import FilesystemStore
from api_shim.bodies import BodyLimits
from api_shim.capacity import Slots
from api_shim.compat.kaltura_token import SessionTokens
from api_shim.deps import (
    Indexes,
    Services,
    authenticate_request,
    authenticated,
    key_routes,
)
from api_shim.errors import (
    ApiError,
    ErrorType,
    error_response,
    install_error_handlers,
    request_id_of,
)
from api_shim.kube import Kube, KubeConflictError, KubeInvalidError
from api_shim.managed_rooms import ManagedRooms
from api_shim.middleware import (
    AuthenticationMiddleware,
    BodyMiddleware,
    RequestContextMiddleware,
)
from api_shim.openapi import build_openapi
from api_shim.ratelimit import RateLimiter
from api_shim.routes import avatars as avatars_routes
from api_shim.routes import health, sessions, speech, usage, voices
from api_shim.sessions.service import SessionService, utc_now
from api_shim.sessions.speech import SpeechService
from api_shim.settings import Settings

if TYPE_CHECKING:
    from api_shim.sessions.managed import RoomSweeper

VERSION = "0.1.0"


class FacecastApi(FastAPI):
    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = build_openapi(self)
        return self.openapi_schema


def create_app(
    settings: Settings,
    kube: Kube,
    *,
    now: Callable[[], datetime] = utc_now,
    monotonic: Callable[[], float] = time.monotonic,
    avatar_pipeline: AvatarPipeline | None = None,
    indexes: Indexes | None = None,
) -> FastAPI:
    """`kube` is owned by the caller (closed by whoever made it), so tests can share one; so is
    `avatar_pipeline` when given (it holds the face models), and so are `indexes` when given.
    Indexes the app builds itself watch through `kube` and stop when the app shuts down."""
    pipeline = avatar_pipeline or AvatarPipeline(
        functools.partial(default_detector, settings.face_model_dir),
        fetcher=Fetcher(timeout_seconds=settings.avatar_fetch_timeout_seconds),
        threads=settings.avatar_threads,
        queue=settings.avatar_queue,
        retry_after=settings.busy_retry_after_seconds,
    )
    own_indexes = indexes is None
    indexes = Indexes.watching(kube) if indexes is None else indexes
    avatars = AvatarService(kube, indexes.avatars, pipeline, FilesystemStore(settings.avatar_store))
    rooms, sweeper = _managed_rooms(settings, kube)
    sessions_service = SessionService(
        kube, indexes.sessions, settings, avatars, now=now, managed=rooms
    )
    services = Services(
        settings=settings,
        kube=kube,
        indexes=indexes,
        sessions=sessions_service,
        speech=SpeechService(kube, sessions_service, settings.voice_catalogue(), now=now),
        authenticator=Authenticator(
            kube.list_tenants,
            ttl=settings.auth_cache_ttl_seconds,
            miss_reload=settings.auth_miss_reload_seconds,
            clock=monotonic,
        ),
        rate_limiter=RateLimiter(clock=monotonic),
        avatars=avatars,
        session_tokens=_session_tokens(settings),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if sweeper is not None:
            sweeper.start()
        yield
        if sweeper is not None:
            await sweeper.aclose()
        if own_indexes:
            await services.indexes.aclose()

    app = FacecastApi(
        title="Facecast API",
        version=VERSION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "sessions", "description": "Talking-avatar sessions."},
            {"name": "avatars", "description": "Portraits that sessions animate."},
            {"name": "speech", "description": "What a session's avatar says, and stopping it."},
            {"name": "usage", "description": "Your plan and what you use of it."},
            {"name": "voices", "description": "The voices sessions may speak with."},
            {"name": "health", "description": "Probes for Kubernetes."},
            *compat.openapi_tags(),
        ],
    )
    app.state.services = services
    install_error_handlers(app)
    app.add_exception_handler(KubeInvalidError, _on_kube_invalid)
    app.add_exception_handler(KubeConflictError, _on_kube_conflict)
    app.include_router(sessions.router)
    app.include_router(speech.router)
    app.include_router(avatars_routes.router)
    app.include_router(usage.router)
    app.include_router(voices.router)
    app.include_router(health.router)
    compat.mount(app)
    limits = BodyLimits(
        default=settings.max_body_bytes,
        large={
            avatars_routes.router.prefix: settings.max_image_body_bytes,
            sessions.router.prefix: settings.max_image_body_bytes,
            **dict.fromkeys(compat.image_paths(), settings.max_image_body_bytes),
        },
    )
    large_bodies = Slots(
        settings.max_large_bodies,
        what="large requests",
        retry_after=settings.busy_retry_after_seconds,
    )
    # The last one added is the outermost: see middleware.py for the order and why.
    app.add_middleware(BodyMiddleware, limits=limits, slots=large_bodies)
    app.add_middleware(
        AuthenticationMiddleware,
        routes=functools.partial(
            key_routes,
            app,
            {
                authenticated: functools.partial(authenticate_request, services),
                **compat.authenticators(services),
            },
        ),
    )
    app.add_middleware(compat.ErrorTranslationMiddleware, services=compat.SERVICES)
    app.add_middleware(RequestContextMiddleware, limits=limits)
    return app


def _managed_rooms(
    settings: Settings, kube: Kube
) -> tuple[ManagedRooms | None, RoomSweeper | None]:
    """The platform's LiveKit server and the sweep of its finished rooms, if configured.
    Imported only then: the LiveKit server SDK is needed for managed rooms alone."""
    config = settings.managed_livekit()
    if config is None:
        return None, None
    from api_shim.sessions.managed import LiveKitRooms, RoomSweeper

    rooms = LiveKitRooms(config)
    sweeper = RoomSweeper(
        rooms,
        kube.list_sessions,
        interval_seconds=settings.managed_room_sweep_seconds,
        grace_seconds=settings.managed_room_grace_seconds,
    )
    return rooms, sweeper


def _session_tokens(settings: Settings) -> SessionTokens | None:
    secret = settings.session_token_secret()
    return None if secret is None else SessionTokens.of(secret)


async def _on_kube_invalid(request: Request, exc: Exception) -> JSONResponse:
    """The cluster's schema refused what our own validation let through: say what it said
    (custom resources hold nothing secret)."""
    error = ApiError(ErrorType.UNPROCESSABLE, "rejected_by_cluster", str(exc))
    return error_response(error, request_id_of(request))


async def _on_kube_conflict(request: Request, _exc: Exception) -> JSONResponse:
    error = ApiError(
        ErrorType.CONFLICT, "concurrent_update", "The session changed meanwhile. Retry."
    )
    return error_response(error, request_id_of(request))
