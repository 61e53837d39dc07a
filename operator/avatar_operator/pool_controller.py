"""The pool controller: keeps each WorkerPool's workers as `pool_scaling.plan` says, writes the
pool's status and writes each worker's grant. The I/O around `pool_readings` (what the watches
show), `pool_scaling` (what to do) and `pool_objects` (what to send).

Three work queues (`workqueue.py`), each running one job per key at a time, coalescing the
requests made meanwhile and retrying failures with back-off:

- pools, by (namespace, pool): plan from the pool's live workers and the sessions queued for
  it, take back, create, drain and delete workers, write the status if it changed, and arm a
  recheck for when an idle worker's scale-down delay runs out;
- grants, by (namespace, pod): rewrite one worker's Role from the sessions bound to it. A burst
  of bindings onto one worker costs one write (or two, if it lands while one is in flight), and
  none when the Role already says so;
- retirements, by (namespace, pod, account): delete a worker's identity once its pod is gone,
  so a worker keeps its rights while it finishes.

A worker is made identity first (ServiceAccount, whose name the API server picks, then the Role
and RoleBinding of that name), pod last, so the pod never runs without its rights; it goes pod
first, identity once the pod has gone. A worker's identity is its pod's `serviceAccountName`:
nothing about it lives only in memory. The watches lag behind our own writes, so what the API
server answered to them is kept until the watch shows as much (or WATCH_LAG_SECONDS pass): a
pass right after a create does not create again, nor one after a delete delete again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from pydantic import ValidationError

from avatar_crds import contract
from avatar_crds.kinds import WORKER_POOL
from avatar_crds.meta import GROUP, VERSION, controls
from avatar_crds.phases import body_is_being_deleted
from avatar_crds.pool import WorkerPool, WorkerPoolStatus
from avatar_crds.session import Binding
from avatar_operator import pool_objects, pool_readings, pool_scaling
from avatar_operator.kube import IN_FLIGHT, Kube
from avatar_operator.observe import Key
from avatar_operator.pool_readings import account_of, name_of, pool_of
from avatar_operator.settings import Settings
from avatar_operator.workqueue import WorkQueue
from facecast_kube import MERGE_PATCH, absent_ok, paths

WATCH_LAG_SECONDS = 30.0
"""How long our own write's answer stands in for a watch that has not shown it yet."""
RETIRE_RECHECK_SECONDS = 30.0
"""How often a retirement looks again for a pod still terminating (its watch event is what
normally calls it back)."""
CREATE_CONCURRENCY = 8
GRANT_BATCH_SECONDS = 0.02
"""A grant is written this long after the first request for it, not at once: the admission
pass binds several sessions at a time, each status written by its own reconciliation within
milliseconds of the others, and one Role write then takes them all. Later requests do not push
the write back, so no session waits longer than this for its grant."""
POOL_BATCH_SECONDS = 0.1
"""Requests to reconcile a pool within this are one pass: a burst of bindings (each one asks,
to count its slot) is one pass over the pool's sessions, not one per binding."""
POOL_PASS_SPACING = 3.0
"""A pool's next pass waits this many times as long as its last one took: a pass reads every
session of the namespace, so with thousands binding the passes take at most a quarter of the
loop, and the bindings (each a write the API server must serve) the rest."""
RECHECK_MARGIN_SECONDS = 0.05
"""Wake just after a scale-down delay runs out, not just before it."""
WORKER_POOLS = paths.custom(GROUP, VERSION, WORKER_POOL.plural)

PoolKey = tuple[str, str]
"""(namespace, pool name)."""
PodKey = tuple[str, str]
"""(namespace, pod name)."""
RetireKey = tuple[str, str, str]
"""(namespace, pod name, account)."""

log = structlog.get_logger("avatar_operator")


class PoolView(Protocol):
    """What the watches show of pools and their workers (`reconciler.ClusterView`)."""

    def pools(self) -> Iterable[dict[str, Any]]: ...
    def pool_pods(self) -> Iterable[dict[str, Any]]: ...
    def pool_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Answer:
    """The API server's answer to one of our writes, and when (monotonic) it came."""

    body: dict[str, Any]
    at: float


