"""The operator's real startup handler with `count_other_pods` on and off: off, no cluster-wide
pod watch is started and free GPUs come from the operator's own worker pods at once; on, the
watch runs and nothing is free until it has listed every pod.

No API server runs in these tests: the kubeconfig names a local port nothing listens on (a
stand-in address; the watch, where started, just keeps retrying). kopf's indexes are plain
dicts here, shaped as kopf hands them to the handler (key -> bodies)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
import yaml

from avatar_crds import contract
from avatar_operator import handlers
from avatar_operator.reconciler import Reconciler
from testbed.process import LOOPBACK, free_port

GPU = "nvidia.com/gpu"
# kopf's decorators retype a handler as its generic callback, with every keyword kopf may pass
# required; called directly, as here, they are the plain coroutines they are defined as.
start = cast(Callable[..., Awaitable[None]], handlers.start)
stop = cast(Callable[..., Awaitable[None]], handlers.stop)


def kubeconfig(path: Path) -> Path:
    server = f"https://{LOOPBACK}:{free_port()}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def indices() -> dict[str, dict[Any, list[dict[str, Any]]]]:
    """One two-GPU node; one of our worker pods bound to it, holding one GPU."""
    node = {
        "metadata": {"name": "gpu-1", "labels": {}},
        "spec": {"taints": [{"key": GPU, "value": "present", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {GPU: "2"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    pod = {
        "metadata": {"name": "s1-worker", "namespace": "fc",
                     "labels": {contract.LABEL_SESSION: "s1"}},
        "spec": {"nodeName": "gpu-1",
                 "containers": [{"resources": {"limits": {GPU: "1"}}}]},
        "status": {"phase": "Running"},
    }  # fmt: skip
    return {
        "session_index": {},
        "pod_index": {("fc", "s1"): [pod]},
        "node_index": {"gpu-1": [node]},
        "tenant_index": {},
        "pool_index": {},
        "pool_pod_index": {},
        "bound_session_index": {},
    }


async def started() -> tuple[kopf.Memo, Reconciler, int]:
    """Run the startup handler; return its memo, the reconciler and the free GPUs it sees."""
    memo = kopf.Memo()
    await start(settings=kopf.OperatorSettings(), memo=memo, **indices())
    reconciler: Reconciler = memo.reconciler
    free = reconciler._capacity().free_gpus
    return memo, reconciler, free


@pytest.mark.parametrize("count_other_pods", [False, True])
def test_other_pods_are_watched_only_when_counted(
    count_other_pods: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read when the operator connects (facecast_kube.config), as outside a pod.
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.setenv("FACECAST_NAMESPACE", "fc")
    monkeypatch.setenv("FACECAST_METRICS_PORT", "0")
    monkeypatch.setenv("FACECAST_WORKER_GPU_COUNT", "1")
    monkeypatch.setenv("FACECAST_COUNT_OTHER_PODS", str(count_other_pods).lower())

    async def scenario() -> None:
        memo, reconciler, free = await started()
        try:
            # Started by the first watch handler, once (each object's memo is a copy).
            handlers.start_background(copy.copy(memo))
            handlers.start_background(copy.copy(memo))
            tasks = memo.background.tasks
            if count_other_pods:
                assert len(tasks) == 2  # the sweeper and the cluster's GPU count, once each
                assert not tasks[1].done()
                assert reconciler.cluster_gpus is not None
                assert reconciler.cluster_gpus.held is None  # not listed yet
                assert free == 0  # so nothing is free yet
            else:
                assert len(tasks) == 1  # the sweeper only
                assert reconciler.cluster_gpus is None
                assert free == 1  # two GPUs, one held by our own worker: known at once
        finally:
            await stop(memo=memo)

    asyncio.run(scenario())
