"""The pool controller on the real control plane, its workers on kwok GPU nodes.

First the real operator process: a pool warms its buffer of workers, each named by the API
server, owned by the pool and running as an identity of its own; `kubectl get wp` tells it; a
worker deleted by hand is replaced and its identity removed; a lower `maxWorkers` deletes idle
workers; after a restart the workers keep their identities and a leftover one is swept. Then
the controller in this process, driven as the operator drives it, with sessions bound to its
workers by hand (no session machine runs): busy workers are drained, never deleted, taken back
before new ones are made, and deleted once empty; and a burst of bindings onto one worker costs
one write of its grant.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client as k8s

from avatar_crds import contract
from avatar_crds.kinds import AVATAR_SESSION, WORKER_POOL
from avatar_crds.meta import API_VERSION, GROUP, VERSION
from avatar_crds.pool import WorkerPool
from avatar_crds.session import Binding
from avatar_operator.kube import Kube
from avatar_operator.observe import Key
from avatar_operator.pool_controller import WORKER_POOLS, PoolController
from avatar_operator.pool_objects import grant_rules, worker_account, worker_role
from avatar_operator.settings import Settings
from facecast_kube import MERGE_PATCH, paths
from testbed.controlplane import ControlPlane
from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.sessions import AVATAR
from testbed.wait import wait_for, wait_for_async

pytestmark = pytest.mark.controlplane

READY_TIMEOUT = 60.0


def pool_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": WORKER_POOL.kind,
        "metadata": {"name": name},
        "spec": {
            "qualities": ["mock"],
            "worker": {
                "image": "facecast/worker:test",
                # One GPU each (the default), and no toleration: a GPU pool's workers
                # tolerate their GPU nodes' taint by themselves.
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            },
            "slotsPerWorker": 1,
            "maxWorkers": 4,
            **spec,
        },
    }


class Pools:
    """The admin's view of pools and their workers, through the kubernetes client."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str) -> None:
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.rbac = k8s.RbacAuthorizationV1Api(api_client)
        self.namespace = namespace

    def create(self, **spec: Any) -> dict[str, Any]:
        name = f"lite-{uuid.uuid4().hex[:6]}"
        made = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, WORKER_POOL.plural, pool_body(name, **spec)
        )
        return cast(dict[str, Any], made)

    def get(self, name: str) -> dict[str, Any]:
        body = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, WORKER_POOL.plural, name
        )
        return cast(dict[str, Any], body)

    def patch_spec(self, name: str, **spec: Any) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, WORKER_POOL.plural, name, {"spec": spec}
        )

    def workers(self, pool: str) -> list[k8s.V1Pod]:
        """The pool's pods that are not going away."""
        listed = self.core.list_namespaced_pod(
            self.namespace, label_selector=contract.pool_selector(pool)
        )
        return [p for p in listed.items if p.metadata and not p.metadata.deletion_timestamp]

    def wait_ready(self, pool: str, count: int) -> list[k8s.V1Pod]:
        def ready() -> list[k8s.V1Pod] | None:
            pods = self.workers(pool)
            status = self.get(pool).get("status") or {}
            if (
                len(pods) == count
                and all(_ready(p) for p in pods)
                and status.get("readyWorkers") == count
            ):
                return pods
            return None

        return wait_for(ready, timeout=READY_TIMEOUT, description=f"{count} ready workers")

    def identity_exists(self, account: str) -> bool:
        for read in (
            self.core.read_namespaced_service_account,
            self.rbac.read_namespaced_role,
            self.rbac.read_namespaced_role_binding,
        ):
            try:
                read(account, self.namespace)
            except k8s.ApiException as error:
                if error.status == 404:
                    return False
                raise
        return True


