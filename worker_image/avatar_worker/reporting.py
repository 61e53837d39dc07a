"""`status.worker` of the AvatarSession: the only part of any resource the worker writes.

A `StatusSink` writes one `WorkerStatus` snapshot; `KubernetesStatusSink` merge-patches it into
the session through the status subresource, `JsonLinesStatusSink` appends it to a file (or
stdout) for local runs. `StatusReporter` decides when: at once for the first frame and for a
failure, then every `WORKER_HEARTBEAT_SECONDS`, and once more on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from avatar_crds.contract import WORKER_HEARTBEAT_SECONDS
from avatar_crds.enums import FailureReason
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.messages import fit_message
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.session import WorkerFailure as WorkerFailureModel
from avatar_crds.session import WorkerStatus
from avatar_worker.logging import get_logger, redact

log = get_logger("avatar_worker.reporting")


class StatusSink(Protocol):
    def write(self, status: WorkerStatus) -> None:
        """Store one snapshot (blocking; called from a worker thread)."""
        ...


def status_patch(status: WorkerStatus) -> dict[str, Any]:
    """The merge patch for the status subresource: only `status.worker`."""
    return {"status": {"worker": status.to_k8s()}}


class KubernetesStatusSink:
    def __init__(self, api_client: Any, namespace: str, name: str) -> None:
        from kubernetes import client as k8s

        self._api = k8s.CustomObjectsApi(api_client)
        self._namespace = namespace
        self._name = name

    def write(self, status: WorkerStatus) -> None:
        self._api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self._namespace,
            AVATAR_SESSION.plural,
            self._name,
            status_patch(status),
        )


class JsonLinesStatusSink:
    """One JSON object per snapshot: `{"status": {"worker": {...}}}`, on a file or stdout."""

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._lock = threading.Lock()

    def write(self, status: WorkerStatus) -> None:
        line = json.dumps(status_patch(status), separators=(",", ":")) + "\n"
        with self._lock:
            if self._path in (None, "-"):
                sys.stdout.write(line)
                sys.stdout.flush()
                return
            assert self._path is not None
            handle: IO[str]
            with open(self._path, "a", encoding="utf-8") as handle:
                handle.write(line)


class StatusReporter:
    def __init__(
        self,
        sink: StatusSink,
        snapshot: Callable[[], WorkerStatus],
        *,
        interval_s: float = WORKER_HEARTBEAT_SECONDS,
    ) -> None:
        self._sink = sink
        self._snapshot = snapshot
        self._interval = interval_s
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._lock = asyncio.Lock()
        self.reports = 0
        self.errors = 0

    def report_now(self) -> None:
        """Report at the next opportunity (the first frame)."""
        self._wake.set()

    async def run(self) -> None:
        """A heartbeat now, then every interval (sooner when `report_now` is called)."""
        while not self._stopped.is_set():
            await self._write(self._snapshot())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()

    async def stop(self) -> None:
        """Stop the heartbeat and write the final snapshot."""
        self._stopped.set()
        self._wake.set()
        await self._write(self._snapshot())

    async def fail(self, reason: FailureReason, message: str) -> None:
        status = self._snapshot().model_copy(
            update={
                "heartbeat_at": datetime.now(UTC),
                "failure": WorkerFailureModel(reason=reason, message=fit_message(redact(message))),
            }
        )
        self._stopped.set()
        self._wake.set()
        await self._write(status)

    async def _write(self, status: WorkerStatus) -> None:
        async with self._lock:
            try:
                await asyncio.to_thread(self._sink.write, status)
                self.reports += 1
            except Exception as exc:  # the apiserver being away must not end the session
                self.errors += 1
                log.warning("status report failed", error=redact(str(exc))[:500])
