"""kopf adapters: watches feed in-memory indexes, every change asks the reconciler to look.

Nothing here decides anything; see `machine.py` for the rules and `reconciler.py` for the I/O.
kopf calls non-index handlers only after every index finished its initial listing, so after a
restart no session is judged before all sessions, pool workers and nodes are known.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from typing import Any, cast

import kopf
import structlog
from prometheus_client import start_http_server

from avatar_crds import contract
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.session import AvatarSession
from avatar_operator import metrics, pool_readings
from avatar_operator.kube import Kube
from avatar_operator.observe import Key, session_key
from avatar_operator.reconciler import Reconciler
from avatar_operator.settings import load_settings
from avatar_operator.watch_check import WatchCheck, kopf_watches
from avatar_operator.watched_sessions import WatchedSession, watched_session
from avatar_operator.webhooks import WebhookSender

EVENT_POSTERS = 8
"""Events posted at once: each takes a few milliseconds, so hundreds a second."""
WORKER_PODS = {contract.LABEL_MANAGED_BY: contract.MANAGED_BY, contract.LABEL_COMPONENT: "worker"}
POOL_WORKER_PODS: dict[str, Any] = {**WORKER_PODS, contract.LABEL_POOL: kopf.PRESENT}
log = structlog.get_logger("avatar_operator")


class KopfView:
    """The ClusterView over kopf's indexes (each index maps a key to a store of bodies)."""

    def __init__(self, indices: dict[str, Any]) -> None:
        self.indices = indices

    def _one(self, index: str, key: object) -> dict[str, Any] | None:
        store = self.indices[index]
        return next(iter(store[key]), None) if key in store else None

    def _all(self, index: str) -> Iterable[dict[str, Any]]:
        store = self.indices[index]
        return [body for key in list(store) for body in store[key]]

    def session(self, key: Key) -> dict[str, Any] | None:
        kept = self._one("session_index", key)
        return cast(WatchedSession, kept).whole() if kept is not None else None

    def sessions(self) -> Iterable[dict[str, Any]]:
        """Their summaries (`watched_sessions`)."""
        return self._all("session_index")

    def node(self, name: str) -> dict[str, Any] | None:
        return self._one("node_index", name)

    def tenant(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._one("tenant_index", (namespace, name))

    def pools(self) -> Iterable[dict[str, Any]]:
        return self._all("pool_index")

    def pool_pods(self) -> Iterable[dict[str, Any]]:
        return self._all("pool_pod_index")

    def pool_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._one("pool_pod_index", (namespace, name))

    def bound_to(self, namespace: str, pod: str) -> list[Key]:
        store = self.indices["bound_session_index"]
        return list(store[(namespace, pod)]) if (namespace, pod) in store else []


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf compares every watched object with the state it last handled, for `on.create` and
    `on.update` handlers; the operator has none (only indexes and `on.event`), and building that
    state deep-copied each event's body: about 5 % of the event loop while binding a burst.
    Every object's essence is the same empty one here, so no change is ever seen, or stored."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def post_kopf_event(session: AvatarSession, kind: str, reason: str, message: str) -> None:
    """The reconciler's EventPoster: kopf owns Event posting."""
    body = session.model_dump(mode="json", by_alias=True, include={"metadata"})
    body |= {"apiVersion": session.api_version, "kind": session.kind}
    # kopf needs only apiVersion, kind and metadata to reference the object.
    kopf.event(cast(kopf.Body, body), type=kind, reason=reason, message=message)


# --- indexes ---------------------------------------------------------------------------
# Async, though they await nothing: kopf runs a plain function in its thread pool, and the
# hop there and back for every watch event was about 7 % of the operator's CPU while binding
# a burst (bench/pool_binding.py); each takes microseconds, so the event loop runs them.


@kopf.index(GROUP, VERSION, "avatarsessions")
async def session_index(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Key, Any]:
    return {(namespace or "", name): watched_session(indexed_copy(body))}


@kopf.index(GROUP, VERSION, "avatarsessions")
async def bound_session_index(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Key, Key]:
    """The sessions holding a slot of each pool worker, by (namespace, pod), as keys: a
    worker's grant is written from its own sessions, not from a scan of them all (1,000
    workers x 10,000 sessions). Empty for the others, which drops what an earlier state put."""
    held = pool_readings.held_slot(body)
    return {(namespace or "", held.pod): (namespace or "", name)} if held is not None else {}


@kopf.index("", "v1", "pods", labels=POOL_WORKER_PODS)
async def pool_pod_index(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Key, Any]:
    return {(namespace or "", name): indexed_copy(body)}


@kopf.index(GROUP, VERSION, "workerpools")
async def pool_index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Key, Any]:
    return {(namespace or "", name): indexed_copy(body)}


@kopf.index("", "v1", "nodes")
async def node_index(body: kopf.Body, name: str, **_: Any) -> dict[str, Any]:
    return {name: indexed_copy(body)}


