"""The pool worker's loop: load the renderer, say ready, follow the grant, run one per-session
Worker per granted session on the slot its binding names, and drain them all on SIGTERM.

Every slot runs a fresh Worker (its own buffers, frames, renderer, token, status sink and log
binding), so nothing of one session reaches the next; what they share is the process-wide
renderer model (`neural.shared`) loaded before the worker says ready, and the avatars prepared
for drawing (`render.rig_cache`: only what comes from an Avatar, which each session must still
read with its own grant).

A session leaves its slot when it turns ending or terminal (the slot's Worker sees it on its
session watch) or when the grant no longer names it (cut at once: the worker may no longer read
or report it). It reports `leftAt` on its way out; once the grant is revoked that write may be
refused, which is logged and is no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

from avatar_crds.capabilities import NEEDS_MODEL_WEIGHTS
from avatar_crds.enums import Quality
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.session import AvatarSession
from avatar_worker.config import KubernetesSessionSource, PoolConfig
from avatar_worker.drain import DrainMode, ShutdownSignals
from avatar_worker.errors import WorkerError
from avatar_worker.logging import bind_session, get_logger, redact
from avatar_worker.named_watch import NamedWatch
from avatar_worker.pool.grant import granted_sessions
from avatar_worker.pool.slots import Refused, SlotTable, place
from avatar_worker.pool.token import SecretToken
from avatar_worker.render import model_dir
from avatar_worker.render.rig_cache import RigCache
from avatar_worker.reporting import KubernetesStatusSink
from avatar_worker.worker import EXIT_FAILED, EXIT_OK, Worker

log = get_logger("avatar_worker.pool")


def load_renderers(qualities: frozenset[Quality], slots: int) -> None:
    """Load what every slot's renderer shares, before the worker says ready: the neural tiers'
    model (one per process, its passes sized for a frame from every slot). The mock and lite
    tiers draw with numpy from each session's own portrait: there is nothing to load for them."""
    if qualities & NEEDS_MODEL_WEIGHTS:
        from avatar_worker.neural.shared import batch_renderer

        batch_renderer(model_dir(), sessions=slots)


