"""The local stack's warm WorkerPools: one per tier it serves, as the chart ships them
(charts/facecast/templates/workerpools.yaml), sized for one machine. Their worker pods are
made by the operator's pool controller and run by the local node."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from avatar_crds.enums import Quality
from avatar_crds.meta import ObjectMeta
from avatar_crds.pool import (
    ImagePullPolicy,
    ResourceRequirements,
    Toleration,
    WorkerPool,
    WorkerPoolSpec,
    WorkerTemplate,
)
from tools.localstack.kubelet_status import GPU_RESOURCE

# The tiers the stack serves (its tenant's qualities): both render on the CPU.
POOL_TIERS = (Quality.MOCK, Quality.LITE)
SLOTS_PER_WORKER = 4
# The tenant's concurrent sessions (4) fit on one worker; a second one is room for a burst.
MAX_WORKERS = 2


def pool_name(tier: Quality) -> str:
    """As the chart names them (`<release>-<tier>`, release `facecast`)."""
    return f"facecast-{tier.value}"


def worker_pool(
    tier: Quality, namespace: str, image: str, image_pull_policy: ImagePullPolicy = "IfNotPresent"
) -> dict[str, Any]:
    """One warm worker at all times, and a buffer of 2 free slots kept ready beyond those in use.
    The local node is a GPU node (tainted as GPU pools are), so the CPU workers tolerate that."""
    pool = WorkerPool(
        metadata=ObjectMeta(name=pool_name(tier), namespace=namespace),
        spec=WorkerPoolSpec(
            qualities=[tier],
            worker=WorkerTemplate(
                image=image,
                image_pull_policy=image_pull_policy,
                gpus=0,
                resources=ResourceRequirements(requests={"cpu": "1", "memory": "1Gi"}),
                tolerations=[Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")],
            ),
            slots_per_worker=SLOTS_PER_WORKER,
            min_workers=1,
            max_workers=MAX_WORKERS,
            buffer=2,
        ),
    )
    return pool.to_k8s()


def warm(pools: Iterable[Mapping[str, Any]]) -> bool:
    """Every pool of the stack has a ready worker (its pool controller says so)."""
    ready = {
        pool["metadata"]["name"]: int((pool.get("status") or {}).get("readyWorkers") or 0)
        for pool in pools
    }
    return all(ready.get(pool_name(tier), 0) >= 1 for tier in POOL_TIERS)
