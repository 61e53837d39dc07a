"""The chart's warm pools: one WorkerPool per tier the install serves (exactly the tiers the API is
told), always (sessions run only on pool workers), every worker shaped by the `worker` values as
the operator reads them, and sized by `pools`. Each rendered pool is read with the contract's own
model; the API server takes them, CEL rules included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from api_shim.settings import Settings as ApiSettings
from avatar_crds.enums import Quality
from avatar_crds.pool import BUFFER_PERCENT, MAX_BUFFER_SLOTS, WorkerPool
from testbed.controlplane import ControlPlane
from testbed.helm import Helm
from tests.chart.rendering import (
    API,
    CHART,
    FULLNAME,
    VALUES_EXAMPLES,
    Manifest,
    container,
    kubectl,
    literal_env,
    merged_values,
    of_kind,
    one,
    render,
    template_args,
    to_json_arg,
)

MODEL_VOLUME = "worker.modelVolumeClaim=facecast-models"
# Sessions per worker, and GPUs per worker (None: `worker.gpu.count`), by default.
DEFAULT_SHAPE: dict[Quality, tuple[int, int | None]] = {
    Quality.MOCK: (8, 0),
    Quality.LITE: (8, 0),
    Quality.STANDARD: (4, None),
    Quality.PRO: (2, None),
}


def pools_by_tier(docs: list[Manifest]) -> dict[Quality, WorkerPool]:
    """The rendered WorkerPools, each read by the contract's model, by the one tier it serves."""
    found: dict[Quality, WorkerPool] = {}
    for doc in of_kind(docs, "WorkerPool"):
        pool = WorkerPool.model_validate(doc)
        (tier,) = pool.spec.qualities
        assert tier not in found, f"two pools serve {tier}"
        found[tier] = pool
    return found


def api_served(docs: list[Manifest]) -> frozenset[Quality]:
    env = literal_env(container(one(docs, "Deployment", API)))
    return ApiSettings.from_env(env).served()


@pytest.mark.parametrize("example", list(VALUES_EXAMPLES))
def test_every_example_has_one_pool_per_served_tier_shaped_like_the_workers(
    helm: Helm, example: str
) -> None:
    docs = render(helm, values=VALUES_EXAMPLES[example])
    pools = pools_by_tier(docs)
    assert set(pools) == api_served(docs)
    expected = set(Quality) if example == "production" else {Quality.MOCK, Quality.LITE}
    assert set(pools) == expected
    # The worker values shape every pool's workers (the operator has no worker shape of its own).
    worker = merged_values(example)["worker"]
    gpu_count = worker["gpu"]["count"]
    image = worker["image"]
    for tier, pool in pools.items():
        assert pool.metadata.name == f"{FULLNAME}-{tier.value}"
        assert pool.metadata.namespace == "facecast"
        template = pool.spec.worker
        assert template.image == f"{image['repository']}:{image['tag'] or '0.1.0'}"
        assert template.image_pull_policy == image["pullPolicy"]
        assert template.gpu_resource_name == worker["gpu"]["resourceName"]
        assert template.node_selector == worker["nodeSelector"]
        assert [t.model_dump(by_alias=True) for t in template.tolerations] == worker["tolerations"]
        assert template.runtime_class_name == (worker.get("runtimeClassName") or None)
        assert template.resources.model_dump() == {
            kind: {name: str(q) for name, q in worker["resources"].get(kind, {}).items()}
            for kind in ("requests", "limits")
        }
        slots, gpus = DEFAULT_SHAPE[tier]
        assert pool.spec.slots_per_worker == slots
        assert template.gpus == (gpu_count if gpus is None else gpus)
        assert pool.spec.min_workers == 1
        assert pool.spec.max_workers == 10
        assert pool.spec.buffer == 1
        assert pool.spec.scale_down_delay_seconds == 300