@kopf.index(GROUP, VERSION, "tenants")
async def tenant_index(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[Key, Any]:
    return {(namespace or "", name): indexed_copy(body)}


def indexed_copy(body: kopf.Body) -> dict[str, Any]:
    """A detached copy: kopf's body views must not be kept beyond the handler call. It leaves
    out `metadata.managedFields`, which nothing here reads and which grows with every writer
    of an object: with 10,000 sessions bound (bench/pool_binding.py) the operator's RSS was
    about 1,030 MiB with them and 775-840 MiB without."""
    fields = ("apiVersion", "kind", "metadata", "spec", "status")
    plain = {k: body[k] for k in fields if body.get(k) is not None}
    if "metadata" in plain:
        plain["metadata"] = {k: v for k, v in plain["metadata"].items() if k != "managedFields"}
    return plain


# --- lifecycle ---------------------------------------------------------------------------


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    config = load_settings()
    # Events and retries are ours; kopf only watches and indexes.
    settings.posting.level = 20  # INFO and above become Kubernetes Events
    # kopf posts each object's Events from a worker of its own, over a connection pool with
    # no limit: a burst of Events (those held while sessions were being bound) opened a TLS
    # connection per session, 726 at 3,000 sessions, each with 512 KiB of buffers: 180 MiB
    # of the operator's RSS, and a TLS handshake per Event for the API server. A few workers
    # that leave as soon as their object has nothing more to post keep a few connections.
    settings.posting.worker_limit = EVENT_POSTERS
    settings.posting.idle_timeout = 0.01
    settings.watching.server_timeout = 300
    # The watched namespace is named exactly: no need to scan (and to be allowed to list)
    # every namespace and CRD in the cluster, which costs about a minute at each start.
    settings.scanning.disabled = True
    settings.persistence.diffbase_storage = NoDiffBase()
    indices = {name: kwargs[name] for name in ("session_index", "node_index", "tenant_index",
                                              "pool_index", "pool_pod_index",
                                              "bound_session_index")}  # fmt: skip
    memo.reconciler = Reconciler(
        kube=Kube.connect(),
        view=KopfView(indices),
        settings=config,
        webhooks=WebhookSender(config.webhook_max_attempts, config.webhook_timeout_seconds),
        post_event=post_kopf_event,
    )
    reconciler: Reconciler = memo.reconciler
    metrics.SESSIONS.sessions = reconciler.view.sessions
    memo.watch_check = WatchCheck(
        reconciler.kube,
        indices,
        kopf_watches(reconciler.kube, config.namespace, WORKER_PODS),
        interval=config.watch_check_interval_seconds,
        deadline=config.watch_stale_seconds,
    )
    if config.metrics_port:
        start_http_server(config.metrics_port)
    log.info(
        "operator_started",
        namespace=config.namespace,
        objects_frozen=gc.get_freeze_count(),  # see __main__.tune_garbage_collector
    )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler = memo.reconciler
    memo.watch_check.stop()
    await reconciler.close()


# --- triggers ----------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, "avatarsessions")
async def session_changed(
    memo: kopf.Memo, namespace: str | None, name: str, type: str, **_: Any
) -> None:
    start_background(memo)
    reconciler: Reconciler = memo.reconciler
    if type == "DELETED":
        reconciler.poke_queued()
        return
    await reconciler.reconcile((namespace or "", name))


@kopf.on.event(GROUP, VERSION, "workerpools")
async def pool_changed(memo: kopf.Memo, namespace: str | None, name: str, **_: Any) -> None:
    """A pool's spec or status changed, or it came or went: which tiers are served may have
    changed too, so admission runs again."""
    start_background(memo)
    reconciler: Reconciler = memo.reconciler
    reconciler.pools.schedule(namespace or "", name)
    reconciler.poke_queued()


@kopf.on.event("", "v1", "pods", labels=POOL_WORKER_PODS)
async def pool_pod_changed(
    memo: kopf.Memo,
    body: kopf.Body,
    namespace: str | None,
    labels: kopf.Labels,
    type: str,
    **_: Any,
) -> None:
    """A pool worker started, became ready, finished or went: its pool plans again, its
    sessions look at it again, and a slot may have become free."""
    start_background(memo)
    reconciler: Reconciler = memo.reconciler
    namespace = namespace or ""
    _schedule_bound_sessions(reconciler, namespace, body["metadata"]["name"])
    if type == "DELETED":
        reconciler.pools.worker_gone(namespace, indexed_copy(body))
    else:
        reconciler.pools.schedule(namespace, labels[contract.LABEL_POOL])
    reconciler.poke_queued()


def _schedule_bound_sessions(reconciler: Reconciler, namespace: str, pod: str) -> None:
    for session in reconciler.sessions_on(namespace, pod):
        reconciler.schedule(session_key(session))


@kopf.on.event("", "v1", "nodes")
async def node_changed(memo: kopf.Memo, name: str, type: str, **_: Any) -> None:
    start_background(memo)
    reconciler: Reconciler = memo.reconciler
    if type == "DELETED":
        for pod in reconciler.view.pool_pods():
            if (pod.get("spec") or {}).get("nodeName") == name:
                namespace = pod["metadata"]["namespace"]
                _schedule_bound_sessions(reconciler, namespace, pod["metadata"]["name"])
    reconciler.poke_queued()


@kopf.on.event(GROUP, VERSION, "tenants")
async def tenant_changed(memo: kopf.Memo, **_: Any) -> None:
    memo.reconciler.poke_queued()


def start_background(memo: kopf.Memo) -> None:
    """The watch check, started by the first watch handler: kopf runs those only once every
    index is filled, and a listing taken before then would look missed."""
    memo.watch_check.start()


@kopf.on.probe(id="watches")
async def watches_follow(memo: kopf.Memo, **_: Any) -> str:
    """Fails the liveness probe (kopf answers 500) while a watch has stopped following the
    API server. PermanentError: kopf would retry any other error, and the probe hang.
    Async so that it reads the indexes on the event loop, not in kopf's thread pool."""
    check: WatchCheck | None = getattr(memo, "watch_check", None)
    problems = check.problems() if check is not None else []
    if problems:
        raise kopf.PermanentError("; ".join(problems))
    return "following"
