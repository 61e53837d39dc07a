"""API keys: their shape, their hash, where they are read from, and the lookup cache."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from api_shim.auth import (
    KEY_PATTERN,
    Authenticator,
    generate_api_key,
    hash_api_key,
    index_keys,
    key_from_headers,
    new_key_record,
)
from api_shim.errors import ApiError, ErrorType
from avatar_crds.meta import ObjectMeta
from avatar_crds.tenant import Plan, Tenant, TenantSpec


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _tenant(name: str, *keys: str, rpm: int = 600) -> Tenant:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    records = [new_key_record(key, created_at=created) for key in keys]
    return Tenant(
        metadata=ObjectMeta(name=name),
        spec=TenantSpec(plan=Plan(requests_per_minute=rpm), api_keys=records),
    )


def test_keys_are_fc_and_43_urlsafe_characters_and_never_repeat() -> None:
    keys = {generate_api_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(KEY_PATTERN.match(key) and len(key) == 46 for key in keys)


def test_only_the_sha256_and_a_short_hint_are_stored() -> None:
    key = generate_api_key()
    record = new_key_record(key, created_at=datetime.now(UTC), description="ci")
    assert record.sha256 == hashlib.sha256(key.encode()).hexdigest() == hash_api_key(key)
    assert record.hint == key[-4:]
    assert key not in record.model_dump_json()
    assert record.id.startswith("key_")


@pytest.mark.parametrize(
    ("x_api_key", "authorization", "expected"),
    [
        ("fc_a", None, "fc_a"),
        (None, "Bearer fc_b", "fc_b"),
        (None, "bearer   fc_b ", "fc_b"),
        ("fc_a", "Bearer fc_b", "fc_a"),
        (None, "Basic dXNlcjpwYXNz", None),
        (None, "Bearer ", None),
        (None, None, None),
        ("", None, None),
    ],
)
def test_the_key_comes_from_x_api_key_or_a_bearer_token(
    x_api_key: str | None, authorization: str | None, expected: str | None
) -> None:
    assert key_from_headers(x_api_key, authorization) == expected


def test_the_index_maps_each_hash_to_its_tenant() -> None:
    one, two, three = generate_api_key(), generate_api_key(), generate_api_key()
    index = index_keys([_tenant("acme", one, two), _tenant("globex", three)])
    assert {principal.tenant for principal in index.values()} == {"acme", "globex"}
    assert index[hash_api_key(three)].tenant == "globex"
    assert index[hash_api_key(one)].key_id != index[hash_api_key(two)].key_id


class _Loader:
    def __init__(self, tenants: list[Tenant]) -> None:
        self.tenants = tenants
        self.loads = 0

    async def __call__(self) -> list[Tenant]:
        self.loads += 1
        return list(self.tenants)


def _authenticator(loader: _Loader, clock: FakeClock) -> Authenticator:
    return Authenticator(loader, ttl=5.0, miss_reload=1.0, clock=clock)


@pytest.mark.anyio
async def test_a_known_key_authenticates_from_the_cache() -> None:
    key = generate_api_key()
    loader, clock = _Loader([_tenant("acme", key)]), FakeClock()
    auth = _authenticator(loader, clock)
    assert (await auth.authenticate(key)).tenant == "acme"
    assert (await auth.authenticate(key)).tenant == "acme"
    assert loader.loads == 1
    clock.now += 5.0
    await auth.authenticate(key)
    assert loader.loads == 2


@pytest.mark.anyio
@pytest.mark.parametrize("key", [None, "", "fc_short", "sk_" + "a" * 43, "fc_" + "!" * 43])
async def test_missing_or_malformed_keys_fail_without_a_lookup(key: str | None) -> None:
    loader = _Loader([])
    with pytest.raises(ApiError) as caught:
        await _authenticator(loader, FakeClock()).authenticate(key)
    assert (caught.value.status, caught.value.type) == (401, ErrorType.AUTHENTICATION)
    assert loader.loads == 0


@pytest.mark.anyio
async def test_a_new_key_works_at_once_but_unknown_keys_reload_at_most_once_a_second() -> None:
    loader, clock = _Loader([]), FakeClock()
    auth = _authenticator(loader, clock)
    stranger = generate_api_key()
    for _ in range(3):
        with pytest.raises(ApiError):
            await auth.authenticate(stranger)
    assert loader.loads == 1  # the first (empty cache) load; misses within a second reuse it
    fresh = generate_api_key()
    loader.tenants = [_tenant("acme", fresh)]
    clock.now += 1.0
    assert (await auth.authenticate(fresh)).tenant == "acme"
    assert loader.loads == 2


@pytest.mark.anyio
async def test_a_revoked_key_stops_working_after_the_ttl() -> None:
    key = generate_api_key()
    loader, clock = _Loader([_tenant("acme", key)]), FakeClock()
    auth = _authenticator(loader, clock)
    await auth.authenticate(key)
    loader.tenants = [_tenant("acme")]
    clock.now += 5.0
    with pytest.raises(ApiError):
        await auth.authenticate(key)