@pytest.mark.parametrize(
    ("sets", "tiers"),
    [
        ((), {Quality.MOCK, Quality.LITE}),
        ((MODEL_VOLUME,), set(Quality)),
        ((MODEL_VOLUME, "api.servedQualities={lite,standard}"), {Quality.LITE, Quality.STANDARD}),
        (("api.servedQualities={mock}",), {Quality.MOCK}),
    ],
)
def test_pools_follow_the_served_tiers(
    helm: Helm, sets: tuple[str, ...], tiers: set[Quality]
) -> None:
    """The model volume adds the standard and pro pools; `api.servedQualities` narrows them as
    it narrows the API's."""
    docs = render(helm, sets=sets)
    pools = pools_by_tier(docs)
    assert set(pools) == tiers == api_served(docs)
    for tier in tiers & {Quality.STANDARD, Quality.PRO}:
        assert pools[tier].spec.worker.gpus == 1  # worker.gpu.count
        assert pools[tier].spec.slots_per_worker == DEFAULT_SHAPE[tier][0]


def test_defaults_and_each_tiers_own_sizing_apply(helm: Helm) -> None:
    docs = render(
        helm,
        sets=[
            MODEL_VOLUME,
            "worker.gpu.count=0",  # a CPU-only cluster ...
            "pools.tiers.standard.gpus=2",  # ... but for this tier
            "pools.defaults.maxWorkers=4",
            "pools.defaults.scaleDownDelaySeconds=60",
            "pools.tiers.lite.minWorkers=0",  # a zero wins over the default's 1
            "pools.tiers.pro.maxWorkers=2",
            "pools.tiers.mock.slotsPerWorker=16",
        ],
        set_jsons=[to_json_arg("pools.tiers.pro.buffer", "25%")],
    )
    pools = pools_by_tier(docs)
    sizing = {
        tier: (
            p.spec.slots_per_worker,
            p.spec.worker.gpus,
            p.spec.min_workers,
            p.spec.max_workers,
            p.spec.buffer,
            p.spec.scale_down_delay_seconds,
        )
        for tier, p in pools.items()
    }
    assert sizing == {
        Quality.MOCK: (16, 0, 1, 4, 1, 60),
        Quality.LITE: (8, 0, 0, 4, 1, 60),
        Quality.STANDARD: (4, 2, 1, 4, 1, 60),
        Quality.PRO: (2, 0, 1, 2, "25%", 60),
    }


def test_pools_cannot_be_turned_off(helm: Helm) -> None:
    """There is no worker pod per session any more: a served tier without a pool could never
    start a session, so the old switch is refused rather than ignored."""
    failed = helm.run(
        *template_args("facecast", sets=[MODEL_VOLUME, "pools.enabled=false"]), check=False
    )
    assert failed.returncode != 0
    assert "values don't meet the specifications of the schema" in failed.stderr
    assert "'enabled' not allowed" in failed.stderr, failed.stderr


@pytest.mark.parametrize(
    ("sets", "message", "unaffected"),
    [
        (
            ["pools.tiers.lite.minWorkers=5", "pools.tiers.lite.maxWorkers=2"],
            "pools: the lite pool's minWorkers (5) is greater than its maxWorkers (2)",
            # lite not served: no lite pool is made from its sizing.
            ["api.servedQualities={mock,standard,pro}"],
        ),
        (
            ["worker.resources.limits.nvidia\\.com/gpu=1"],
            "worker.resources.limits: nvidia.com/gpu is set by worker.gpu.count",
            # Another GPU resource: nvidia.com/gpu is then a resource like any other.
            ["worker.gpu.resourceName=amd.com/gpu"],
        ),
        (
            ["pools.defaults.maxWorkers=null"],
            "pools: the mock pool has no maxWorkers",
            # Every served tier says its own.
            [f"pools.tiers.{q.value}.maxWorkers=3" for q in Quality],
        ),
    ],
    ids=["min_above_max", "gpus_in_resources", "no_max"],
)
def test_a_pool_the_api_server_would_refuse_fails_the_render(
    helm: Helm, sets: list[str], message: str, unaffected: list[str]
) -> None:
    args = template_args("facecast", sets=[MODEL_VOLUME, *sets])
    failed = helm.run(*args, check=False)
    assert failed.returncode != 0
    assert message in failed.stderr, failed.stderr
    # The same values render where no pool would be refused for them, a pool for each served
    # tier: the checks are the rendered pools' own, not a blanket ban on the values.
    docs = render(helm, sets=[MODEL_VOLUME, *sets, *unaffected])
    assert set(pools_by_tier(docs)) == api_served(docs)


