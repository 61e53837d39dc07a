"""The real node's pure parts, without root: image names as containerd spells them, and the
device plugin's messages on the wire as the kubelet encodes them (upstream's api.proto field
numbers), checked against bytes encoded by hand."""

from __future__ import annotations

from testbed.containerd import qualified
from testbed.device_plugin import AllocateRequest, AllocateResponse, RegisterRequest


def test_docker_tags_become_containerd_names() -> None:
    assert qualified("facecast-test/worker:latest") == "docker.io/facecast-test/worker:latest"
    assert qualified("pause:3.10") == "docker.io/library/pause:3.10"
    assert qualified("localhost:5000/worker:1") == "localhost:5000/worker:1"
    assert qualified("registry.example/worker:1") == "registry.example/worker:1"


def test_register_request_has_the_kubelets_field_numbers() -> None:
    request = RegisterRequest(version="v1beta1", endpoint="e.sock", resource_name="nvidia.com/gpu")
    # 1: version, 2: endpoint, 3: resource_name (length-delimited).
    expected = b"\x0a\x07v1beta1" + b"\x12\x06e.sock" + b"\x1a\x0envidia.com/gpu"
    assert request.SerializeToString() == expected


def test_allocate_messages_have_the_kubelets_field_numbers() -> None:
    # AllocateRequest.container_requests (1) holding ContainerAllocateRequest.devices_ids (1).
    request = AllocateRequest.FromString(b"\x0a\x07\x0a\x05gpu-0")
    assert [list(c.devices_ids) for c in request.container_requests] == [["gpu-0"]]
    # AllocateResponse.container_responses (1) holding ContainerAllocateResponse.envs (1),
    # a map entry: key (1), value (2).
    entry = b"\x0a\x01K" + b"\x12\x03gpu"
    container = b"\x0a" + bytes([len(entry)]) + entry
    wire = b"\x0a" + bytes([len(container)]) + container
    response = AllocateResponse()
    response.container_responses.add().envs.update({"K": "gpu"})
    assert response.SerializeToString() == wire
