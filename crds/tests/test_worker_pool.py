"""WorkerPool: the model refuses what the CRD's rules refuse, with the same messages, and the
generated CRD carries its names, columns, defaults and rules."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from avatar_crds import contract
from avatar_crds.crd import crd_manifest
from avatar_crds.kinds import WORKER_POOL
from avatar_crds.pool import (
    BUFFER_PERCENT,
    POOL_NAME_MAX_LENGTH,
    WorkerPool,
    WorkerPoolSpec,
    WorkerPoolStatus,
)

IMAGE = "ghcr.io/facecast/worker:0.1.0"


def spec(**overrides: Any) -> dict[str, Any]:
    return {"qualities": ["standard"], "worker": {"image": IMAGE}, "maxWorkers": 4, **overrides}


def worker(**overrides: Any) -> dict[str, Any]:
    return {"image": IMAGE, **overrides}


def test_defaults_are_those_the_crd_declares() -> None:
    parsed = WorkerPoolSpec.model_validate(spec())
    schema = _spec_schema()["properties"]
    assert parsed.slots_per_worker == schema["slotsPerWorker"]["default"] == 1
    assert parsed.min_workers == schema["minWorkers"]["default"] == 0
    assert parsed.buffer == schema["buffer"]["default"] == 1
    assert parsed.scale_down_delay_seconds == schema["scaleDownDelaySeconds"]["default"] == 300
    template = schema["worker"]["properties"]
    assert parsed.worker.gpus == template["gpus"]["default"] == 1
    assert parsed.worker.gpu_resource_name == template["gpuResourceName"]["default"]
    assert parsed.worker.image_pull_policy == template["imagePullPolicy"]["default"]


@pytest.mark.parametrize("buffer", [0, 1, 64000, "0%", "5%", "25%", "99%"])
def test_buffer_is_a_slot_count_or_a_percentage(buffer: int | str) -> None:
    assert WorkerPoolSpec.model_validate(spec(buffer=buffer)).buffer == buffer


@pytest.mark.parametrize("buffer", [-1, 64001, "25", "100%", "05%", "-5%", "25 %", True, 2.5])
def test_buffer_refuses_anything_else(buffer: Any) -> None:
    with pytest.raises(ValidationError):
        WorkerPoolSpec.model_validate(spec(buffer=buffer))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"minWorkers": 5, "maxWorkers": 4}, "minWorkers must not be greater than maxWorkers"),
        ({"slotsPerWorker": 0}, "greater than or equal to 1"),
        ({"slotsPerWorker": 65}, "less than or equal to 64"),
        ({"maxWorkers": 0}, "greater than or equal to 1"),
        ({"qualities": []}, "at least 1 item"),
        ({"qualities": ["pro", "pro"]}, "must not repeat a quality"),
        ({"worker": worker(gpus=9)}, "less than or equal to 8"),
        (
            {"worker": worker(resources={"requests": {"nvidia.com/gpu": "1"}})},
            "GPUs are set by gpus",
        ),
        (
            {
                "worker": worker(
                    gpuResourceName="amd.com/gpu", resources={"limits": {"amd.com/gpu": "1"}}
                )
            },
            "GPUs are set by gpus",
        ),
        ({"worker": worker(resources={"requests": {"cpu": "two"}})}, "should match"),
        ({"worker": worker(resources={"requests": {"cpu": 2}})}, "valid string"),
        (
            {"worker": worker(tolerations=[{"operator": "Exists", "value": "x"}])},
            "operator Exists takes no value",
        ),
        (
            {"worker": worker(tolerations=[{"value": "x"}])},
            "without a key must use operator Exists",
        ),
        (
            {"worker": worker(tolerations=[{"key": "k", "tolerationSeconds": 5}])},
            "applies only to effect NoExecute",
        ),
        ({"worker": worker(runtimeClassName="Nvidia")}, "should match"),
        ({"worker": worker(image="has space")}, "should match"),
        ({"replicas": 3}, "Extra inputs are not permitted"),
    ],
)
def test_model_refuses_an_impossible_pool(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WorkerPoolSpec.model_validate(spec(**overrides))


def test_a_full_pool_is_accepted() -> None:
    tolerations = [
        {"operator": "Exists"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 30},
    ]
    template = worker(
        resources={"requests": {"cpu": "500m", "memory": "8Gi"}, "limits": {"memory": "1e9"}},
        gpus=0,
        nodeSelector={"pool": "gpu"},
        tolerations=tolerations,
        runtimeClassName="nvidia",
    )
    parsed = WorkerPoolSpec.model_validate(
        spec(worker=template, slotsPerWorker=8, minWorkers=4, maxWorkers=4, buffer="25%")
    )
    assert parsed.to_k8s()["worker"]["tolerations"][2]["tolerationSeconds"] == 30


def test_pool_name_must_fit_a_label_value() -> None:
    body = {"metadata": {"name": "p" * POOL_NAME_MAX_LENGTH}, "spec": spec()}
    WorkerPool.model_validate(body)
    body["metadata"]["name"] += "p"
    with pytest.raises(ValidationError, match="must fit a label value"):
        WorkerPool.model_validate(body)


def test_status_counts_cannot_go_negative() -> None:
    WorkerPoolStatus.model_validate({"freeSlots": 0, "busySlots": 3})
    for field in ("desiredWorkers", "readyWorkers", "drainingWorkers", "freeSlots", "busySlots"):
        with pytest.raises(ValidationError):
            WorkerPoolStatus.model_validate({field: -1})


# --- the generated CRD --------------------------------------------------------------------


def _root_schema() -> dict[str, Any]:
    version = crd_manifest(WORKER_POOL)["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _spec_schema() -> dict[str, Any]:
    spec_schema: dict[str, Any] = _root_schema()["properties"]["spec"]
    return spec_schema


def test_names_category_and_status_subresource() -> None:
    crd = crd_manifest(WORKER_POOL)
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == "workerpools.facecast.io"
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "WorkerPool",
        "workerpools",
        ["wp"],
    )
    assert names["categories"] == ["facecast"]
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_printer_columns_tell_tiers_workers_and_slots() -> None:
    columns = crd_manifest(WORKER_POOL)["spec"]["versions"][0]["additionalPrinterColumns"]
    shown = [(c["name"], c["jsonPath"]) for c in columns if "priority" not in c]
    assert shown == [
        ("Tiers", ".spec.qualities"),
        ("Ready", ".status.readyWorkers"),
        ("Desired", ".status.desiredWorkers"),
        ("Free Slots", ".status.freeSlots"),
        ("Busy Slots", ".status.busySlots"),
        ("Age", ".metadata.creationTimestamp"),
    ]
    status = _root_schema()["properties"]["status"]["properties"]
    spec_fields = _spec_schema()["properties"]
    for column in columns:
        part, field = column["jsonPath"].split(".")[1:3]
        if part in ("spec", "status"):
            assert field in (spec_fields if part == "spec" else status), column["jsonPath"]


def test_buffer_is_int_or_string_with_its_rule() -> None:
    buffer = _spec_schema()["properties"]["buffer"]
    assert buffer["x-kubernetes-int-or-string"] is True
    assert "type" not in buffer
    (rule,) = buffer["x-kubernetes-validations"]
    assert BUFFER_PERCENT in rule["rule"]


def test_cel_rules_are_carried_into_the_schema() -> None:
    def messages(node: dict[str, Any]) -> list[str]:
        return [rule["message"] for rule in node.get("x-kubernetes-validations", [])]

    spec_schema = _spec_schema()
    template = spec_schema["properties"]["worker"]
    toleration = template["properties"]["tolerations"]["items"]
    assert messages(spec_schema) == ["minWorkers must not be greater than maxWorkers"]
    assert messages(template) == ["GPUs are set by gpus (and gpuResourceName), not in resources"]
    assert len(messages(toleration)) == 3
    assert messages(_root_schema()) == [
        f"a pool's name must fit a label value: at most {POOL_NAME_MAX_LENGTH} characters"
    ]
    assert spec_schema["properties"]["qualities"]["x-kubernetes-list-type"] == "set"


def test_pool_worker_labels_match_its_selector() -> None:
    labels = contract.pool_worker_labels("standard")
    selector = dict(term.split("=") for term in contract.pool_selector("standard").split(","))
    assert labels == selector
    assert labels[contract.LABEL_POOL] == "standard"
    assert contract.pool_worker_generate_name("standard") == "standard-"
