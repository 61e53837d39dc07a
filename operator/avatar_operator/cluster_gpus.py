"""Which pods hold GPUs on which nodes, across the whole cluster: a LIST then WATCH of pods.

kopf watches only the operator's namespace, but other workloads' pods take GPUs too, so
this one watch is cluster-wide (read-only; see the chart's ClusterRole). Only what admission
needs is kept: per unfinished pod bound to a node, the GPUs it requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from avatar_operator.capacity import BoundGpus, bound_gpus
from avatar_operator.kube import Kube, KubeError, UnreachableError
from avatar_operator.observe import Key
from facecast_kube import ExpiredError, paths

PODS = paths.ALL_PODS
UNFINISHED = "status.phase!=Succeeded,status.phase!=Failed"
LIST_PAGE = 500
WATCH_SECONDS = 60
"""Server-side length of one watch request: a healthy watch is heard from at least this often."""
SILENT_LIMIT_SECONDS = 3 * WATCH_SECONDS
"""Silence after which the watch is deaf (the liveness probe fails): room for two missed
reconnections, each bounded by the read timeout below."""
RETRY_SECONDS = 2.0
log = structlog.get_logger("avatar_operator")


class ClusterGpus:
    def __init__(self, kube: Kube, gpu_resource: str, on_change: Callable[[], None]) -> None:
        self.kube = kube
        self.gpu_resource = gpu_resource
        self.on_change = on_change
        self.held: dict[Key, BoundGpus] | None = None
        """None until the first listing: until then nothing is known to be free."""
        self.last_heard = time.monotonic()

    def silent_for(self) -> float:
        return time.monotonic() - self.last_heard

    async def run(self) -> None:
        while True:
            try:
                version: str | None = await self._list()
                while version is not None:
                    version = await self._watch(version)
            except (KubeError, UnreachableError, ValueError) as exc:
                log.warning("cluster_pod_watch_failed", error=repr(exc), retry_in=RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)  # a backoff, not a wait for a condition

    async def _list(self) -> str:
        held: dict[Key, BoundGpus] = {}
        params = {"fieldSelector": UNFINISHED, "limit": str(LIST_PAGE)}
        while True:
            page = await self.kube.request("GET", PODS, params=params) or {}
            for pod in page.get("items") or []:
                self._keep(held, pod)
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                break
            params["continue"] = meta["continue"]
        self.held = held
        self._heard()
        self.on_change()
        return str(meta.get("resourceVersion", ""))

    async def _watch(self, version: str) -> str | None:
        """Follow one watch request; the version to resume from, or None to list again."""
        # A stream that stops sending (bookmarks come about once a minute) is given up on:
        # the client's read timeout is the watch's length and its request timeout.
        params = {"fieldSelector": UNFINISHED}
        try:
            async with self.kube.watch(
                PODS, version=version, seconds=WATCH_SECONDS, params=params
            ) as events:
                self._heard()
                async for kind, obj in events:
                    self._heard()
                    version = str(obj.get("metadata", {}).get("resourceVersion", version))
                    if kind in ("ADDED", "MODIFIED", "DELETED") and self.held is not None:
                        before = self.held.get(_key(obj))
                        if kind == "DELETED":
                            self.held.pop(_key(obj), None)
                        else:
                            self._keep(self.held, obj)
                        if self.held.get(_key(obj)) != before:
                            self.on_change()
        except ExpiredError:  # too old: the history is gone, list again
            return None
        return version

    def _keep(self, held: dict[Key, BoundGpus], pod: dict[str, Any]) -> None:
        holds = bound_gpus(pod, self.gpu_resource)
        if holds is None or holds.node is None:
            held.pop(_key(pod), None)
        else:
            held[_key(pod)] = holds

    def _heard(self) -> None:
        self.last_heard = time.monotonic()


def _key(pod: dict[str, Any]) -> Key:
    meta = pod.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))