class PoolRuntime:
    def __init__(
        self, config: PoolConfig, api_client: Any, *, signals: ShutdownSignals | None = None
    ) -> None:
        from kubernetes import client as k8s

        self.config = config
        self.signals = signals or ShutdownSignals()
        self._api = api_client
        self._sessions = k8s.CustomObjectsApi(api_client)
        rbac = k8s.RbacAuthorizationV1Api(api_client)
        self._grant_watch = NamedWatch(
            kind="grant",
            name=config.grant,
            read=partial(_read_role, rbac, config.namespace, config.grant),
            list_objects=partial(rbac.list_namespaced_role, config.namespace),
            parse=granted_sessions,
        )
        self._table = SlotTable(config.slots)
        self.rigs = RigCache()
        self._freed = asyncio.Condition()
        # Every session the grant names has a task here, done or not, until the grant drops it:
        # a session is served once per grant, not again when the Role changes for another.
        self._granted: dict[str, asyncio.Task[None]] = {}
        self._revoked: set[asyncio.Task[None]] = set()  # still leaving
        self.workers: dict[str, Worker] = {}  # the sessions being served now

    async def run(self) -> int:
        try:
            await asyncio.to_thread(load_renderers, self.config.qualities, self.config.slots)
        except WorkerError as failure:
            log.error(
                "the renderer could not be loaded",
                reason=failure.reason.value,
                message=failure.message,
            )
            return EXIT_FAILED
        ready_file = Path(self.config.ready_file)
        await asyncio.to_thread(ready_file.write_text, "ready\n", encoding="utf-8")
        log.info(
            "ready",
            grant=self.config.grant,
            slots=self.config.slots,
            qualities=sorted(quality.value for quality in self.config.qualities),
        )
        follow = asyncio.create_task(self._follow_grant(), name="follow-grant")
        drain = asyncio.create_task(self.signals.drain.wait())
        try:
            done, _ = await asyncio.wait({follow, drain}, return_when=asyncio.FIRST_COMPLETED)
            if follow in done:
                follow.result()  # raises what stopped it
        finally:
            await asyncio.to_thread(ready_file.unlink, missing_ok=True)
            for task in (follow, drain):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._drain_slots()
        return EXIT_OK

    # -- the grant --------------------------------------------------------------------------

    async def _follow_grant(self) -> None:
        async for granted in self._grant_watch.follow(None):
            self._on_grant(granted)

    def _on_grant(self, granted: frozenset[str]) -> None:
        for name in self._granted.keys() - granted:
            self._revoke(name)
        for name in sorted(granted - self._granted.keys()):
            if self.signals.drain.is_set():
                log.info("draining: not taking a newly granted session", session=name)
                continue
            self._granted[name] = asyncio.create_task(self._serve(name), name=f"slot-{name}")

    def _revoke(self, name: str) -> None:
        task = self._granted.pop(name)
        if task.done():
            return
        worker = self.workers.get(name)
        if worker is None:
            task.cancel()  # not yet in its slot
        else:
            worker.leave(DrainMode.CUT, "the grant no longer names the session")
        self._revoked.add(task)
        task.add_done_callback(self._revoked.discard)

    # -- one slot ---------------------------------------------------------------------------

    async def _serve(self, name: str) -> None:
        bind_session(self.config.namespace, name)
        try:
            await self._serve_bound(name)
        except Exception:  # a bug must not go unseen in a task nobody awaits until shutdown
            log.exception("the slot failed")

    async def _serve_bound(self, name: str) -> None:
        namespace = self.config.namespace
        session = await self._read_session(name)
        if session is None:
            return
        uid = session.metadata.uid  # its token Secret must be owned by this very session
        slot = place(session, pod=self.config.pod_name, slots=self.config.slots)
        if isinstance(slot, Refused):
            log.info("not serving a granted session", why=slot.why)
            return
        bind_session(namespace, name, slot=slot)
        async with self._freed:
            holder = self._table.holder(slot)
            if holder is not None:
                log.info("waiting for the slot's previous session to leave", previous=holder)
                session = None  # it may change while it waits: the Worker reads it again
            await self._freed.wait_for(lambda: self._table.take(slot, name))
        worker: Worker | None = None
        try:
            if self.signals.drain.is_set():
                return
            worker = Worker(
                self.config.worker,
                KubernetesSessionSource(self._api, namespace, name),
                KubernetesStatusSink(self._api, namespace, name),
                token=SecretToken(self._api, namespace, name, uid),
                pooled=True,
                rigs=self.rigs,
            )
            self.workers[name] = worker
            code = await worker.run(session)
            log.info("the slot is free", exit_code=code)
        finally:
            if worker is not None and self.workers.get(name) is worker:
                del self.workers[name]
            async with self._freed:
                self._table.release(slot, name)
                self._freed.notify_all()

    async def _read_session(self, name: str) -> AvatarSession | None:
        """The granted session; None (logged) if it cannot be read within the settle time (the
        authorizer may not know of the grant yet; the operator may have moved on)."""
        deadline = time.monotonic() + self.config.grant_settle_s
        delay = 0.05
        while True:
            try:
                raw = await asyncio.to_thread(
                    self._sessions.get_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.config.namespace,
                    AVATAR_SESSION.plural,
                    name,
                )
                return AvatarSession.model_validate(raw)
            except ValueError as error:
                log.warning("the granted session is unreadable", error=redact(str(error))[:300])
                return None
            except Exception as error:
                if time.monotonic() + delay >= deadline:
                    log.warning(
                        "cannot read the granted session",
                        status=getattr(error, "status", None),
                        error=type(error).__name__,
                    )
                    return None
                await asyncio.sleep(delay)  # a retry's backoff
                delay = min(delay * 2, 1.0)

    # -- shutdown ---------------------------------------------------------------------------

    async def _drain_slots(self) -> None:
        """Drain every slot (as instructed by each session), cutting them all on a second
        signal; sessions not yet in their slot are dropped."""
        tasks = [*self._granted.values(), *self._revoked]
        log.info("draining the slots", serving=len(self.workers))
        for name, task in self._granted.items():
            if name not in self.workers:
                task.cancel()
        # The process's signal, passed on to each slot's Worker as if it were its own.
        for worker in self.workers.values():
            worker.signals.drain.set()
        cut = asyncio.create_task(self._cut_on_second_signal())
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            cut.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cut
        log.info("drained")

    async def _cut_on_second_signal(self) -> None:
        await self.signals.cut.wait()
        for worker in list(self.workers.values()):
            worker.signals.cut.set()


def _read_role(rbac: Any, namespace: str, name: str) -> dict[str, Any]:
    """The Role as JSON, as the watch's events carry it."""
    response = rbac.read_namespaced_role(name, namespace, _preload_content=False)
    data: dict[str, Any] = json.loads(response.data)
    return data