@pytest.mark.parametrize(
    ("path", "wrong"),
    [
        ("pools.defaults.slotsPerWorker", 65),
        ("pools.tiers.pro.slotsPerWorker", 0),
        ("pools.defaults.buffer", "100%"),
        ("pools.tiers.mock.buffer", MAX_BUFFER_SLOTS + 1),
        ("pools.tiers.standard.gpus", 9),
        ("pools.defaults.maxWorkers", 0),
        ("pools.defaults.scaleDownDelaySeconds", -1),
    ],
)
def test_values_outside_the_crds_bounds_are_refused(helm: Helm, path: str, wrong: Any) -> None:
    failed = helm.run(*template_args("facecast", set_jsons=[to_json_arg(path, wrong)]), check=False)
    assert failed.returncode != 0
    assert "values don't meet the specifications of the schema" in failed.stderr, failed.stderr


def test_the_values_schema_bounds_are_the_crds() -> None:
    """values.schema.json refuses what the WorkerPool CRD would, at `helm install` time."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    sizing = schema["definitions"]["poolSizing"]["properties"]
    crd = yaml.safe_load((CHART / "crds" / "workerpools.facecast.io.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    crd_fields = {**spec["properties"], "gpus": spec["properties"]["worker"]["properties"]["gpus"]}
    for name in ("slotsPerWorker", "minWorkers", "maxWorkers", "scaleDownDelaySeconds", "gpus"):
        bounds = {k: crd_fields[name][k] for k in ("type", "minimum", "maximum")}
        assert {k: sizing[name][k] for k in bounds} == bounds, name
    # The buffer's bounds are a CEL rule in the CRD: the model's constants say the same.
    assert sizing["buffer"]["maximum"] == MAX_BUFFER_SLOTS
    assert sizing["buffer"]["pattern"] == BUFFER_PERCENT
    assert set(schema["properties"]["pools"]["properties"]["tiers"]["properties"]) == {
        q.value for q in Quality
    }


@pytest.mark.controlplane
def test_the_api_server_takes_pools_sized_by_every_value(
    helm: Helm,
    chart_crds: None,
    control_plane: ControlPlane,
    testenv_bin: Path,
    restricted_namespace: str,
    tmp_path: Path,
) -> None:
    """A server-side dry run with strict field validation, through the CRD's schema and CEL
    rules: a percentage buffer, no GPU, several GPUs, no minimum, the production shape."""
    sets = [
        "pools.tiers.standard.gpus=2",
        "pools.tiers.lite.minWorkers=0",
        "pools.tiers.lite.buffer=0",
        "pools.tiers.mock.slotsPerWorker=64",
    ]
    args = template_args(
        restricted_namespace,
        VALUES_EXAMPLES["production"],
        sets=sets,
        set_jsons=[to_json_arg("pools.tiers.pro.buffer", "25%")],
    )
    docs = [doc for doc in yaml.safe_load_all(helm.run(*args).stdout) if doc]
    pools = of_kind(docs, "WorkerPool")
    assert {p["metadata"]["name"] for p in pools} == {f"{FULLNAME}-{q.value}" for q in Quality}
    manifest = tmp_path / "pools.yaml"
    manifest.write_text(yaml.safe_dump_all(pools))
    done = kubectl(
        testenv_bin, control_plane.kubeconfig, "apply", "--dry-run=server", "--validate=strict",
        "--namespace", restricted_namespace, "-f", manifest,
    )  # fmt: skip
    created = [line for line in done.stdout.splitlines() if "workerpool" in line]
    assert len(created) == len(Quality), done.stdout
    assert "Warning" not in done.stderr, done.stderr
