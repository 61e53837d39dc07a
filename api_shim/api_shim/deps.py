"""FastAPI dependencies: the app's services (and the indexes they share), the calling tenant
(authenticated and rate limited by AuthenticationMiddleware, with the functions here) and the
Idempotency-Key header."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Header, Request, Security
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.routing import BaseRoute
from starlette.types import Scope

from api_shim import idempotency
from api_shim.auth import Authenticator, Principal, key_from_headers
from api_shim.avatar_index import AvatarIndex
from api_shim.avatars.service import AvatarService
from api_shim.errors import internal_error
from api_shim.informer import WatchSource
from api_shim.kube import Kube
from api_shim.middleware import PRINCIPAL_STATE, Authenticate
from api_shim.ratelimit import RateLimiter
from api_shim.sessions.index import SessionIndex
from api_shim.sessions.service import SessionService
from api_shim.sessions.speech import SpeechService
from api_shim.settings import Settings

if TYPE_CHECKING:
    # Only named here: importing api_shim.compat from this module would be circular.
    from api_shim.compat.kaltura_token import SessionTokens


@dataclass(frozen=True)
class Indexes:
    """The watch-backed views of the namespace that the services read instead of the API
    server. Each starts watching on first use."""

    sessions: SessionIndex
    avatars: AvatarIndex

    @classmethod
    def watching(cls, source: WatchSource) -> Indexes:
        return cls(SessionIndex(source), AvatarIndex(source))

    def stop(self) -> None:
        """Stop watching, from any thread."""
        self.sessions.stop()
        self.avatars.stop()

    async def aclose(self) -> None:
        """Stop watching and wait for the watches to end (from the loop they run on)."""
        await self.sessions.aclose()
        await self.avatars.aclose()


@dataclass(frozen=True)
class Services:
    settings: Settings
    kube: Kube
    indexes: Indexes
    sessions: SessionService
    speech: SpeechService
    authenticator: Authenticator
    rate_limiter: RateLimiter
    avatars: AvatarService
    # Signs and checks Kaltura's session tokens; None: no installation secret to key it.
    session_tokens: SessionTokens | None = None


# Dependencies are `async def` although none awaits: FastAPI runs a plain `def` dependency on its
# thread pool, a hand-off that cost more than the rest of the dependency work together.


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


# Declared for the OpenAPI security schemes; the key itself is parsed from the raw headers so
# that both schemes share one code path.
_api_key_scheme = APIKeyHeader(
    name="x-api-key", auto_error=False, description="Your API key, `fc_...`."
)
_bearer_scheme = HTTPBearer(
    auto_error=False, description="The same API key as `Authorization: Bearer fc_...`."
)


async def authenticate_request(services: Services, scope: Scope) -> Principal:
    """The caller of a route that needs a key, rate limited. Run by AuthenticationMiddleware,
    before the body is read."""
    headers = Headers(scope=scope)
    key = key_from_headers(headers.get("x-api-key"), headers.get("authorization"))
    principal = await services.authenticator.authenticate(key)
    structlog.contextvars.bind_contextvars(tenant=principal.tenant, key_id=principal.key_id)
    services.rate_limiter.check(principal.tenant, principal.plan.requests_per_minute)
    return principal


async def authenticated(
    request: Request,
    _api_key: Annotated[str | None, Security(_api_key_scheme)] = None,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)] = None,
) -> Principal:
    """The caller AuthenticationMiddleware authenticated: every route that depends on this is
    one it authenticates (key_routes)."""
    principal = getattr(request.state, PRINCIPAL_STATE, None)
    if not isinstance(principal, Principal):
        # The middleware is missing, or disagrees with the router: fail closed.
        raise internal_error()
    return principal


def key_routes(
    app: FastAPI, authenticators: Mapping[Callable[..., Any], Authenticate]
) -> list[tuple[RouteContext, Authenticate | None]]:
    """Every route of `app` in the router's order, and how its caller is authenticated: the
    authenticator of the caller dependency it has (`authenticated`, or a compatibility
    service's own), however deeply; None for a route with none (AuthenticationMiddleware's
    `routes`)."""
    return [
        (context, _authenticator_of(context.original_route, authenticators))
        for context in iter_route_contexts(app.routes)
    ]


def _authenticator_of(
    route: BaseRoute, authenticators: Mapping[Callable[..., Any], Authenticate]
) -> Authenticate | None:
    if not isinstance(route, APIRoute):
        return None
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if dependency.call is not None and dependency.call in authenticators:
            return authenticators[dependency.call]
        pending.extend(dependency.dependencies)
    return None


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias=idempotency.HEADER,
            description=(
                "Makes the POST safe to retry: the same key with the same body returns the"
                " original result; with a different body, 409 `idempotency_key_reused`."
                f" 1-{idempotency.MAX_KEY_LENGTH} printable ASCII characters."
            ),
            # Documented only: validate_key checks the same pattern and answers with its own
            # error code (`invalid_idempotency_key`).
            json_schema_extra={"pattern": idempotency.KEY_PATTERN},
        ),
    ] = None,
) -> str | None:
    return None if key is None else idempotency.validate_key(key)


ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(authenticated)]
IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]
