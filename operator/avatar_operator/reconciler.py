"""The I/O around the machine: gather facts, call `machine.step`, carry out its decision.

Every path that reconciles a session (its own watch events, its pod's events, deadline
wake-ups, admission, webhook deliveries, retries) goes through one work queue
(`workqueue.py`), which runs one reconciliation of a session at a time, so decisions never
interleave. The webhook outbox (`outbox.py`) and tenant charging (`billing.py`) are their own.

Sessions run on warm pool workers: the admission pass binds queued sessions to free slots of
ready workers of a WorkerPool serving their tier (`pool_assignment.assign`), and the pool
controller (`pool_controller.py`) keeps the workers and their grants. A session never has a pod
of its own; a pool with no buffer and one slot per worker starts a worker per session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, assert_never

import structlog

from avatar_crds.enums import Phase
from avatar_crds.phases import (
    WAITING_PHASES,
    WORKER_PHASES,
    holds_slot,
    is_being_deleted,
    phase_of,
)
from avatar_crds.session import AvatarSession, Binding
from avatar_crds.tenant import Tenant, TenantUsage, Webhook
from avatar_operator import billing, capacity_readings, metrics, pool_readings, resources, webhooks
from avatar_operator.admission import TenantRoom
from avatar_operator.event_pacing import EventPoster, PacedEvents
from avatar_operator.kube import FINALIZER, IN_FLIGHT, Kube, KubeError
from avatar_operator.machine import (
    Action,
    ChargeTenant,
    Decision,
    DeleteSession,
    Facts,
    Limits,
    RemoveFinalizer,
    Stage,
    SyncGrant,
    step,
)
from avatar_operator.observe import Key, PodFacts, key_of, pod_facts, session_key
from avatar_operator.outbox import WebhookOutbox
from avatar_operator.pool_assignment import WaitReason, assign
from avatar_operator.pool_controller import PoolController
from avatar_operator.settings import Settings
from avatar_operator.workqueue import Requeue, WorkQueue

CONFLICT_RETRY_SECONDS = 0.1
log = structlog.get_logger("avatar_operator")


class ClusterView(Protocol):
    """What the watches have seen, kept in memory (kopf indexes in production)."""

    def session(self, key: Key) -> dict[str, Any] | None:
        """The session whole."""
        ...

    def sessions(self) -> Iterable[dict[str, Any]]:
        """Each session whole or, for the scans, its summary (`watched_sessions`)."""
        ...

    def node(self, name: str) -> dict[str, Any] | None: ...
    def tenant(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def pools(self) -> Iterable[dict[str, Any]]: ...
    def pool_pods(self) -> Iterable[dict[str, Any]]: ...
    def pool_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def bound_to(self, namespace: str, pod: str) -> list[Key]:
        """The sessions the watch shows holding a slot of that pool worker."""
        ...


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Reconciler:
    kube: Kube
    view: ClusterView
    settings: Settings
    webhooks: webhooks.WebhookSender
    post_event: EventPoster
    bindings: dict[Key, Binding] = field(default_factory=dict)
    """Pool slots chosen in memory for queued sessions, until their status records them."""
    admission_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    admission_pending: bool = False
    admission_done: asyncio.Future[None] | None = None
    """Resolved when the pass now pending has run (`next_admission_pass`)."""
    next_pass_at: float = 0.0
    """Loop time before which no admission pass starts. A pass reads every session and holds
    the loop while it does: the next one waits as long as the last took, so with thousands of
    sessions passes take at most half the loop and the writes they lead to still get done."""
    written: dict[Key, dict[str, Any]] = field(default_factory=dict)
    """The API server's answer to our own last write, until the watch shows it (or newer)."""
    tenants: dict[Key, tuple[str | None, Tenant]] = field(default_factory=dict)
    """Each tenant parsed, with the resourceVersion it was parsed from."""
    queue: WorkQueue[Key] = field(init=False)
    outbox: WebhookOutbox = field(init=False)
    pools: PoolController = field(init=False)
    tenant_counts: WorkQueue[Key] = field(init=False)
    """(namespace, tenant) whose count of slot-holding sessions may have changed."""
    events: PacedEvents = field(init=False)
    """Transition Events, held while bindings are being written (`event_pacing`)."""

    def __post_init__(self) -> None:
        self.queue = WorkQueue(self._reconcile_key, on_failure=_log_failure, concurrency=IN_FLIGHT)
        self.tenant_counts = WorkQueue(self._write_tenant_count, on_failure=_log_count_failure)
        self.pools = PoolController(
            self.kube,
            self.view,
            self.settings,
            sessions=self._newest_sessions,
            sessions_on=self.sessions_on,
            reserved=lambda: self.bindings,
        )
        self.events = PacedEvents(self.post_event, busy=self._writing_bindings)
        self.outbox = WebhookOutbox(
            sender=self.webhooks,
            secrets=self.kube,
            webhook_of=self._webhook_of,
            on_done=self.schedule,
        )

    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(
            start_timeout=timedelta(seconds=s.start_timeout_seconds),
            heartbeat_timeout=timedelta(seconds=s.heartbeat_timeout_seconds),
            finalize_timeout=timedelta(seconds=s.finalize_timeout_seconds),
            terminal_ttl=timedelta(seconds=s.terminal_ttl_seconds),
            ending_soon=timedelta(seconds=s.ending_soon_seconds),
        )

    # --- entry points ---------------------------------------------------------------------

    def schedule(self, key: Key) -> None:
        """Reconcile soon, from any context (watch handler, timer, poke)."""
        self.queue.add(key)

    async def reconcile(self, key: Key) -> None:
        """Reconcile now (after any reconciliation of the session in progress) and wait."""
        self._latest(key)  # our write, once watched, is no longer kept beside it
        await self.queue.run(key)

    def poke_queued(self) -> None:
        """Capacity may have freed up, or a session joined the queue: run admission again."""
        if self.admission_pending:
            return
        self.admission_pending = True
        loop = asyncio.get_running_loop()
        self.admission_done = loop.create_future()
        loop.call_later(max(0.0, self.next_pass_at - loop.time()), self._start_admission_pass)

    async def next_admission_pass(self) -> None:
        """Run admission (with every session known by now) and wait until it has."""
        self.poke_queued()
        assert self.admission_done is not None
        await asyncio.shield(self.admission_done)

    def _start_admission_pass(self) -> None:
        task = asyncio.get_running_loop().create_task(self._admission_pass())
        task.add_done_callback(_log_admission_failure)

    async def _admission_pass(self) -> None:
        """One pass over the whole queue binds every session a free slot is found for, in FIFO
        order, and asks each to reconcile. A burst of pokes costs one pass, not one per queued
        session."""
        async with self.admission_lock:
            self.admission_pending = False
            done, self.admission_done = self.admission_done, None
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                self._admit_and_bind()
            finally:
                took = loop.time() - started
                metrics.ADMISSION_PASS_SECONDS.observe(took)
                self.next_pass_at = loop.time() + took
                if done is not None and not done.done():
                    done.set_result(None)

    def _admit_and_bind(self) -> None:
        # One pass over every session (each as watched or as we last wrote it) reads what
        # binding needs in each namespace; only namespaces with sessions still to bind go on,
        # so a pass that finds every waiting session bound already (a burst being written)
        # reads no pool.
        newest = (self._newer(seen) for seen in self.view.sessions())
        queues = capacity_readings.read_queues(newest, self.bindings)
        for namespace, queue in sorted(queues.items()):
            if queue.waiting:
                for key in self._bind(namespace, queue):
                    self.schedule(key)

    def _bind(self, namespace: str, queue: capacity_readings.NamespaceQueue) -> list[Key]:
        """Chooses a free pool slot for each waiting session of the namespace that may start
        (`pool_assignment.assign`); the session's reconciliation writes it. A pool short of
        slots is asked to grow."""
        pools = [p for p in self.view.pools() if p["metadata"]["namespace"] == namespace]
        pods = self.pools.bindable_pods(namespace)
        serving = pool_readings.serving(pools)
        assignment = assign(
            (capacity_readings.queued_session(body) for body in queue.waiting),
            serving,
            pool_readings.pool_workers(pods, queue.taken),
            TenantRoom(
                held_by_tenant=queue.held_by_tenant,
                max_by_tenant=self._tenant_limits(namespace, queue.tenants),
            ),
        )
        keys: list[Key] = []
        for found in assignment.bindings:
            key = (namespace, found.session)
            self.bindings[key] = Binding(pool=found.pool, pod=found.pod, slot=found.slot)
            keys.append(key)
        short = {r for r in assignment.waiting.values() if r is WaitReason.NO_FREE_SLOT}
        if short or keys:  # busy and free slots moved, or the pools must grow
            for pool in serving:
                self.pools.schedule(namespace, pool)
        return keys

    async def _reconcile_key(self, key: Key) -> None:
        """The queue's work for one session: failures are its to retry."""
        body = self._latest(key)
        if body is None:
            self._forget(key)
            return
        metrics.RECONCILES.inc()
        try:
            await self._reconcile(body)
        except Exception as exc:
            metrics.RECONCILE_ERRORS.labels(type(exc).__name__).inc()
            if isinstance(exc, KubeError) and exc.status == 409:
                # Someone (the worker, the API) wrote in between: decide again on fresh state.
                self.written.pop(key, None)
                raise Requeue(CONFLICT_RETRY_SECONDS) from exc
            raise

    def _latest(self, key: Key) -> dict[str, Any] | None:
        """The newest known state of a session: the watch's, or our own write if newer."""
        seen = self.view.session(key)
        mine = self.written.get(key)
        if seen is None or mine is None:
            return seen
        if _version(mine) > _version(seen):
            return mine
        del self.written[key]
        return seen

    # --- one reconciliation ----------------------------------------------------------------

    async def _reconcile(self, body: dict[str, Any]) -> None:
        session = AvatarSession.model_validate(body)
        key = session_key(body)
        phase = phase_of(session)
        if phase in WORKER_PHASES or phase.is_terminal:
            self.bindings.pop(key, None)
            self.events.release()
        deleting = session.metadata.deletion_timestamp is not None
        waiting = phase in WAITING_PHASES and not deleting and key not in self.bindings
        if waiting:
            if phase is Phase.CREATED:
                # A free slot now saves the `queued` write: bound and started in one.
                await self.next_admission_pass()
            else:
                # Already queued: the pass that binds it reconciles it again, so nothing here
                # waits for one (thousands queued would each hold a pass otherwise).
                self.poke_queued()
        if not deleting and FINALIZER not in session.metadata.finalizers:
            updated = await self.kube.add_finalizer(*key, session.metadata.finalizers)
            if updated is not None:
                self.written[key] = updated
                session = AvatarSession.model_validate(updated)
        facts = await self._facts(session, phase, deleting)
        decision = step(phase, facts, utcnow())
        await self._apply(session, decision)
        self.outbox.written_out(key, facts.webhooks_done)

    async def _facts(self, session: AvatarSession, phase: Phase, deleting: bool) -> Facts:
        key = key_of(session)
        chosen = self.bindings.get(key) if phase in WAITING_PHASES and not deleting else None
        binding = session.status.binding or chosen
        pod = await self._pool_pod(key[0], binding.pod, phase) if binding is not None else None
        node_present = True
        if pod is not None and pod.node_name and phase in WORKER_PHASES:
            node = pod.node_name
            node_present = self.view.node(node) is not None or await self.kube.node_exists(node)
        tenant = self._tenant(key[0], session.spec.tenant)
        return Facts(
            spec=session.spec,
            status=session.status,
            limits=self.limits,
            deleting=deleting,
            pod=pod,
            node_present=node_present,
            minutes_exhausted=billing.minutes_exhausted(session, tenant, utcnow()),
            webhooks_enabled=tenant is not None and tenant.spec.webhook is not None,
            webhooks_done=self.outbox.done(key),
            generation=session.metadata.generation,
            binding=chosen,
        )

    async def _pool_pod(self, namespace: str, pod: str, phase: Phase) -> PodFacts | None:
        """The pool worker a session is bound to (or about to be)."""
        body = self.view.pool_pod(namespace, pod)
        if body is None and not phase.is_terminal:
            # The watch may lag behind: only the API server may say the worker is gone.
            body = await self.kube.read("Pod", namespace, pod)
        return pod_facts(body) if body is not None else None

    def _writing_bindings(self) -> bool:
        """Sessions chosen for a slot whose status does not record it yet."""
        return bool(self.bindings)

    def _tenant_limits(self, namespace: str, tenants: Iterable[str]) -> dict[str, int]:
        limits: dict[str, int] = {}
        for name in tenants:
            tenant = self._tenant(namespace, name)
            if tenant is not None:
                limits[name] = tenant.spec.plan.max_concurrent_sessions
        return limits

    def _tenant(self, namespace: str, name: str) -> Tenant | None:
        """The tenant as watched, parsed once per version (every reconciliation reads it)."""
        body = self.view.tenant(namespace, name)
        if not body:
            return None
        version = body["metadata"].get("resourceVersion")
        parsed = self.tenants.get((namespace, name))
        if parsed is None or parsed[0] != version or version is None:
            parsed = self.tenants[(namespace, name)] = (version, Tenant.model_validate(body))
        return parsed[1]

    # --- carrying out a decision ---------------------------------------------------------

    async def _apply(self, session: AvatarSession, decision: Decision) -> None:
        namespace, name = session.metadata.namespace or "", session.metadata.name or ""
        old_phase = phase_of(session)
        for action in decision.actions_at(Stage.BEFORE_STATUS):
            await self._carry_out(action, session, decision.phase)
        patch = resources.status_patch(session.status, decision.status)
        if patch is not None:
            # Conditional on the version decided from: a stale decision fails with 409.
            patch["metadata"] = {"resourceVersion": session.metadata.resource_version}
            updated = await self.kube.patch_status("AvatarSession", namespace, name, patch)
            if updated is not None:
                self.written[key_of(session)] = updated
        if decision.phase != old_phase:
            self._record_transition(session, decision)
        charged = any(isinstance(action, ChargeTenant) for action in decision.actions)
        if not charged and billing.slot_may_have_moved(session, decision.phase):
            # Only a count for kubectl: a burst of sessions starting is one write, made from
            # the statuses as written (retried on its own, not by failing this session).
            self.tenant_counts.add((namespace, session.spec.tenant))
        await self.outbox.send(session.model_copy(update={"status": decision.status}))
        for action in decision.actions_at(Stage.AFTER_STATUS):
            await self._carry_out(action, session, decision.phase)
        self._arm(key_of(session), decision.wake_at)
        if decision.phase != old_phase and (
            decision.phase.is_terminal or decision.phase is Phase.ENDING
        ):
            self.poke_queued()

    async def _carry_out(self, action: Action, session: AvatarSession, phase: Phase) -> None:
        namespace, name = session.metadata.namespace or "", session.metadata.name or ""
        match action:
            case SyncGrant(pool=pool, pod=pod):
                self.pools.grant_changed(namespace, pod)
                self.pools.schedule(namespace, pool)
            case ChargeTenant(seconds=seconds):
                await self._update_tenant_usage(session, phase, seconds)
            case RemoveFinalizer():
                await self.kube.remove_finalizer(namespace, name, session.metadata.finalizers)
            case DeleteSession():
                await self.kube.delete("AvatarSession", namespace, name)
            case _:
                assert_never(action)

    def _record_transition(self, session: AvatarSession, decision: Decision) -> None:
        old = phase_of(session)
        namespace, name = key_of(session)
        metrics.TRANSITIONS.labels(old.value, decision.phase.value).inc()
        if decision.phase is Phase.RUNNING and session.metadata.creation_timestamp:
            created = datetime.fromisoformat(session.metadata.creation_timestamp)
            metrics.TIME_TO_RUNNING.observe((utcnow() - created).total_seconds())
        log.info(
            "session_transition",
            session=name,
            namespace=namespace,
            from_phase=old.value,
            to_phase=decision.phase.value,
            reason=str(decision.status.reason) if decision.status.reason else None,
        )
        if decision.event is not None:
            self.events.post(session, *decision.event)

    def _webhook_of(self, session: AvatarSession) -> Webhook | None:
        tenant = self._tenant(session.metadata.namespace or "", session.spec.tenant)
        return tenant.spec.webhook if tenant else None

    # --- tenant usage ----------------------------------------------------------------------

    async def _update_tenant_usage(
        self, session: AvatarSession, phase: Phase, charge: float | None
    ) -> None:
        """Write the tenant's count of slot-holding sessions (this one now in `phase`) and,
        with `charge`, add the session's seconds. Called only on a charge or when the session
        may have taken or freed a slot: not on every step."""
        namespace, name = key_of(session)
        tenant = session.spec.tenant
        own = holds_slot(phase, deleting=is_being_deleted(session))

        def update(usage: TenantUsage) -> TenantUsage:
            active = self._active_sessions(namespace, tenant, (namespace, name), own)
            return billing.usage_after(
                usage, session=name, charge=charge, active=active, now=utcnow()
            )

        await billing.write_usage(self.kube, namespace, tenant, update)

    async def _write_tenant_count(self, key: Key) -> None:
        namespace, tenant = key
        newest = (s for s in self._newest_sessions() if s["metadata"]["namespace"] == namespace)
        active = capacity_readings.held_slots(newest).get(tenant, 0)

        def update(usage: TenantUsage) -> TenantUsage:
            return usage.model_copy(update={"active_sessions": active})

        await billing.write_usage(self.kube, namespace, tenant, update)

    def _active_sessions(self, namespace: str, tenant: str, own: Key, own_holds: bool) -> int:
        """`billing.active_sessions` over each session as watched or as we last wrote it."""
        return billing.active_sessions(self._newest_sessions(), namespace, tenant, own, own_holds)

    def sessions_on(self, namespace: str, pod: str) -> list[dict[str, Any]]:
        """The sessions holding a slot of that pool worker, each as watched or as we last
        wrote it, whichever is newer: those the watch shows there, and those our writes put
        there that it does not show yet. Reads only them, not every session."""
        keys = set(self.view.bound_to(namespace, pod))
        keys.update(
            key
            for key, mine in self.written.items()
            # Only the pod it names: a grant write asks, and thousands may be written unwatched.
            if key[0] == namespace
            and ((mine.get("status") or {}).get("binding") or {}).get("pod") == pod
        )
        newest = (self._newer(seen) for key in keys if (seen := self.view.session(key)))
        return [s for s in newest if (held := pool_readings.held_slot(s)) and held.pod == pod]

    def _newest_sessions(self) -> list[dict[str, Any]]:
        """Each session as watched or as we last wrote it, whichever is newer."""
        return [self._newer(seen) for seen in self.view.sessions()]

    def _newer(self, seen: dict[str, Any]) -> dict[str, Any]:
        mine = self.written.get(session_key(seen)) if self.written else None
        return mine if mine is not None and _version(mine) > _version(seen) else seen

    # --- timers and shutdown ---------------------------------------------------------------

    def _arm(self, key: Key, wake_at: datetime | None) -> None:
        delay = None if wake_at is None else max(0.0, (wake_at - utcnow()).total_seconds())
        self.queue.wake(key, delay)

    async def close(self) -> None:
        """Stop every timer and reconciliation, then the clients: nothing may reconcile on a
        closed client."""
        await self.queue.close()
        await self.tenant_counts.close()
        await self.pools.close()
        await self.outbox.close()
        await self.kube.close()

    def _forget(self, key: Key) -> None:
        self.written.pop(key, None)
        self.queue.forget(key)
        self.bindings.pop(key, None)
        self.events.release()
        self.outbox.forget(key)


def _log_failure(key: Key, error: Exception, retry_in: float) -> None:
    log.error("reconcile_failed", session=key[1], error=repr(error), retry_in=retry_in)


def _log_count_failure(key: Key, error: Exception, retry_in: float) -> None:
    log.warning("tenant_count_not_written", tenant=key[1], error=repr(error), retry_in=retry_in)


def _log_admission_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("admission_failed", error=repr(task.exception()))


def _version(body: dict[str, Any]) -> int:
    """resourceVersion is opaque to clients in general, but the etcd-backed API server issues
    increasing integers; comparing them tells which of two copies of one object is newer."""
    try:
        return int(body["metadata"].get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0
