"""The generated WorkerPool CRD on the real kube-apiserver: it applies the defaults, enforces
the schema and the CEL rules that keep a pool possible, takes status through the status
subresource, and kubectl shows the pool's story in its columns."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client as k8s

from avatar_crds.kinds import WORKER_POOL
from avatar_crds.meta import API_VERSION, GROUP, VERSION
from avatar_crds.pool import WorkerPool
from testbed.controlplane import ControlPlane

IMAGE = "ghcr.io/facecast/worker:0.1.0"


def pool(name: str | None = None, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"qualities": ["standard"], "worker": {"image": IMAGE}, "maxWorkers": 4}
    return {
        "apiVersion": API_VERSION,
        "kind": WORKER_POOL.kind,
        "metadata": {"name": name or f"pool-{uuid.uuid4().hex[:8]}"},
        "spec": {**base, **spec},
    }


def create(api_client: k8s.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    api = k8s.CustomObjectsApi(api_client)
    created = api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, WORKER_POOL.plural, body
    )
    return cast(dict[str, Any], created)


def get(api_client: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    api = k8s.CustomObjectsApi(api_client)
    body = api.get_namespaced_custom_object(GROUP, VERSION, namespace, WORKER_POOL.plural, name)
    return cast(dict[str, Any], body)


def test_valid_pool_is_accepted_with_defaults(
    crds: None, api_client: k8s.ApiClient, namespace: str
) -> None:
    created = create(api_client, namespace, pool())
    spec = created["spec"]
    assert spec["slotsPerWorker"] == 1
    assert spec["minWorkers"] == 0
    assert spec["buffer"] == 1
    assert spec["scaleDownDelaySeconds"] == 300
    assert spec["worker"]["gpus"] == 1
    assert spec["worker"]["gpuResourceName"] == "nvidia.com/gpu"
    assert spec["worker"]["imagePullPolicy"] == "IfNotPresent"
    WorkerPool.model_validate(created)


def test_a_full_pool_round_trips_through_the_model(
    crds: None, api_client: k8s.ApiClient, namespace: str
) -> None:
    body = pool(
        qualities=["standard", "pro"],
        worker={
            "image": IMAGE,
            "imagePullPolicy": "Always",
            "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "500m"}},
            "gpus": 2,
            "nodeSelector": {"nvidia.com/gpu.product": "H100"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "spot", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 30},
            ],
            "runtimeClassName": "nvidia",
        },
        slotsPerWorker=8,
        minWorkers=1,
        maxWorkers=125,
        buffer="25%",
        scaleDownDelaySeconds=0,
    )
    created = create(api_client, namespace, body)
    parsed = WorkerPool.model_validate(created)
    assert parsed.spec.buffer == "25%"
    assert parsed.spec.worker.tolerations[1].toleration_seconds == 30
    assert created["spec"]["worker"]["tolerations"][1]["operator"] == "Equal"  # the default


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"minWorkers": 5, "maxWorkers": 4}, "minWorkers must not be greater than maxWorkers"),
        ({"slotsPerWorker": 0}, "greater than or equal to 1"),
        ({"maxWorkers": 0}, "greater than or equal to 1"),
        ({"buffer": "25"}, "percentage of the pool's slots"),
        ({"buffer": "100%"}, "percentage of the pool's slots"),
        ({"buffer": -1}, "percentage of the pool's slots"),
        ({"buffer": True}, "must be of type"),
        ({"qualities": []}, "should have at least 1 items"),
        ({"qualities": ["pro", "pro"]}, "Duplicate value"),
        ({"qualities": ["ultra"]}, "supported values"),
        ({"worker": {"image": IMAGE, "gpus": 9}}, "less than or equal to 8"),
        (
            {"worker": {"image": IMAGE, "resources": {"limits": {"nvidia.com/gpu": "1"}}}},
            "GPUs are set by gpus",
        ),
        ({"worker": {"image": IMAGE, "resources": {"requests": {"cpu": "two"}}}}, "should match"),
        (
            {"worker": {"image": IMAGE, "tolerations": [{"operator": "Exists", "value": "x"}]}},
            "operator Exists takes no value",
        ),
        (
            {"worker": {"image": IMAGE, "tolerations": [{"value": "x"}]}},
            "without a key must use operator Exists",
        ),
        (
            {"worker": {"image": IMAGE, "tolerations": [{"key": "k", "tolerationSeconds": 5}]}},
            "applies only to effect NoExecute",
        ),
        ({"worker": {"image": IMAGE, "runtimeClassName": "Nvidia"}}, "should match"),
    ],
)
def test_api_server_refuses_an_impossible_pool(
    crds: None, api_client: k8s.ApiClient, namespace: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(k8s.ApiException) as caught:
        create(api_client, namespace, pool(**spec))
    assert caught.value.status == 422
    assert message in str(caught.value.body)


def test_pool_name_must_fit_the_label_its_pods_carry(
    crds: None, api_client: k8s.ApiClient, namespace: str
) -> None:
    create(api_client, namespace, pool("p" * 63))
    with pytest.raises(k8s.ApiException) as caught:
        create(api_client, namespace, pool("p" * 64))
    assert caught.value.status == 422
    assert "must fit a label value" in str(caught.value.body)


def test_rules_hold_on_update_too(crds: None, api_client: k8s.ApiClient, namespace: str) -> None:
    api = k8s.CustomObjectsApi(api_client)
    name = create(api_client, namespace, pool(minWorkers=2))["metadata"]["name"]
    api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, WORKER_POOL.plural, name, {"spec": {"maxWorkers": 2}}
    )
    with pytest.raises(k8s.ApiException, match="minWorkers must not be greater than maxWorkers"):
        api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, WORKER_POOL.plural, name, {"spec": {"maxWorkers": 1}}
        )


def _set_status(api_client: k8s.ApiClient, namespace: str, name: str, status: Any) -> None:
    k8s.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, WORKER_POOL.plural, name, {"status": status}
    )


def test_status_goes_through_the_subresource_only(
    crds: None, api_client: k8s.ApiClient, namespace: str
) -> None:
    api = k8s.CustomObjectsApi(api_client)
    name = create(api_client, namespace, pool())["metadata"]["name"]
    # A status in a main-resource write is dropped: only the pool controller's status writes count.
    api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, WORKER_POOL.plural, name, {"status": {"readyWorkers": 3}}
    )
    assert WorkerPool.model_validate(get(api_client, namespace, name)).status.ready_workers == 0
    with pytest.raises(k8s.ApiException, match="greater than or equal to 0"):
        _set_status(api_client, namespace, name, {"freeSlots": -1})
    condition = {"type": "Ready", "status": "True", "reason": "BufferKept"}
    _set_status(api_client, namespace, name, {"readyWorkers": 3, "conditions": [condition]})
    assert WorkerPool.model_validate(get(api_client, namespace, name)).status.ready_workers == 3


def test_kubectl_get_wp_tells_the_story(
    crds: None, control_plane: ControlPlane, testenv_bin: Path, api_client: k8s.ApiClient,
    namespace: str,
) -> None:  # fmt: skip
    name = create(api_client, namespace, pool(qualities=["standard", "pro"], buffer="25%"))[
        "metadata"
    ]["name"]
    status = {"desiredWorkers": 3, "readyWorkers": 2, "drainingWorkers": 1,
              "freeSlots": 5, "busySlots": 11}  # fmt: skip
    _set_status(api_client, namespace, name, status)
    kubectl = [str(testenv_bin / "kubectl"), f"--kubeconfig={control_plane.kubeconfig}",
               "-n", namespace, "get"]  # fmt: skip

    def table(*args: str) -> list[list[str]]:
        out = subprocess.run([*kubectl, *args], check=True, capture_output=True, text=True)
        return [line.split() for line in out.stdout.splitlines()]

    header, row = table("wp")
    assert header == ["NAME", "TIERS", "READY", "DESIRED", "FREE", "SLOTS", "BUSY", "SLOTS", "AGE"]
    assert row[:6] == [name, '["standard","pro"]', "2", "3", "5", "11"]
    header, row = table("wp", "-o", "wide")
    assert header[-4:] == ["DRAINING", "SLOTS", "BUFFER", "MAX"]
    assert row[-4:] == ["1", "1", "25%", "4"]
    # In the `facecast` category with the other kinds: `kubectl get facecast` lists it.
    assert any(name in line[0] for line in table("facecast")[1:])
