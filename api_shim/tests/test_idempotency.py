"""Idempotency keys: scoping, fingerprints, claims and replay checks, and the locks that serialise
them in one process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from api_shim import idempotency
from api_shim.errors import ApiError, ErrorType
from api_shim.locks import KeyedLocks
from api_shim.sessions import mapping
from api_shim.sessions.schemas import CreateSessionRequest

RequestFactory = Callable[..., dict[str, Any]]


def test_key_hashes_are_40_hex_and_scoped_by_tenant() -> None:
    acme = idempotency.key_hash("acme", "order-1")
    assert len(acme) == 40
    assert int(acme, 16) >= 0
    assert acme == idempotency.key_hash("acme", "order-1")
    assert acme != idempotency.key_hash("globex", "order-1")


@pytest.mark.parametrize(
    "key", ["", "x" * 256, "caf\u00e9", "tab\there", " ", " lead", "trail ", "new\nline"]
)
def test_bad_keys_are_refused_naming_the_header(key: str) -> None:
    with pytest.raises(ApiError) as caught:
        idempotency.validate_key(key)
    assert (caught.value.status, caught.value.param) == (400, "Idempotency-Key")


@pytest.mark.parametrize("key", ["9f1c-order:42", "a", "with inner space", "~" * 255])
def test_good_keys_pass(key: str) -> None:
    assert idempotency.validate_key(key) == key


def _fingerprint(body: dict[str, Any]) -> str:
    return idempotency.fingerprint(CreateSessionRequest.model_validate(body))


def test_fingerprints_ignore_key_order_and_spelled_out_defaults(
    make_request: RequestFactory,
) -> None:
    body = make_request(metadata={"a": 1, "b": 2})
    reordered = dict(reversed(list(make_request(metadata={"b": 2, "a": 1}).items())))
    with_defaults = make_request(metadata={"a": 1, "b": 2}, aspect_ratio="4:3")
    assert _fingerprint(body) == _fingerprint(reordered) == _fingerprint(with_defaults)


def test_fingerprints_see_every_change_including_the_token(
    make_request: RequestFactory, worker_token: str
) -> None:
    base = _fingerprint(make_request())
    assert base != _fingerprint(make_request(quality="mock"))
    other_token = make_request()
    other_token["transport"]["worker_token"] = worker_token + "-2"
    assert base != _fingerprint(other_token)
    assert worker_token not in base


NOW = datetime(2026, 12, 2, 17, 0, 0, 123456, tzinfo=UTC)
SESSION_NAME = "sess-01jcz3v7m4q8r2t6w9x0y1z2a3"


def _claim_with(fingerprint: str, **metadata: Any) -> idempotency.Claim:
    """A claim as the API server returns it: the body we send plus server-set metadata."""
    raw = idempotency.claim_body(
        tenant="acme",
        key_hash=idempotency.key_hash("acme", "order-1"),
        session_name=SESSION_NAME,
        fingerprint=fingerprint,
        namespace="facecast",
        now=NOW,
    )
    raw["metadata"].update({"uid": "u-1", "resourceVersion": "42", **metadata})
    return idempotency.Claim.of(raw)


def test_a_claim_is_named_by_the_key_hash_and_names_its_session() -> None:
    claim = _claim_with("abc")
    key_hash = idempotency.key_hash("acme", "order-1")
    assert claim.name == f"idem-{key_hash}" == idempotency.claim_name(key_hash)
    assert (claim.key_hash, claim.session_name, claim.fingerprint) == (
        key_hash,
        SESSION_NAME,
        "abc",
    )
    assert (claim.uid, claim.resource_version) == ("u-1", "42")
    assert claim.session_marks() == (
        {idempotency.LABEL_KEY_HASH: key_hash},
        {idempotency.ANNOTATION_FINGERPRINT: "abc"},
    )
    assert claim.expires_at == NOW + timedelta(seconds=idempotency.CLAIM_SECONDS)


def test_an_uncommitted_claim_expires_after_its_lease_and_a_committed_one_never() -> None:
    claim = _claim_with("abc")
    assert not claim.committed
    assert not claim.expired(claim.expires_at - timedelta(microseconds=1))
    assert claim.expired(claim.expires_at)
    owner = {"apiVersion": "facecast.io/v1alpha1", "kind": "AvatarSession", "uid": "s-1"}
    committed = _claim_with("abc", ownerReferences=[owner])
    assert committed.committed
    assert not committed.expired(claim.expires_at + timedelta(days=1))


def test_a_commit_is_conditional_on_the_claim_as_read(make_request: RequestFactory) -> None:
    session = mapping.build_session(
        CreateSessionRequest.model_validate(make_request()),
        name=SESSION_NAME,
        namespace="facecast",
        tenant="acme",
        max_duration_seconds=600,
    )
    session.metadata.uid = "s-1"
    patch = idempotency.commit_patch(_claim_with("abc"), session)
    assert patch["metadata"]["resourceVersion"] == "42"
    [owner] = patch["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("AvatarSession", SESSION_NAME, "s-1")


def test_a_replay_with_the_same_fingerprint_passes() -> None:
    idempotency.check_replay(_claim_with("abc"), "abc")


def test_a_reused_key_with_another_body_is_a_409_conflict() -> None:
    with pytest.raises(ApiError) as caught:
        idempotency.check_replay(_claim_with("abc"), "def")
    assert (caught.value.status, caught.value.type, caught.value.code) == (
        409,
        ErrorType.CONFLICT,
        "idempotency_key_reused",
    )


@pytest.mark.anyio
async def test_keyed_locks_serialise_one_key_and_are_forgotten_afterwards() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    first_inside = anyio.Event()

    async def first() -> None:
        async with locks.hold("k"):
            order.append("first in")
            first_inside.set()
            await anyio.lowlevel.checkpoint()  # yield so the second one gets to wait on the lock
            order.append("first out")

    async def second() -> None:
        await first_inside.wait()
        async with locks.hold("k"):
            order.append("second in")

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        group.start_soon(second)
    assert order == ["first in", "first out", "second in"]
    assert len(locks) == 0