class PoolController:
    def __init__(
        self,
        kube: Kube,
        view: PoolView,
        settings: Settings,
        *,
        sessions: Callable[[], Iterable[dict[str, Any]]],
        sessions_on: Callable[[str, str], Iterable[Mapping[str, Any]]] | None = None,
        reserved: Callable[[], Mapping[Key, Binding]] = dict,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        """`sessions`: every session, each as watched or as last written, whichever is newer.
        `sessions_on`: those holding a slot of one worker (namespace, pod), read the same way
        but without a scan of them all (default: the scan).
        `reserved`: slots chosen for queued sessions in memory, not yet written: they count as
        taken, and their sessions no longer as queued."""
        self.kube = kube
        self.view = view
        self.settings = settings
        self._sessions = sessions
        self._sessions_on = sessions_on or self._scan_sessions_on
        self._reserved = reserved
        self._now = now
        self.pools: WorkQueue[PoolKey] = WorkQueue(self._reconcile, on_failure=_log_failure)
        self.grants: WorkQueue[PodKey] = WorkQueue(
            self._write_grant, on_failure=_log_failure, concurrency=IN_FLIGHT
        )
        self.retirements: WorkQueue[RetireKey] = WorkQueue(self._retire, on_failure=_log_failure)
        self._pods: dict[PodKey, _Answer] = {}
        """Worker pods as our last create or patch left them, until the watch catches up."""
        self._deleted: dict[PodKey, float] = {}
        """Worker pods we deleted, until the watch shows them going."""
        self._pool_answers: dict[PoolKey, dict[str, Any]] = {}
        """Each pool as our last status write left it."""
        self._rules: dict[tuple[str, str], list[dict[str, Any]]] = {}
        """(namespace, account) -> the rules its Role has on the API server, as last read or
        written: a grant that would not change them is not written."""
        self._busy_seen: dict[PodKey, datetime] = {}
        """When each worker was last seen holding a session."""
        self._started: set[PoolKey] = set()
        """Pools reconciled once since the operator started (leftovers swept, grants checked)."""
        self._took: dict[PoolKey, float] = {}
        """How long each pool's last reading of its sessions and workers took: the part of a
        reconciliation that holds the event loop (`schedule` spaces passes by it)."""

    # --- entry points (any context on the event loop) ---------------------------------------

    def schedule(self, namespace: str, pool: str) -> None:
        """Reconcile the pool soon; requests made meanwhile are one reconciliation. A pool
        reconciliation reads every session of its namespace, so requests wait in proportion to
        how long the last one took (POOL_PASS_SPACING)."""
        key = (namespace, pool)
        spacing = POOL_PASS_SPACING * self._took.get(key, 0.0)
        self.pools.add_within(key, max(POOL_BATCH_SECONDS, spacing))

    def grant_changed(self, namespace: str, pod: str) -> None:
        """The sessions bound to that worker may have changed: bring its Role up to date."""
        self.grants.add_within((namespace, pod), GRANT_BATCH_SECONDS)

    def worker_gone(self, namespace: str, pod: dict[str, Any]) -> None:
        """A worker pod is gone (its watch said DELETED): retire its identity, and let its
        pool make up for it."""
        key = (namespace, name_of(pod))
        self._pods.pop(key, None)
        self._deleted.pop(key, None)
        self._busy_seen.pop(key, None)
        self.grants.forget(key)
        pool = pool_of(pod)
        account = account_of(pod)
        if pool is None:
            return
        if _owned_by_pool_named(pod, pool) and _is_worker_account(pool, account):
            self.retirements.add((namespace, key[1], account))
        self.schedule(namespace, pool)

    def bindable_pods(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's worker pods a session may be bound to as far as this controller
        knows: each as watched or as our last write left it (a drain the watch has not shown
        yet), less those we deleted whose deletion the watch has not shown yet."""
        return [
            newest
            for pod in self.view.pool_pods()
            if pod["metadata"]["namespace"] == namespace
            and not self._gone(namespace, pod)
            and (newest := self._newest_pod(namespace, name_of(pod))) is not None
        ]

    async def close(self) -> None:
        for queue in (self.pools, self.grants, self.retirements):
            await queue.close()

    # --- one pool ---------------------------------------------------------------------------

    async def _reconcile(self, key: PoolKey) -> None:
        namespace, name = key
        body = self._pool_body(key)
        if body is None or body_is_being_deleted(body):
            # Its workers and their identities go with it (owner references).
            self._forget_pool(key)
            return
        try:
            pool = WorkerPool.model_validate(body)
        except ValidationError as exc:
            log.error("pool_unreadable", pool=name, namespace=namespace, error=str(exc))
            return
        now = self._now()
        pods = self._workers_of(pool)
        if key not in self._started:
            await self._after_restart(pool, pods)
            self._started.add(key)
        pods = [pod for pod in pods if not self._gone(namespace, pod)]
        for pod in pods:
            if pool_readings.is_finished(pod) and not body_is_being_deleted(pod):
                # Its sessions are failed worker_lost by their own reconciliation; the plan
                # below no longer counts it, and makes up for it.
                await self._delete_worker(namespace, pod, "finished")
        reading = time.monotonic()
        live = [pod for pod in pods if pool_readings.is_live(pod)]
        pools = [p for p in self.view.pools() if p["metadata"]["namespace"] == namespace]
        reserved = {session: b for (_, session), b in self._reserved_in(namespace).items()}
        readings = pool_readings.read_sessions(pools, self._sessions_in(namespace), reserved)
        seen_busy = self._note_busy(namespace, live, readings.taken, now)
        workers = pool_readings.scaling_workers(live, readings, seen_busy, now)
        queued = readings.queued.get(name, 0)
        plan = pool_scaling.plan(workers, queued, pool_scaling.PoolShape.of(pool.spec), now)
        self._took[key] = time.monotonic() - reading
        await self._carry_out(pool, plan, now)
        status = pool_readings.pool_status(pool, workers, plan.desired, queued, now)
        await self._write_status(key, body, status)
        delay = None
        if plan.recheck_at is not None:
            delay = max(0.0, (plan.recheck_at - now).total_seconds()) + RECHECK_MARGIN_SECONDS
        self.pools.wake(key, delay)

    async def _carry_out(
        self, pool: WorkerPool, plan: pool_scaling.ScalingPlan, now: datetime
    ) -> None:
        namespace, name = pool.metadata.namespace or "", pool.metadata.name or ""
        bound = log.bind(pool=name, namespace=namespace)
        for pod in plan.undrain:
            await self._patch_pod(namespace, pod, pool_objects.draining_patch(None))
            bound.info("pool_worker_taken_back", pod=pod)
        if plan.create:
            await self._create_workers(pool, plan.create)
        for pod in plan.drain:
            await self._patch_pod(namespace, pod, pool_objects.draining_patch(now))
            bound.info("pool_worker_draining", pod=pod)
        for pod in plan.delete:
            body = self._newest_pod(namespace, pod)
            if body is None:
                continue
            if self._busy_now(namespace, pod):
                # A session was bound to it since the plan was made: it stays, and the next
                # pass plans with it.
                bound.info("pool_worker_kept", pod=pod, reason="bound_meanwhile")
                continue
            await self._delete_worker(namespace, body, "scaled_down")

    def _busy_now(self, namespace: str, pod: str) -> bool:
        """Read again just before a delete: has a session been bound to it meanwhile?"""
        reserved = self._reserved_in(namespace).values()
        return bool(pool_readings.taken_slots(self._sessions_in(namespace), reserved).get(pod))

    async def _after_restart(self, pool: WorkerPool, pods: list[dict[str, Any]]) -> None:
        """The first pass over a pool since the operator started: delete the identities of
        workers whose pod never came or went while no operator watched (nothing else would),
        and check every worker's grant against its sessions (a binding may have been written
        just before a restart, its grant not)."""
        namespace, name = pool.metadata.namespace or "", pool.metadata.name or ""
        in_use = {account_of(pod) for pod in pods}
        listed = await self.kube.request(
            "GET",
            paths.SERVICE_ACCOUNT.collection(namespace),
            params={"labelSelector": contract.pool_selector(name)},
        )
        for account in listed.get("items") or []:
            meta = account.get("metadata") or {}
            owned = controls(WORKER_POOL.kind, pool.metadata.uid, meta)
            if owned and meta.get("name") not in in_use and not meta.get("deletionTimestamp"):
                await self._delete_identity(namespace, meta["name"])
                log.info("pool_worker_identity_swept", pool=name, account=meta["name"])
        for pod in pods:
            if pool_readings.is_live(pod):
                self.grant_changed(namespace, name_of(pod))

    # --- workers ----------------------------------------------------------------------------

    async def _create_workers(self, pool: WorkerPool, count: int) -> None:
        limit = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def one() -> None:
            async with limit:
                await self._create_worker(pool)

        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _create_worker(self, pool: WorkerPool) -> None:
        namespace, name = pool.metadata.namespace or "", pool.metadata.name or ""
        created = await self._create(pool_objects.worker_account(pool))
        account = name_of(created)
        try:
            role = await self._create(pool_objects.worker_role(pool, account))
            self._rules[(namespace, account)] = role.get("rules") or []
            await self._create(pool_objects.worker_role_binding(pool, account))
            pod = await self._create(pool_objects.worker_pod(pool, account, self.settings.worker))
        except Exception:
            # No pod runs as it: take the identity back rather than leave it behind.
            await self._delete_identity(namespace, account)
            raise
        self._pods[(namespace, name_of(pod))] = _Answer(pod, time.monotonic())
        log.info("pool_worker_created", pool=name, namespace=namespace, pod=name_of(pod),
                 account=account)  # fmt: skip

    async def _delete_worker(self, namespace: str, pod: dict[str, Any], reason: str) -> None:
        name = name_of(pod)
        await self.kube.delete("Pod", namespace, name)
        self._deleted[(namespace, name)] = time.monotonic()
        self._pods.pop((namespace, name), None)
        pool = pool_of(pod) or ""
        account = account_of(pod)
        if _is_worker_account(pool, account):
            self.retirements.add((namespace, name, account))
        log.info("pool_worker_deleted", pool=pool, namespace=namespace, pod=name, reason=reason)

    async def _retire(self, key: RetireKey) -> None:
        namespace, pod, account = key
        if self.view.pool_pod(namespace, pod) is not None:
            # Still terminating: it may still report for its sessions. Its DELETED event
            # calls this again; the timer is in case that event is never seen.
            self.retirements.wake(key, RETIRE_RECHECK_SECONDS)
            return
        await self._delete_identity(namespace, account)
        self.retirements.forget(key)

    async def _delete_identity(self, namespace: str, account: str) -> None:
        for kind in ("RoleBinding", "Role", "ServiceAccount"):
            await self.kube.delete(kind, namespace, account)
        self._rules.pop((namespace, account), None)

    async def _patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        answer = await self._merge_patch(self.kube.path("Pod", namespace, name), patch)
        if answer is not None:
            self._pods[(namespace, name)] = _Answer(answer, time.monotonic())

    # --- grants -----------------------------------------------------------------------------

    async def _write_grant(self, key: PodKey) -> None:
        namespace, name = key
        pod = self._newest_pod(namespace, name)
        if pod is None:
            return  # gone: its Role is retired with it
        pool_name, account = pool_of(pod) or "", account_of(pod)
        pool = self._pool_model((namespace, pool_name))
        if pool is None or not _is_worker_account(pool_name, account):
            return
        if not controls(WORKER_POOL.kind, pool.metadata.uid, pod["metadata"]):
            log.warning("pool_worker_not_ours", pool=pool_name, pod=name)
            return
        bound = self._sessions_on(namespace, name)
        granted = [pool_objects.GrantedSession.of(session) for session in bound]
        rules = pool_objects.grant_rules(account, granted)
        known = self._rules.get((namespace, account))
        if known is None:
            role = await self.kube.read("Role", namespace, account)
            if role is None:
                log.warning("worker_grant_missing", pool=pool_name, pod=name, account=account)
                made = await self._create(pool_objects.worker_role(pool, account, granted))
                self._rules[(namespace, account)] = made.get("rules") or []
                return
            if not controls(WORKER_POOL.kind, pool.metadata.uid, role.get("metadata") or {}):
                # Never rewrite a Role the pool does not own, whatever a pod claims.
                log.error("worker_grant_not_ours", pool=pool_name, pod=name, account=account)
                return
            known = self._rules[(namespace, account)] = role.get("rules") or []
        if known == rules:
            return
        path = self.kube.path("Role", namespace, account)
        answer = await self._merge_patch(path, {"rules": rules})
        if answer is None:
            self._rules.pop((namespace, account), None)
            return
        self._rules[(namespace, account)] = answer.get("rules") or []
        log.info("worker_grant_written", pool=pool_name, pod=name, sessions=len(granted))

    # --- status -----------------------------------------------------------------------------

    async def _write_status(
        self, key: PoolKey, body: dict[str, Any], status: WorkerPoolStatus
    ) -> None:
        wanted = status.to_k8s()
        try:
            current = WorkerPoolStatus.model_validate(body.get("status") or {}).to_k8s()
        except ValidationError:
            current = None
        if current == wanted:
            return
        path = WORKER_POOLS.item(key[0], key[1], "status")
        answer = await self._merge_patch(path, {"status": wanted})
        if answer is not None:
            self._pool_answers[key] = answer

    # --- what the watches show, with our own writes -------------------------------------------

    def _pool_body(self, key: PoolKey) -> dict[str, Any] | None:
        seen = next(
            (p for p in self.view.pools() if (p["metadata"]["namespace"], name_of(p)) == key),
            None,
        )
        mine = self._pool_answers.get(key)
        if seen is None or mine is None:
            return seen
        if _version(mine) > _version(seen):
            return mine
        del self._pool_answers[key]
        return seen

    def _pool_model(self, key: PoolKey) -> WorkerPool | None:
        body = self._pool_body(key)
        if body is None or body_is_being_deleted(body):
            return None
        try:
            return WorkerPool.model_validate(body)
        except ValidationError:
            return None

    def _workers_of(self, pool: WorkerPool) -> list[dict[str, Any]]:
        """The pool's worker pods (those it controls), each as watched or as our last write
        left it, whichever is newer, less those we deleted."""
        namespace, name = pool.metadata.namespace or "", pool.metadata.name or ""
        found: dict[PodKey, dict[str, Any]] = {}
        for pod in self.view.pool_pods():
            key = (pod["metadata"]["namespace"], name_of(pod))
            if key[0] == namespace and pool_of(pod) == name:
                found[key] = pod
        clock = time.monotonic()
        for key, answer in list(self._pods.items()):
            if key[0] != namespace or pool_of(answer.body) != name:
                continue
            seen = found.get(key)
            if (seen is not None and _version(seen) >= _version(answer.body)) or (
                seen is None and clock - answer.at > WATCH_LAG_SECONDS
            ):
                del self._pods[key]
            else:
                found[key] = answer.body
        return [
            pod
            for pod in found.values()
            if controls(WORKER_POOL.kind, pool.metadata.uid, pod["metadata"])
        ]

    def _gone(self, namespace: str, pod: dict[str, Any]) -> bool:
        """Deleted by us, though the watch does not show it yet."""
        key = (namespace, name_of(pod))
        deleted = self._deleted.get(key)
        if deleted is None:
            return False
        if time.monotonic() - deleted > WATCH_LAG_SECONDS:
            del self._deleted[key]
            return False
        return True

    def _newest_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        seen = self.view.pool_pod(namespace, name)
        answer = self._pods.get((namespace, name))
        if answer is None:
            return seen
        if seen is None or _version(answer.body) > _version(seen):
            return answer.body
        return seen

    def _scan_sessions_on(self, namespace: str, pod: str) -> list[Mapping[str, Any]]:
        return pool_readings.bound_sessions(pod, self._sessions_in(namespace))

    def _sessions_in(self, namespace: str) -> list[dict[str, Any]]:
        return [s for s in self._sessions() if s["metadata"]["namespace"] == namespace]

    def _reserved_in(self, namespace: str) -> dict[Key, Binding]:
        return {key: b for key, b in self._reserved().items() if key[0] == namespace}

    def _note_busy(
        self,
        namespace: str,
        pods: list[dict[str, Any]],
        taken: Mapping[str, Set[int]],
        now: datetime,
    ) -> dict[str, datetime]:
        """Remember which workers hold a session now; when each was last seen so."""
        seen: dict[str, datetime] = {}
        for pod in pods:
            key = (namespace, name_of(pod))
            if taken.get(key[1]):
                self._busy_seen[key] = now
            if key in self._busy_seen:
                seen[key[1]] = self._busy_seen[key]
        return seen

    def _forget_pool(self, key: PoolKey) -> None:
        self.pools.forget(key)
        self._pool_answers.pop(key, None)
        self._started.discard(key)
        self._took.pop(key, None)

    # --- calls -------------------------------------------------------------------------------

    async def _create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create (with generateName or a name) and return what the API server made."""
        path = self.kube.path(obj["kind"], obj["metadata"]["namespace"])
        return await self.kube.request("POST", path, json=obj)

    async def _merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        call = self.kube.client.request("PATCH", path, body=patch, content_type=MERGE_PATCH)
        return await absent_ok(call)


def _is_worker_account(pool: str, account: str) -> bool:
    """Only an account named as the pool's workers' are is ever granted to or deleted: a pod
    made by hand with the pool's labels cannot point the controller at another Role."""
    prefix = contract.pool_worker_account_generate_name(pool)
    return bool(pool) and account.startswith(prefix) and len(account) > len(prefix)


def _owned_by_pool_named(pod: dict[str, Any], pool: str) -> bool:
    """The pod's controller is a WorkerPool of that name (its uid may be gone with it)."""
    return any(
        owner.get("kind") == WORKER_POOL.kind
        and owner.get("name") == pool
        and owner.get("controller") is True
        for owner in pod["metadata"].get("ownerReferences") or []
    )


def _version(body: dict[str, Any]) -> int:
    """resourceVersions compare as integers on an etcd-backed API server (as in reconciler)."""
    try:
        return int(body["metadata"].get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


def _log_failure(key: tuple[str, ...], error: Exception, retry_in: float) -> None:
    log.error("pool_work_failed", key="/".join(key), error=repr(error), retry_in=retry_in)
