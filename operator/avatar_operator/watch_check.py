"""The I/O around `liveness`: LIST what kopf watches now and then, and tell the liveness
probe which watch has fallen behind.

kopf's /healthz answers as long as the process runs; a watch stream that stalls (a
half-open connection, a proxy that stops forwarding) leaves an operator that is alive but
deaf. The probe handler in `handlers.py` fails while `problems()` names one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from avatar_crds import contract
from avatar_crds.kinds import WORKER_POOL
from avatar_crds.meta import GROUP, VERSION
from avatar_operator.kube import Kube, KubeError, UnreachableError
from avatar_operator.liveness import Freshness, Listing, ObjectKey
from facecast_kube import paths

# Names and resourceVersions are all that is compared: ask for metadata only, and from the
# API server's watch cache (resourceVersion=0), which is what the watches are served from.
_METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
log = structlog.get_logger("avatar_operator")


@dataclass(frozen=True)
class Watched:
    """One kopf index and the LIST that shows what its watch should have seen."""

    index: str
    path: str
    label_selector: str = ""


class WatchCheck:
    def __init__(
        self,
        kube: Kube,
        indices: Mapping[str, Any],
        watched: Iterable[Watched],
        *,
        interval: float,
        deadline: float,
    ) -> None:
        self.kube = kube
        self.indices = indices
        self.watched = list(watched)
        self.interval = interval
        self.freshness = {w.index: Freshness(deadline) for w in self.watched}
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Call once every index is filled: a listing taken earlier would look missed."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.run())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        while True:
            for watched in self.watched:
                try:
                    versions = await self._list(watched)
                except (KubeError, UnreachableError, ValueError) as exc:
                    # Not a verdict on the watch: an API server that cannot be reached is not
                    # mended by restarting the operator. The pending listing keeps ageing.
                    log.warning("watch_check_list_failed", index=watched.index, error=repr(exc))
                    continue
                listing = Listing(at=time.monotonic(), versions=versions)
                self.freshness[watched.index].listed(listing, self._seen(watched.index))
            await asyncio.sleep(self.interval)  # a period, not a wait

    def problems(self) -> list[str]:
        """Why the operator is deaf; empty while every watch keeps up."""
        now = time.monotonic()
        found = [
            f"the {index} watch has not caught up with a listing for {fresh.lag(now, seen):.0f} s"
            for index, fresh in self.freshness.items()
            if fresh.deaf(now, seen := self._seen(index))
        ]
        if self.task is not None and self.task.done() and not self.task.cancelled():
            found.append(f"the watch check stopped: {self.task.exception()!r}")
        return found

    async def _list(self, watched: Watched) -> dict[ObjectKey, int]:
        params = {"resourceVersion": "0"}
        if watched.label_selector:
            params["labelSelector"] = watched.label_selector
        body = await self.kube.request("GET", watched.path, params=params, headers=_METADATA_ONLY)
        return {_object_key(item): _version(item) for item in (body or {}).get("items") or []}

    def _seen(self, index: str) -> dict[ObjectKey, int]:
        store = self.indices[index]
        return {_object_key(body): _version(body) for key in list(store) for body in store[key]}


def _object_key(body: Mapping[str, Any]) -> ObjectKey:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _version(body: Mapping[str, Any]) -> int:
    """resourceVersions are opaque in general, but the etcd-backed API server issues
    increasing integers (reconciler._version relies on the same)."""
    try:
        return int((body.get("metadata") or {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


def kopf_watches(kube: Kube, namespace: str, worker_labels: Mapping[str, str]) -> list[Watched]:
    """What `handlers.py` indexes, each with the LIST of the same selection."""
    workers = ",".join(f"{key}={value}" for key, value in sorted(worker_labels.items()))
    pools = paths.custom(GROUP, VERSION, WORKER_POOL.plural)
    return [
        Watched("session_index", kube.path("AvatarSession", namespace)),
        Watched("pool_pod_index", kube.path("Pod", namespace), f"{workers},{contract.LABEL_POOL}"),
        Watched("node_index", "/api/v1/nodes"),
        Watched("tenant_index", kube.path("Tenant", namespace)),
        Watched("pool_index", pools.collection(namespace)),
    ]
