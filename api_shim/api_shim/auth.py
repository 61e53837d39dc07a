"""API keys: `fc_` + 43 url-safe characters (256 random bits), stored only as SHA-256 hex in
`Tenant.spec.apiKeys`. A key's 256 bits make a plain, unsalted hash safe and let a lookup go
straight by hash."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from api_shim.errors import authentication_failed
from avatar_crds.ids import API_KEY_PREFIX, new_public_id
from avatar_crds.redact import API_KEY_SECRET_PREFIX
from avatar_crds.tenant import ApiKey, Plan, Tenant, TenantUsage

KEY_PREFIX = API_KEY_SECRET_PREFIX  # in avatar_crds: every component's log redaction knows it
KEY_RANDOM_BYTES = 32
KEY_PATTERN = re.compile(rf"^{KEY_PREFIX}[A-Za-z0-9_-]{{43}}$")
HINT_LENGTH = 4


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key_record(key: str, *, created_at: datetime, description: str | None = None) -> ApiKey:
    """What the Tenant keeps of a key: never the key itself."""
    return ApiKey(
        id=new_public_id(API_KEY_PREFIX),
        sha256=hash_api_key(key),
        hint=key[-HINT_LENGTH:],
        created_at=created_at,
        description=description,
    )


def key_from_headers(x_api_key: str | None, authorization: str | None) -> str | None:
    """`x-api-key: fc_...` or `Authorization: Bearer fc_...`; x-api-key wins if both are sent."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return None


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant, which key, and the tenant's plan and usage as of the last
    cache load (at most `auth_cache_ttl_seconds` old), which is what limits are checked
    against: a plan change or the operator's usage update takes effect within that time."""

    tenant: str
    key_id: str
    plan: Plan
    usage: TenantUsage


def index_keys(tenants: Iterable[Tenant]) -> dict[str, Principal]:
    index: dict[str, Principal] = {}
    for tenant in tenants:
        name = tenant.metadata.name
        if name is None:
            continue
        for key in tenant.spec.api_keys:
            index[key.sha256] = Principal(
                tenant=name, key_id=key.id, plan=tenant.spec.plan, usage=tenant.status.usage
            )
    return index


class Authenticator:
    """Key hash -> Principal, from a cache of all Tenants that reloads every `ttl` seconds and,
    rate-limited, when a well-formed key is missing (a key minted a moment ago works at once)."""

    def __init__(
        self,
        load_tenants: Callable[[], Awaitable[list[Tenant]]],
        *,
        ttl: float,
        miss_reload: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load_tenants = load_tenants
        self._ttl = ttl
        self._miss_reload = miss_reload
        self._clock = clock
        self._index: dict[str, Principal] = {}
        self._by_key_id: dict[str, Principal] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise authentication_failed(
                "No API key. Send it as `x-api-key: <key>` or `Authorization: Bearer <key>`."
            )
        if KEY_PATTERN.match(key) is None:
            raise authentication_failed("The API key is not valid.")
        digest = hash_api_key(key)
        if self._stale(self._ttl):
            await self._reload(self._ttl)
        principal = self._index.get(digest)
        if principal is None and self._stale(self._miss_reload):
            await self._reload(self._miss_reload)
            principal = self._index.get(digest)
        if principal is None:
            raise authentication_failed("The API key is not valid.")
        return principal

    async def principal_of_key(self, tenant: str, key_id: str) -> Principal:
        """The caller a token minted for key `key_id` stands for (compat/kaltura_token.py),
        while the tenant still has that key: revoking a key ends its tokens too."""
        if self._stale(self._ttl):
            await self._reload(self._ttl)
        principal = self._by_key_id.get(key_id)
        if principal is None or principal.tenant != tenant:
            raise authentication_failed("The API key behind this token is no longer valid.")
        return principal

    def _stale(self, max_age: float) -> bool:
        return self._loaded_at is None or self._clock() - self._loaded_at >= max_age

    async def _reload(self, max_age: float) -> None:
        # One reload at a time; whoever waited for it finds the index fresh and skips its own.
        async with self._lock:
            if not self._stale(max_age):
                return
            started = self._clock()
            self._index = index_keys(await self._load_tenants())
            self._by_key_id = {principal.key_id: principal for principal in self._index.values()}
            self._loaded_at = started
