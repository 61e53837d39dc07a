"""The I/O around the machine: gather facts, call `machine.step`, carry out its decision.

One asyncio lock per session serialises every path that reconciles it (its own watch events,
its pod's events, deadline wake-ups, admission pokes), so decisions never interleave.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, assert_never

import structlog

from avatar_crds import billing, contract
from avatar_crds.enums import Phase, WebhookEvent
from avatar_crds.phases import (
    WORKER_PHASES,
    holds_slot,
    is_being_deleted,
    is_terminal,
    phase_of,
)
from avatar_crds.session import AvatarSession
from avatar_crds.tenant import Tenant, Webhook
from avatar_operator import metrics, queue, resources, webhooks
from avatar_operator.admission import Capacity, admit
from avatar_operator.capacity import Placement
from avatar_operator.cluster_gpus import ClusterGpus
from avatar_operator.kube import FINALIZER, Kube, KubeError
from avatar_operator.machine import (
    Action,
    ChargeTenant,
    CreateWorker,
    Decision,
    DeleteSession,
    DeleteWorker,
    Facts,
    Limits,
    RemoveFinalizer,
    Stage,
    step,
)
from avatar_operator.observe import PodFacts, pod_facts
from avatar_operator.queue import Key, session_key
from avatar_operator.settings import Settings

RETRY_MAX_SECONDS = 30.0
CONFLICT_RETRY_SECONDS = 0.1
log = structlog.get_logger("avatar_operator")


class ClusterView(Protocol):
    """What the watches have seen, kept in memory (kopf indexes in production)."""

    def session(self, key: Key) -> dict[str, Any] | None: ...
    def sessions(self) -> Iterable[dict[str, Any]]: ...
    def pod(self, key: Key) -> dict[str, Any] | None: ...
    def pods(self) -> Iterable[dict[str, Any]]: ...
    def nodes(self) -> Iterable[dict[str, Any]]: ...
    def tenant(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class EventPoster(Protocol):
    """Posts a Kubernetes Event about a session (kopf's poster in production)."""

    def __call__(self, session: AvatarSession, kind: str, reason: str, message: str) -> None: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Reconciler:
    kube: Kube
    view: ClusterView
    settings: Settings
    webhooks: webhooks.WebhookSender
    post_event: EventPoster
    locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    wakeups: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    reserved: set[Key] = field(default_factory=set)
    """Admitted in memory but not yet seen as `starting` by the watch."""
    admission_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    admission_pending: bool = False
    failures: dict[Key, int] = field(default_factory=dict)
    retries: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    written: dict[Key, dict[str, Any]] = field(default_factory=dict)
    """The API server's answer to our own last write, until the watch shows it (or newer)."""
    delivering: set[tuple[Key, WebhookEvent]] = field(default_factory=set)
    """Pending webhook events being sent (or retried) now."""
    delivered: dict[Key, set[WebhookEvent]] = field(default_factory=dict)
    """Pending webhook events sent or given up on, until the status no longer lists them."""
    cluster_gpus: ClusterGpus | None = None
    """GPUs held by every pod in the cluster; until it has listed them, none count as free.
    None where other pods are not counted (settings.count_other_pods)."""

    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(
            start_timeout=timedelta(seconds=s.start_timeout_seconds),
            heartbeat_timeout=timedelta(seconds=s.heartbeat_timeout_seconds),
            finalize_timeout=timedelta(seconds=s.finalize_timeout_seconds),
            terminal_ttl=timedelta(seconds=s.terminal_ttl_seconds),
        )

    # --- entry points ---------------------------------------------------------------------

    def schedule(self, key: Key) -> None:
        """Reconcile soon, from any context (watch handler, timer, poke)."""
        task = asyncio.get_running_loop().create_task(self.reconcile(key))
        task.add_done_callback(lambda done: self._retry_on_failure(key, done))

    def _retry_on_failure(self, key: Key, task: asyncio.Task[None]) -> None:
        """A failed reconciliation is tried again with backoff; success resets the backoff."""
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self.failures.pop(key, None)
            return
        if isinstance(error, KubeError) and error.status == 409:
            # Someone (the worker, the API) wrote in between: decide again on fresh state.
            self.written.pop(key, None)
            if key not in self.retries:
                loop = asyncio.get_running_loop()
                self.retries[key] = loop.call_later(CONFLICT_RETRY_SECONDS, self._retry, key)
            return
        if key in self.retries:
            return  # one pending retry per session is enough: it re-reads everything
        count = self.failures[key] = self.failures.get(key, 0) + 1
        delay = min(RETRY_MAX_SECONDS, 0.5 * 2**count)
        log.error("reconcile_failed", session=key[1], error=repr(error), retry_in=delay)
        self.retries[key] = asyncio.get_running_loop().call_later(delay, self._retry, key)

    def _retry(self, key: Key) -> None:
        self.retries.pop(key, None)
        self.schedule(key)

    def poke_queued(self) -> None:
        """Capacity may have freed up, or a session joined the queue: run admission again."""
        if self.admission_pending:
            return
        self.admission_pending = True
        asyncio.get_running_loop().call_soon(self._start_admission_pass)

    def _start_admission_pass(self) -> None:
        task = asyncio.get_running_loop().create_task(self._admission_pass())
        task.add_done_callback(_log_admission_failure)

    async def _admission_pass(self) -> None:
        """One pass over the whole queue admits every session that fits, in FIFO order, and
        asks each to reconcile. A burst of pokes costs one pass, not one per queued session."""
        async with self.admission_lock:
            self.admission_pending = False
            queued = queue.waiting_sessions(self.view.sessions(), self.reserved)
            chosen = set(admit(queue.queue(queued), self._capacity()))
            admitted = [session_key(b) for b in queued if b["metadata"]["name"] in chosen]
            self.reserved.update(admitted)
        for key in admitted:
            self.schedule(key)

    async def reconcile(self, key: Key) -> None:
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            body = self._latest(key)
            if body is None:
                self._forget(key)
                return
            metrics.RECONCILES.inc()
            try:
                await self._reconcile(body)
            except Exception as exc:
                metrics.RECONCILE_ERRORS.labels(type(exc).__name__).inc()
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
        bound = log.bind(session=key[1], namespace=key[0])
        phase = phase_of(session)
        if phase in WORKER_PHASES or phase.is_terminal:
            self.reserved.discard(key)
        deleting = session.metadata.deletion_timestamp is not None
        if not deleting and FINALIZER not in session.metadata.finalizers:
            updated = await self.kube.add_finalizer(*key, session.metadata.finalizers)
            if updated is not None:
                self.written[key] = updated
                session = AvatarSession.model_validate(updated)
        facts = await self._facts(session, phase, deleting)
        decision = step(phase, facts, utcnow())
        await self._apply(session, decision, bound)
        # Written: these are out of the status now. (Any delivered meanwhile stay, for next time.)
        done = self.delivered.get(key)
        if done is not None:
            done -= facts.webhooks_done
            if not done:
                del self.delivered[key]

    async def _facts(self, session: AvatarSession, phase: Phase, deleting: bool) -> Facts:
        key = (session.metadata.namespace or "", session.metadata.name or "")
        pod = await self._pod(key, phase)
        node_present = True
        if pod is not None and pod.node_name and phase in WORKER_PHASES:
            known = {n["metadata"]["name"] for n in self.view.nodes()}
            node_present = pod.node_name in known or await self.kube.node_exists(pod.node_name)
        admitted = key in self.reserved
        if phase in (Phase.CREATED, Phase.QUEUED) and not deleting and not admitted:
            self.poke_queued()
        tenant = self._tenant(key[0], session.spec.tenant)
        foreign = None
        if phase is Phase.QUEUED and admitted and pod is None and not deleting:
            foreign = await self._foreign_token_secret(session)
        return Facts(
            spec=session.spec,
            status=session.status,
            limits=self.limits,
            deleting=deleting,
            pod=pod,
            node_present=node_present,
            admitted=admitted,
            minutes_exhausted=_minutes_exhausted(session, tenant),
            webhooks_enabled=tenant is not None and tenant.spec.webhook is not None,
            webhooks_done=frozenset(self.delivered.get(key, ())),
            foreign_token_secret=foreign,
            generation=session.metadata.generation,
            pod_name=contract.worker_pod_name(key[1]),
        )

    async def _foreign_token_secret(self, session: AvatarSession) -> str | None:
        """Read just before the worker would mount it: is the named Secret this session's?"""
        namespace = session.metadata.namespace or ""
        name = session.spec.token_secret_ref.name
        secret = await self.kube.read("Secret", namespace, name)
        return resources.foreign_token_secret(session, secret)

    async def _pod(self, key: Key, phase: Phase) -> PodFacts | None:
        body = self.view.pod(key)
        if body is None and phase in (Phase.STARTING, Phase.RUNNING):
            # The watch may lag behind a pod created a moment ago: only the API server
            # may say that the pod is really gone before the session is failed for it.
            body = await self.kube.read("Pod", key[0], contract.worker_pod_name(key[1]))
        return pod_facts(body) if body is not None else None

    def _capacity(self) -> Capacity:
        sessions = list(self.view.sessions())
        limits: dict[str, int] = {}
        for body in sessions:
            tenant = body["spec"]["tenant"]
            if tenant not in limits:
                parsed = self._tenant(body["metadata"]["namespace"], tenant)
                if parsed is not None:
                    limits[tenant] = parsed.spec.plan.max_concurrent_sessions
        worker = self.settings.worker
        return queue.capacity(
            sessions=sessions,
            pods=self.view.pods(),
            nodes=self.view.nodes(),
            # No cluster watch (CPU workers, or a GPU pool kept for Facecast: count_other_pods
            # off): only our own pods hold GPUs, known at once from the pod index.
            cluster_gpus=self.cluster_gpus.held if self.cluster_gpus is not None else {},
            placement=Placement(worker.node_selector, worker.tolerations),
            tenant_limits=limits,
            reserved=self.reserved,
            gpu_resource=worker.gpu_resource_name,
            gpus_per_session=worker.gpu_count,
        )

    def _tenant(self, namespace: str, name: str) -> Tenant | None:
        body = self.view.tenant(namespace, name)
        return Tenant.model_validate(body) if body else None

    # --- carrying out a decision ---------------------------------------------------------

    async def _apply(self, session: AvatarSession, decision: Decision, bound: Any) -> None:
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
                self.written[_key_of(session)] = updated
        if decision.phase != old_phase:
            self._record_transition(session, decision, bound)
        charged = any(isinstance(action, ChargeTenant) for action in decision.actions)
        if not charged and _slot_may_have_moved(session, decision.phase):
            try:
                await self._update_tenant_usage(session, decision.phase, None)
            except (KubeError, RuntimeError) as exc:
                # Only a count for kubectl, recounted at the tenant's next change: failing
                # the reconciliation for it would not write it again (the phase is written).
                bound.warning("tenant_count_not_written", error=repr(exc))
        await self._send_webhooks(session.model_copy(update={"status": decision.status}))
        for action in decision.actions_at(Stage.AFTER_STATUS):
            await self._carry_out(action, session, decision.phase)
        self._arm(_key_of(session), decision.wake_at)
        if decision.phase != old_phase and (
            decision.phase.is_terminal or decision.phase is Phase.ENDING
        ):
            self.poke_queued()

    async def _carry_out(self, action: Action, session: AvatarSession, phase: Phase) -> None:
        namespace, name = session.metadata.namespace or "", session.metadata.name or ""
        match action:
            case CreateWorker():
                for obj in resources.worker_rbac(session):
                    await self.kube.create(obj)
                await self.kube.create(resources.worker_pod(session, self.settings.worker))
            case DeleteWorker(force=force):
                pod = contract.worker_pod_name(name)
                await self.kube.delete("Pod", namespace, pod, force=force)
            case ChargeTenant(seconds=seconds):
                await self._update_tenant_usage(session, phase, seconds)
            case RemoveFinalizer():
                await self.kube.remove_finalizer(namespace, name, session.metadata.finalizers)
            case DeleteSession():
                await self.kube.delete("AvatarSession", namespace, name)
            case _:
                assert_never(action)

    def _record_transition(self, session: AvatarSession, decision: Decision, bound: Any) -> None:
        old = phase_of(session)
        metrics.TRANSITIONS.labels(old.value, decision.phase.value).inc()
        if decision.phase is Phase.RUNNING and session.metadata.creation_timestamp:
            created = datetime.fromisoformat(session.metadata.creation_timestamp)
            metrics.TIME_TO_RUNNING.observe((utcnow() - created).total_seconds())
        bound.info(
            "session_transition",
            from_phase=old.value,
            to_phase=decision.phase.value,
            reason=str(decision.status.reason) if decision.status.reason else None,
        )
        if decision.event is not None:
            self.post_event(session, *decision.event)

    # --- webhooks ----------------------------------------------------------------------------

    async def _send_webhooks(self, session: AvatarSession) -> None:
        """Start delivering every event the (just written) status lists that is not already
        on its way: new ones, and after a restart those the last operator left undelivered."""
        key = _key_of(session)
        done = self.delivered.get(key, set())
        waiting = [
            pending
            for pending in session.status.pending_webhooks
            if pending.event not in done and (key, pending.event) not in self.delivering
        ]
        if not waiting:
            return
        hook = self._webhook_of(session)
        secret = None
        if hook is not None:
            secret = await self.kube.read_secret_value(
                key[0], hook.secret_ref.name, hook.secret_ref.key
            )
            if secret is None:
                log.warning("webhook_secret_missing", tenant=session.spec.tenant, session=key[1])
        for pending in waiting:
            self.delivering.add((key, pending.event))
            on_done = functools.partial(self._webhook_done, key, pending.event)
            if hook is None or secret is None:
                on_done()  # nowhere to send it (the tenant dropped its endpoint): let it go
                continue
            self.webhooks.send(hook.url, secret, pending, session, on_done=on_done)

    def _webhook_done(self, key: Key, event: WebhookEvent) -> None:
        """Delivered or given up on: the next reconciliation takes it out of the status."""
        self.delivering.discard((key, event))
        self.delivered.setdefault(key, set()).add(event)
        self.schedule(key)

    def _webhook_of(self, session: AvatarSession) -> Webhook | None:
        tenant = self._tenant(session.metadata.namespace or "", session.spec.tenant)
        return tenant.spec.webhook if tenant else None

    async def _update_tenant_usage(
        self, session: AvatarSession, phase: Phase, charge: float | None
    ) -> None:
        """Write the tenant's count of slot-holding sessions (this one now in `phase`) and,
        with `charge`, add the session's seconds once, even across retries and restarts. Called
        only on a charge or when the session may have taken or freed a slot: not on every step."""
        namespace, name = session.metadata.namespace or "", session.metadata.name or ""
        for _attempt in range(5):
            body = await self.kube.read("Tenant", namespace, session.spec.tenant)
            if body is None:
                return
            tenant = Tenant.model_validate(body)
            usage = tenant.status.usage
            if charge is not None:
                usage = billing.charge(usage, name, charge, utcnow())
            own = holds_slot(phase, deleting=is_being_deleted(session))
            active = self._active_sessions(namespace, session.spec.tenant, (namespace, name), own)
            usage = usage.model_copy(update={"active_sessions": active})
            if usage == tenant.status.usage:
                return
            body["status"] = tenant.status.model_copy(update={"usage": usage}).to_k8s()
            try:
                await self.kube.replace_status("Tenant", body)
                return
            except Exception as exc:  # a concurrent writer won the race: read again
                if getattr(exc, "status", None) != 409:
                    raise
        raise RuntimeError(f"could not update tenant {session.spec.tenant} after 5 attempts")

    def _active_sessions(self, namespace: str, tenant: str, own: Key, own_holds: bool) -> int:
        """The tenant's sessions holding a slot (`avatar_crds.phases`, the API's count too),
        as watched or as we last wrote them, with `own` as just decided (the watch has not
        seen it yet)."""
        others = []
        for seen in self.view.sessions():
            key = session_key(seen)
            if key != own and key[0] == namespace:
                mine = self.written.get(key, seen)
                others.append(mine if _version(mine) > _version(seen) else seen)
        return queue.held_slots(others).get(tenant, 0) + own_holds

    # --- timers --------------------------------------------------------------------------

    def _arm(self, key: Key, wake_at: datetime | None) -> None:
        previous = self.wakeups.pop(key, None)
        if previous is not None:
            previous.cancel()
        if wake_at is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, (wake_at - utcnow()).total_seconds())
        self.wakeups[key] = loop.call_at(loop.time() + delay, self.schedule, key)

    async def close(self) -> None:
        """Stop every timer, then the clients: nothing may reconcile on a closed client."""
        for timers in (self.wakeups, self.retries):
            for handle in timers.values():
                handle.cancel()
            timers.clear()
        await self.webhooks.close()
        await self.kube.close()

    def _forget(self, key: Key) -> None:
        self.written.pop(key, None)
        for timers in (self.wakeups, self.retries):
            handle = timers.pop(key, None)
            if handle is not None:
                handle.cancel()
        self.reserved.discard(key)
        self.delivered.pop(key, None)
        self.locks.pop(key, None)


def _log_admission_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("admission_failed", error=repr(task.exception()))


def _slot_may_have_moved(session: AvatarSession, phase: Phase) -> bool:
    """Whether stepping `session` into `phase` may change its tenant's slot count: the first
    step on a new session (it took its slot at create), a move into or out of the terminal
    phases, or any move of a session being deleted (it gave its slot back then)."""
    if session.status.phase is None:
        return True
    if phase is phase_of(session):
        return False
    return is_being_deleted(session) or phase.is_terminal != is_terminal(session)


def _minutes_exhausted(session: AvatarSession, tenant: Tenant | None) -> bool:
    if tenant is None:
        return False
    own = session.status.worker.billable_seconds if session.status.worker else 0.0
    used = billing.seconds_used(tenant.status.usage, utcnow())
    return used + own >= tenant.spec.plan.minutes * 60


def _version(body: dict[str, Any]) -> int:
    """resourceVersion is opaque to clients in general, but the etcd-backed API server issues
    increasing integers; comparing them tells which of two copies of one object is newer."""
    try:
        return int(body["metadata"].get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


def _key_of(session: AvatarSession) -> Key:
    return session.metadata.namespace or "", session.metadata.name or ""
