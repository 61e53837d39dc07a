"""The local stack's WorkerPools (tools/localstack/pools.py), and their workers as the operator
builds them, run by the local node: the pool worker's command, told where its ready file is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avatar_crds import contract
from avatar_crds.enums import Quality
from avatar_crds.pool import WorkerPool
from avatar_operator.pool_objects import worker_pod
from avatar_operator.settings import WorkerPodSettings
from tools.localstack import pools
from tools.localstack.pod_launch import plan_launch
from tools.localstack.stack import NAMESPACE
from tools.localstack.worker_nodes import LOCAL_WORKER_IMAGE, WORKER_READY_FILE_OPTION

ACCOUNT = "facecast-lite-worker-q4vzt"


def _pool(tier: Quality) -> WorkerPool:
    return WorkerPool.model_validate(pools.worker_pool(tier, NAMESPACE, LOCAL_WORKER_IMAGE))


def test_one_warm_cpu_pool_per_served_tier() -> None:
    for tier in pools.POOL_TIERS:
        spec = _pool(tier).spec
        assert spec.qualities == [tier]
        assert (spec.slots_per_worker, spec.min_workers, spec.buffer) == (4, 1, 2)
        assert spec.worker.gpus == 0
        assert spec.worker.image == LOCAL_WORKER_IMAGE


def test_warm_once_every_pool_has_a_ready_worker() -> None:
    def listed(ready: dict[str, int]) -> list[dict[str, Any]]:
        return [
            {"metadata": {"name": name}, "status": {"readyWorkers": count}}
            for name, count in ready.items()
        ]

    assert not pools.warm([])
    assert not pools.warm(listed({"facecast-lite": 1, "facecast-mock": 0}))
    assert not pools.warm(listed({"facecast-lite": 2, "other": 1}))
    assert pools.warm(listed({"facecast-lite": 1, "facecast-mock": 2}))


def test_the_operators_pool_worker_runs_on_the_local_node(tmp_path: Path) -> None:
    pod = worker_pod(_pool(Quality.LITE), ACCOUNT, WorkerPodSettings())
    # What the API server does on create: a name from generateName, a uid.
    pod["metadata"]["name"] = pod["metadata"]["generateName"] + "x7k2p"
    pod["metadata"]["uid"] = "u-3"
    plan = plan_launch(
        pod,
        tmp_path,
        images={LOCAL_WORKER_IMAGE: ["python", "-m", "avatar_worker"]},
        default_command=["false"],
        host_paths={contract.AVATAR_STORE_DIR: "/srv/avatars"},
        kubeconfig=tmp_path / "sa.kubeconfig",
        base_env={},
        readiness_file_arg=WORKER_READY_FILE_OPTION,
    )
    assert plan.readiness is not None
    assert plan.readiness.container_path == contract.WORKER_READY_FILE
    ready = plan.readiness.local_path
    assert ready.startswith(str(tmp_path) + "/")
    assert plan.argv == ["python", "-m", "avatar_worker", "pool", WORKER_READY_FILE_OPTION, ready]
    assert plan.env[contract.ENV_POD_NAME] == "facecast-lite-x7k2p"
    assert plan.env[contract.ENV_WORKER_GRANT] == ACCOUNT
    assert plan.env[contract.ENV_AVATAR_STORE] == "/srv/avatars"
    assert plan.secret_dirs == {}
