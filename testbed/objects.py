"""Manifests for tests and benchmarks: put straight into the cluster, bypassing the API, or
handed to the operator's code in unit tests; and the few values those unit tests share (the
session's spec, the operator's limits, a moment, a worker pod's facts and a pool worker's pod)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from avatar_crds import contract
from avatar_crds.ids import AVATAR_PREFIX, to_resource_name
from avatar_crds.meta import API_VERSION
from avatar_crds.pool import WorkerPool
from avatar_crds.session import AvatarSessionSpec
from avatar_operator import pool_objects
from avatar_operator.machine import Limits
from avatar_operator.observe import PodFacts
from avatar_operator.settings import WorkerPodSettings


def avatar_manifest(
    public_id: str, tenant: str, *, visibility: str = "tenant", detector: str = "test"
) -> dict[str, Any]:
    """A valid Avatar `av_<ULID>` for `tenant`, as the API would record an upload (the image
    file itself is not made: nothing here renders it)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Avatar",
        "metadata": {"name": to_resource_name(public_id, AVATAR_PREFIX)},
        "spec": {
            "tenant": tenant,
            "visibility": visibility,
            "image": {
                "uri": f"file://{contract.AVATAR_STORE_DIR}/{public_id}.jpg",
                "width": 600,
                "height": 800,
                "sha256": "0" * 64,
                "sizeBytes": 51234,
            },
            "face": {
                "box": {"x": 150, "y": 200, "width": 300, "height": 360},
                "landmarks": [{"x": 250 + i, "y": 330 + i} for i in range(5)],
                "score": 0.93,
                "detector": detector,
            },
        },
    }


SAMPLE_SESSION = "sess-01jcz3v7m4q8r2t6w9x0y1z2a3"


def session_manifest(
    *,
    spec: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
    uid: str | None = None,
    name: str = SAMPLE_SESSION,
) -> dict[str, Any]:
    """A valid AvatarSession `name` in namespace `fc` (LiveKit transport, `lite`, token Secret
    `<name>-token`), with the given spec fields changed."""
    metadata = {"name": name, "namespace": "fc", **({"uid": uid} if uid else {})}
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "AvatarSession",
        "metadata": metadata,
        "spec": {
            "tenant": "acme",
            "avatarRef": "av-01jcz3v7m4q8r2t6w9x0y1z2a3",
            "quality": "lite",
            "transport": {"type": "livekit", "livekit": {"url": "ws://x", "roomName": "r"}},
            "tokenSecretRef": {"name": f"{name}-token"},
            **(spec or {}),
        },
    }
    if status is not None:
        body["status"] = dict(status)
    return body


# --- shared by the operator's unit tests ----------------------------------------------------

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
"""The moment the operator's unit tests step a session at."""

SPEC = AvatarSessionSpec.model_validate(session_manifest(spec={"quality": "mock"})["spec"])
"""`session_manifest`'s spec on the `mock` tier, for the operator's machine."""

LIMITS = Limits(
    start_timeout=timedelta(seconds=60),
    heartbeat_timeout=timedelta(seconds=20),
    finalize_timeout=timedelta(seconds=30),
    terminal_ttl=timedelta(hours=1),
)
"""The operator's timeouts in its unit tests."""

SAMPLE_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
"""Shaped like a LiveKit token (a JWT), for tests that it never reaches a log or a status."""


def worker_pod_facts(**changes: Any) -> PodFacts:
    """What the operator reads from a session's worker pod running on node `gpu-0`, with
    `changes`."""
    base: dict[str, Any] = {
        "name": "s-worker",
        "uid": "u1",
        "phase": "Running",
        "node_name": "gpu-0",
        "deleting": False,
        "exit_message": None,
    }
    return PodFacts(**{**base, **changes})


def pool_worker_pod(settings: WorkerPodSettings) -> dict[str, Any]:
    """The pod the operator would make for a worker of a plain mock pool under `settings`
    (the operator's shared worker pieces: security, TTS, transport allow-list, network)."""
    pool = WorkerPool.model_validate(
        {
            "metadata": {"name": "mock", "namespace": "fc", "uid": "pool-uid"},
            "spec": {
                "qualities": ["mock"],
                "worker": {"image": "facecast/worker:test", "gpus": 0},
                "maxWorkers": 1,
            },
        }
    )
    return pool_objects.worker_pod(pool, "mock-worker-x7k2p", settings)
