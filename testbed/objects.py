"""Manifests for tests and benchmarks: put straight into the cluster, bypassing the API, or
handed to the operator's code in unit tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from avatar_crds import contract
from avatar_crds.ids import AVATAR_PREFIX, to_resource_name
from avatar_crds.meta import API_VERSION


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
) -> dict[str, Any]:
    """A valid AvatarSession `SAMPLE_SESSION` in namespace `fc` (LiveKit transport, `lite`,
    token Secret `<name>-token`), with the given spec fields changed."""
    metadata = {"name": SAMPLE_SESSION, "namespace": "fc", **({"uid": uid} if uid else {})}
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "AvatarSession",
        "metadata": metadata,
        "spec": {
            "tenant": "acme",
            "avatarRef": "av-01jcz3v7m4q8r2t6w9x0y1z2a3",
            "quality": "lite",
            "transport": {"type": "livekit", "livekit": {"url": "ws://x", "roomName": "r"}},
            "tokenSecretRef": {"name": f"{SAMPLE_SESSION}-token"},
            **(spec or {}),
        },
    }
    if status is not None:
        body["status"] = dict(status)
    return body
