"""What the operator's kopf indexes keep of a watched object: a copy of the fields it reads,
without the server's `managedFields` (the bulk of an object several writers patch)."""

from __future__ import annotations

from typing import Any, cast

import kopf

from avatar_operator.handlers import indexed_copy

MANAGED = [
    {"manager": "api-shim", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {}},
    {"manager": "avatar-operator", "operation": "Update", "subresource": "status"},
]


def _session() -> dict[str, Any]:
    return {
        "apiVersion": "facecast.io/v1alpha1",
        "kind": "AvatarSession",
        "metadata": {
            "name": "s-1",
            "namespace": "tenant-a",
            "labels": {"facecast.io/tenant": "a"},
            "resourceVersion": "42",
            "managedFields": MANAGED,
        },
        "spec": {"quality": "lite"},
        "status": {"phase": "queued"},
    }


def test_an_indexed_session_keeps_what_the_operator_reads_and_not_managed_fields() -> None:
    raw = _session()
    body = indexed_copy(kopf.Body(cast(kopf.RawBody, raw)))

    assert "managedFields" not in body["metadata"]
    assert body["metadata"]["labels"] == {"facecast.io/tenant": "a"}
    assert body["metadata"]["resourceVersion"] == "42"
    assert (body["spec"], body["status"]) == (raw["spec"], raw["status"])
    # The watched object itself is left as it came.
    assert raw["metadata"]["managedFields"] == MANAGED


def test_an_indexed_node_has_no_managed_fields_either() -> None:
    raw = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "managedFields": MANAGED}}
    assert indexed_copy(kopf.Body(cast(kopf.RawBody, raw))) == {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n"},
    }