def _ready(pod: k8s.V1Pod) -> bool:
    conditions = (pod.status and pod.status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _account(pod: k8s.V1Pod) -> str:
    assert pod.spec is not None
    assert pod.spec.service_account_name is not None
    return pod.spec.service_account_name


def _name(pod: k8s.V1Pod) -> str:
    assert pod.metadata is not None
    assert pod.metadata.name is not None
    return pod.metadata.name


@pytest.fixture
def pools(crds: None, api_client: k8s.ApiClient, namespace: str) -> Pools:
    return Pools(api_client, namespace)


# --- the operator process ----------------------------------------------------------------------


def test_a_pool_warms_its_buffer_each_worker_owned_and_with_its_own_identity(
    operator: OperatorProcess, pools: Pools, gpu_nodes: GpuNodeFactory,
    control_plane: ControlPlane, testenv_bin: Path,
) -> None:  # fmt: skip
    gpu_nodes(3)
    pool = pools.create(buffer=2)
    name, uid = pool["metadata"]["name"], pool["metadata"]["uid"]
    workers = pools.wait_ready(name, 2)

    accounts = {_account(p) for p in workers}
    assert len(accounts) == 2  # one identity each
    for pod in workers:
        meta = pod.metadata
        assert meta is not None
        assert meta.generate_name == f"{name}-"
        assert _name(pod).startswith(f"{name}-")
        (owner,) = meta.owner_references or []
        assert (owner.kind, owner.name, owner.uid, owner.controller) == (
            "WorkerPool", name, uid, True
        )  # fmt: skip
        assert (meta.annotations or {})[contract.ANNOTATION_SLOTS] == "1"
        assert contract.LABEL_SESSION not in (meta.labels or {})
        account = _account(pod)
        assert account.startswith(f"{name}-worker-")
        role = pools.rbac.read_namespaced_role(account, pools.namespace)
        binding = pools.rbac.read_namespaced_role_binding(account, pools.namespace)
        pools.core.read_namespaced_service_account(account, pools.namespace)
        assert role.metadata is not None
        assert (role.metadata.owner_references or [])[0].uid == uid
        rules = [pools.rbac.api_client.sanitize_for_serialization(r) for r in role.rules or []]
        assert rules == grant_rules(account, [])  # no session yet: only its own grant
        assert binding.role_ref.name == account
        assert [(s.kind, s.name) for s in binding.subjects or []] == [("ServiceAccount", account)]
        env = {e.name: e.value for e in pod.spec.containers[0].env or []} if pod.spec else {}
        assert env[contract.ENV_WORKER_GRANT] == account
        assert env[contract.ENV_POOL_NAME] == name

    status = pools.get(name)["status"]
    assert status["desiredWorkers"] == 2
    assert status["freeSlots"] == 2
    assert status["busySlots"] == 0
    assert status["observedGeneration"] == pool["metadata"]["generation"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["ScalingLimited"]["status"] == "False"

    kubectl = [str(testenv_bin / "kubectl"), f"--kubeconfig={control_plane.kubeconfig}",
               "-n", pools.namespace, "get", "wp", name]  # fmt: skip
    out = subprocess.run(kubectl, check=True, capture_output=True, text=True).stdout
    header, row = (line.split() for line in out.splitlines())
    assert header[:7] == ["NAME", "TIERS", "READY", "DESIRED", "FREE", "SLOTS", "BUSY"]
    assert row[:6] == [name, '["mock"]', "2", "2", "2", "0"]


def test_a_worker_deleted_by_hand_is_replaced_and_its_identity_removed(
    operator: OperatorProcess, pools: Pools, gpu_nodes: GpuNodeFactory
) -> None:
    gpu_nodes(2)
    name = pools.create(buffer=1)["metadata"]["name"]
    (first,) = pools.wait_ready(name, 1)
    pools.core.delete_namespaced_pod(_name(first), pools.namespace, grace_period_seconds=0)

    def replaced() -> k8s.V1Pod | None:
        pods = [p for p in pools.workers(name) if _name(p) != _name(first)]
        return pods[0] if len(pods) == 1 and _ready(pods[0]) else None

    second = wait_for(replaced, timeout=READY_TIMEOUT, description="a new worker, ready")
    assert _account(second) != _account(first)
    wait_for(
        lambda: not pools.identity_exists(_account(first)),
        timeout=30,
        description="the deleted worker's identity gone",
    )
    assert pools.identity_exists(_account(second))


def test_a_lower_max_workers_deletes_idle_workers_with_their_identities(
    operator: OperatorProcess, pools: Pools, gpu_nodes: GpuNodeFactory
) -> None:
    gpu_nodes(3)
    name = pools.create(buffer=3, maxWorkers=3)["metadata"]["name"]
    before = pools.wait_ready(name, 3)
    pools.patch_spec(name, maxWorkers=1)
    (kept,) = pools.wait_ready(name, 1)
    gone = [_account(p) for p in before if _name(p) != _name(kept)]
    assert len(gone) == 2
    wait_for(
        lambda: not any(pools.identity_exists(account) for account in gone),
        timeout=30,
        description="the deleted workers' identities gone",
    )
    assert pools.identity_exists(_account(kept))
    status = pools.get(name)["status"]
    assert (status["desiredWorkers"], status["readyWorkers"], status["drainingWorkers"]) == (
        1,
        1,
        0,
    )


def test_after_a_restart_workers_keep_their_identities_and_leftovers_are_swept(
    operator: OperatorProcess, pools: Pools, gpu_nodes: GpuNodeFactory
) -> None:
    gpu_nodes(2)
    pool = pools.create(buffer=2)
    name = pool["metadata"]["name"]
    before = {_name(p): _account(p) for p in pools.wait_ready(name, 2)}
    operator.stop()
    # As if the operator had stopped between a worker's identity and its pod.
    parsed = WorkerPool.model_validate(pool)
    made = pools.core.create_namespaced_service_account(
        pools.namespace, k8s.V1ServiceAccount.model_validate(worker_account(parsed))
    )
    assert made.metadata is not None
    leftover = made.metadata.name
    assert leftover is not None
    role = k8s.V1Role.model_validate(worker_role(parsed, leftover))
    pools.rbac.create_namespaced_role(pools.namespace, role)
    operator.start()

    def swept() -> bool:
        try:
            pools.core.read_namespaced_service_account(leftover, pools.namespace)
        except k8s.ApiException as error:
            return bool(error.status == 404)
        return False

    wait_for(swept, timeout=30, description="the leftover identity swept")
    assert not pools.identity_exists(leftover)
    after = {_name(p): _account(p) for p in pools.wait_ready(name, 2)}
    assert after == before  # the same workers, each with its own identity still
    assert all(pools.identity_exists(account) for account in after.values())


# --- the controller in this process ---------------------------------------------------------------


class ListedView:
    """Stand-in for the operator's kopf indexes (they need kopf's whole operator around them):
    the same objects, LISTed from the real API server by `refresh`."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self._pools: list[dict[str, Any]] = []
        self._pods: list[dict[str, Any]] = []
        self._sessions: list[dict[str, Any]] = []

    async def refresh(self) -> None:
        sessions = paths.custom(GROUP, VERSION, AVATAR_SESSION.plural)
        self._pools = await self._list(WORKER_POOLS.collection(self.namespace))
        self._pods = await self._list(
            paths.POD.collection(self.namespace), labelSelector=contract.LABEL_POOL
        )
        self._sessions = await self._list(sessions.collection(self.namespace))

    async def _list(self, path: str, **params: str) -> list[dict[str, Any]]:
        listed = await self.kube.request("GET", path, params=params)
        return list(listed.get("items") or [])

    def pools(self) -> list[dict[str, Any]]:
        return self._pools

    def pool_pods(self) -> list[dict[str, Any]]:
        return self._pods

    def pool_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next((p for p in self._pods if p["metadata"]["name"] == name), None)

    def sessions(self) -> list[dict[str, Any]]:
        return self._sessions

    def workers(self, pool: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self._pods
            if p["metadata"]["labels"].get(contract.LABEL_POOL) == pool
            and not p["metadata"].get("deletionTimestamp")
        ]

    def ready_workers(self, pool: str, count: int) -> list[dict[str, Any]] | None:
        found = self.workers(pool)
        ready = [
            p
            for p in found
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (p.get("status") or {}).get("conditions") or []
            )
        ]
        return found if len(found) == len(ready) == count else None


class InProcess:
    def __init__(self, kube: Kube, view: ListedView, controller: PoolController) -> None:
        self.kube = kube
        self.view = view
        self.controller = controller
        self.reserved: dict[Key, Binding] = {}

    async def session(self) -> str:
        name = f"sess-{uuid.uuid4().hex[:26]}"
        body = {
            "apiVersion": API_VERSION,
            "kind": AVATAR_SESSION.kind,
            "metadata": {"name": name},
            "spec": {
                "tenant": "acme",
                "avatarRef": AVATAR,
                "quality": "mock",
                "transport": {
                    "type": "livekit",
                    "livekit": {"url": "ws://127.0.0.1:7880", "roomName": name},
                },
                "tokenSecretRef": {"name": contract.token_secret_name(name)},
            },
        }
        path = paths.custom(GROUP, VERSION, AVATAR_SESSION.plural).collection(self.view.namespace)
        await self.kube.request("POST", path, json=body)
        return name

    async def set_status(self, session: str, status: dict[str, Any]) -> None:
        """As the session's reconciliation writes it (none runs here)."""
        resource = paths.custom(GROUP, VERSION, AVATAR_SESSION.plural)
        path = resource.item(self.view.namespace, session, "status")
        await self.kube.client.request(
            "PATCH", path, body={"status": status}, content_type=MERGE_PATCH
        )

    async def bind(self, session: str, pool: str, pod: str, slot: int) -> None:
        binding = {"pool": pool, "pod": pod, "slot": slot}
        await self.set_status(session, {"phase": "running", "binding": binding, "podName": pod})

    async def wait(
        self, predicate: Callable[[], Any], description: str, within: float = READY_TIMEOUT
    ) -> Any:
        return await wait_for_async(predicate, within=within, description=description)


@asynccontextmanager
async def in_process(kubeconfig: Path, namespace: str, pool: str) -> AsyncIterator[InProcess]:
    """The controller, and what the operator's watch handlers do for it: every change seen
    asks the pool to reconcile (here, each refresh of the listings), and a worker pod gone
    from the listing is reported gone."""
    kube = Kube.connect(str(kubeconfig))
    view = ListedView(kube, namespace)
    await view.refresh()
    holder: list[InProcess] = []
    controller = PoolController(
        kube,
        view,
        Settings(namespace=namespace),
        sessions=view.sessions,
        reserved=lambda: holder[0].reserved,
    )
    harness = InProcess(kube, view, controller)
    holder.append(harness)

    async def follow() -> None:
        seen: dict[str, dict[str, Any]] = {}
        while True:
            await view.refresh()
            listed = {p["metadata"]["name"]: p for p in view.pool_pods()}
            for name in seen.keys() - listed.keys():  # as the pod watch's DELETED event
                controller.worker_gone(namespace, seen[name])
            seen = listed
            controller.schedule(namespace, pool)
            await asyncio.sleep(0.1)  # a period, as a watch's stream of events

    task = asyncio.get_running_loop().create_task(follow())
    try:
        yield harness
    finally:
        task.cancel()
        await controller.close()
        await kube.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_busy_workers_are_drained_taken_back_and_deleted_only_once_empty(
    pools: Pools, kubeconfig: Path, gpu_nodes: GpuNodeFactory
) -> None:
    gpu_nodes(3)
    name = pools.create(buffer=2, maxWorkers=3)["metadata"]["name"]
    async with in_process(kubeconfig, pools.namespace, name) as run:
        two = await run.wait(lambda: run.view.ready_workers(name, 2), "2 ready workers")
        first, second = sorted(p["metadata"]["name"] for p in two)
        s1, s2 = await run.session(), await run.session()
        await run.bind(s1, name, first, 0)
        await run.bind(s2, name, second, 0)
        # 2 held + a buffer of 2 wants 4 slots; maxWorkers allows 3.
        three = await run.wait(lambda: run.view.ready_workers(name, 3), "a third worker")
        (idle,) = [p for p in three if p["metadata"]["name"] not in (first, second)]

        pools.patch_spec(name, maxWorkers=1)

        def draining() -> list[str]:
            return [
                p["metadata"]["name"]
                for p in run.view.workers(name)
                if contract.ANNOTATION_DRAINING_SINCE in (p["metadata"].get("annotations") or {})
            ]

        def shed() -> bool:
            live = {p["metadata"]["name"] for p in run.view.workers(name)}
            return live == {first, second} and len(draining()) == 1

        await run.wait(shed, "the idle worker deleted and one busy worker draining")
        (drained,) = draining()
        # The status is written after the drain's annotation, in the same pass: wait for it.
        await run.wait(
            lambda: pools.get(name)["status"].get("drainingWorkers") == 1,
            "the pool's status counting the draining worker",
        )

        # Growing again: the draining worker is taken back, nothing new is made.
        pools.patch_spec(name, maxWorkers=2)
        await run.wait(lambda: not draining(), "the draining worker taken back")
        assert {p["metadata"]["name"] for p in run.view.workers(name)} == {first, second}

        pools.patch_spec(name, maxWorkers=1)
        await run.wait(lambda: len(draining()) == 1, "a busy worker draining again")
        (drained,) = draining()
        # The pass that drained it wrote the status after it: it did not delete it.
        await run.wait(lambda: pools.get(name)["status"]["drainingWorkers"] == 1, "the status told")
        assert len(run.view.workers(name)) == 2
        session = s1 if drained == first else s2
        await run.set_status(session, {"phase": "ended", "reason": "user_ended"})
        await run.wait(
            lambda: drained not in {p["metadata"]["name"] for p in run.view.workers(name)},
            "the drained worker deleted once empty",
        )
        gone = [idle["spec"]["serviceAccountName"]]
        gone += [p["spec"]["serviceAccountName"] for p in two if p["metadata"]["name"] == drained]
        await run.wait(
            lambda: not any(pools.identity_exists(account) for account in gone),
            "the deleted workers' identities gone",
        )


@pytest.mark.anyio
async def test_a_burst_of_bindings_onto_one_worker_costs_one_grant_write(
    pools: Pools, kubeconfig: Path, gpu_nodes: GpuNodeFactory
) -> None:
    gpu_nodes(1)
    name = pools.create(buffer=1, maxWorkers=1, slotsPerWorker=8)["metadata"]["name"]
    async with in_process(kubeconfig, pools.namespace, name) as run:
        (worker,) = await run.wait(lambda: run.view.ready_workers(name, 1), "a ready worker")
        pod, account = worker["metadata"]["name"], worker["spec"]["serviceAccountName"]
        sessions = [await run.session() for _ in range(8)]
        writes: list[dict[str, Any]] = []
        write = run.controller._merge_patch  # the real call, counted

        async def counted(path: str, patch: dict[str, Any]) -> dict[str, Any] | None:
            if path.endswith(f"/roles/{account}"):
                writes.append(patch)
            return await write(path, patch)

        run.controller._merge_patch = counted  # type: ignore[method-assign]

        async def bind(session: str, slot: int) -> None:
            # As the reconciler: the binding's status write, then the grant.
            await run.bind(session, name, pod, slot)
            await run.view.refresh()
            run.controller.grant_changed(pools.namespace, pod)

        await asyncio.gather(*(bind(s, slot) for slot, s in enumerate(sessions)))

        def granted() -> bool:
            role = pools.rbac.read_namespaced_role(account, pools.namespace)
            names = {n for rule in role.rules or [] for n in rule.resource_names or []}
            return set(sessions) <= names

        await run.wait(granted, "the Role naming all 8 sessions", within=30)
        assert 1 <= len(writes) <= 2, f"{len(writes)} Role writes for a burst of 8 bindings"

        # Asked again with nothing changed: no write, even for a controller that has just
        # started and knows nothing of the Role yet.
        await run.controller.grants.run((pools.namespace, pod))
        fresh = PoolController(run.kube, run.view, Settings(), sessions=run.view.sessions)
        fresh._merge_patch = counted  # type: ignore[method-assign]
        count = len(writes)
        await fresh.grants.run((pools.namespace, pod))
        await fresh.close()
        assert len(writes) == count
