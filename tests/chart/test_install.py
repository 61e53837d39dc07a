"""`helm install` into the real control plane, then the installed Deployments' containers run as
local processes (no kubelet runs images here) with their exact command, arguments and
environment, each authenticated with a token of its own ServiceAccount. A session goes through
the whole path of the NOTES: tenant and key with the admin CLI, the session over REST, the
operator binding it to a slot of the chart's warm pool (its worker a pod on a kwok GPU node),
the worker's reports with its own account, the end."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from avatar_crds import contract
from avatar_crds.ids import AVATAR_PREFIX, SESSION_PREFIX, new_public_id, to_resource_name
from avatar_crds.kinds import AVATAR, WORKER_POOL
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.pool import WorkerPool
from avatar_operator.kube import Kube, KubeError
from testbed.controlplane import ControlPlane
from testbed.kwok import GpuNodeFactory
from testbed.objects import avatar_manifest
from testbed.probes import http_ok
from testbed.process import LOOPBACK, ManagedProcess, free_port, wait_until_serving
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.chart.conftest import Release
from tests.chart.dockerfiles import DOCKERFILES
from tests.chart.local_pods import image_env, pod_command, start_container
from tests.chart.rendering import API, FULLNAME, OPERATOR, Manifest, container, literal_env
from tests.integration.worker_standin import WorkerStandIn

pytestmark = pytest.mark.controlplane

# kopf lists namespaces and CRDs cluster-wide at start unless its `scanning.disabled` setting
# is on; refused, it retries with backoff (about a minute), then falls back to the one
# namespace it was given. The operator's ServiceAccount deliberately may not do either.
EXPECTED_REFUSALS = (
    'cannot list resource \\"namespaces\\"',
    'cannot watch resource \\"namespaces\\"',
    'cannot list resource \\"customresourcedefinitions\\"',
    'cannot watch resource \\"customresourcedefinitions\\"',
    "Not enough permissions to list namespaces",
    "Not enough permissions to watch for namespaces",
    "Not enough permissions to watch for resources",
)
# ... which is why the operator may take that long to start serving sessions.
OPERATOR_START_TIMEOUT = 120.0


def installed_deployment(api_client: k8s.ApiClient, namespace: str, name: str) -> Manifest:
    """The Deployment as the API server stores it (what `helm install` really created)."""
    body = k8s.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    result: Manifest = api_client.sanitize_for_serialization(body)
    return result


def test_helm_install_creates_every_object_and_keeps_pods_off_gpu_nodes(
    release: Release, api_client: k8s.ApiClient, gpu_nodes: GpuNodeFactory
) -> None:
    # tenantAdmin is off by default: the NOTES run the admin CLI outside the API pods.
    admin = f"python -m api_shim.admin --namespace {release.namespace} create-tenant"
    assert admin in release.install_output
    assert f"kubectl -n {release.namespace} exec deploy/{API}" not in release.install_output
    kinds = sorted({doc["kind"] for doc in release.manifests})
    assert kinds == sorted(
        ["ClusterRole", "ClusterRoleBinding", "Deployment", "KopfPeering", "NetworkPolicy",
         "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount",
         "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "WorkerPool"]
    )  # fmt: skip
    custom = k8s.CustomObjectsApi(api_client)
    peering: Any = custom.get_namespaced_custom_object(
        "kopf.dev", "v1", release.namespace, "kopfpeerings", FULLNAME
    )
    assert peering["metadata"]["name"] == FULLNAME
    # The warm pools, one per served tier, stored as rendered (the CRD's CEL rules passed).
    stored: Any = custom.list_namespaced_custom_object(
        GROUP, VERSION, release.namespace, WORKER_POOL.plural
    )
    pools = {p["metadata"]["name"]: WorkerPool.model_validate(p) for p in stored["items"]}
    rendered = {
        doc["metadata"]["name"]: WorkerPool.model_validate(doc)
        for doc in release.manifests
        if doc["kind"] == "WorkerPool"
    }
    assert set(pools) == set(rendered) == {f"{FULLNAME}-mock", f"{FULLNAME}-lite"}
    for name, pool in pools.items():
        assert pool.spec == rendered[name].spec, name

    # No kubelet runs them, but the ReplicaSets do create the pods: the namespace enforces
    # restricted Pod Security, so their existence proves they pass it. The scheduler then
    # refuses the only node, a GPU node, for its taint.
    node = gpu_nodes(1)[0]
    core = k8s.CoreV1Api(api_client)
    wanted = {OPERATOR: 1, API: 2}

    def unschedulable_pods() -> dict[str, int] | None:
        counts: dict[str, int] = {}
        for pod in plain(api_client, core.list_namespaced_pod(release.namespace))["items"]:
            conditions = {c["type"]: c for c in pod["status"].get("conditions", [])}
            scheduled = conditions.get("PodScheduled")
            if scheduled is None or scheduled.get("reason") != "Unschedulable":
                return None
            assert "untolerated taint" in scheduled.get("message", ""), scheduled
            assert "nodeName" not in pod["spec"]
            owner = pod["metadata"]["generateName"].rsplit("-", 2)[0]
            counts[owner] = counts.get(owner, 0) + 1
        return counts if counts == wanted else None

    wait_for(unschedulable_pods, timeout=60, description="chart pods refused by the GPU node")
    assert plain(api_client, core.read_node(node))["spec"]["taints"]


def operator_client_identity(kubeconfig: Path) -> str:
    """Who the API server takes the operator's own REST client (avatar_operator.kube.Kube,
    which does everything but kopf's watches) to be, given the ServiceAccount's kubeconfig."""

    async def ask() -> str:
        kube = Kube.connect(str(kubeconfig))
        try:
            review = await kube.request(
                "POST",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            )
        except KubeError as error:
            if error.status in (401, 403):
                return "system:anonymous"
            raise
        finally:
            await kube.close()
        assert review is not None
        username: str = review["status"]["userInfo"]["username"]
        return username

    return asyncio.run(ask())


@dataclass
class Stack:
    """The operator and the API, running as local processes."""

    operator: ManagedProcess
    api: ManagedProcess
    api_url: str
    api_env: dict[str, str]
    api_kubeconfig: Path


@pytest.fixture
def stack(
    release: Release,
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    namespace = release.namespace
    operator_kubeconfig = control_plane.kubeconfig_for_service_account(namespace, OPERATOR)
    identity = operator_client_identity(operator_kubeconfig)
    # The operator's own REST client (not only kopf's) must present the account's token.
    assert identity == f"system:serviceaccount:{namespace}:{OPERATOR}"
    processes: list[ManagedProcess] = []
    try:
        # The operator: the Deployment's command and args, with only the liveness endpoint's
        # bind address changed (the pod's 0.0.0.0:8080 is not ours to take here).
        deployment = installed_deployment(api_client, namespace, OPERATOR)
        health = free_port()
        args = [
            f"--liveness=http://{LOOPBACK}:{health}/healthz" if a.startswith("--liveness=") else a
            for a in pod_command(deployment)
        ]
        assert args != pod_command(deployment)
        operator = start_container(
            "operator",
            deployment,
            DOCKERFILES["operator"],
            operator_kubeconfig,
            _workdir(tmp_path, "operator"),
            args=args,
        )
        processes.append(operator)
        wait_until_serving(
            operator, lambda: http_ok(f"http://{LOOPBACK}:{health}/healthz"), timeout=60
        )

        # The API: its command and env, with only the listening address changed.
        api_deployment = installed_deployment(api_client, namespace, API)
        port = free_port()
        api_kubeconfig = control_plane.kubeconfig_for_service_account(namespace, API)
        api = start_container(
            "api",
            api_deployment,
            DOCKERFILES["api"],
            api_kubeconfig,
            _workdir(tmp_path, "api"),
            env_overrides={"FACECAST_HOST": LOOPBACK, "FACECAST_PORT": str(port)},
        )
        processes.append(api)
        url = f"http://{LOOPBACK}:{port}"
        # /readyz lists Tenants with the API's own ServiceAccount.
        wait_until_serving(api, lambda: http_ok(f"{url}/readyz"), timeout=60)
        api_env = {
            **image_env(DOCKERFILES["api"]),
            **literal_env(container(api_deployment)),
            "KUBECONFIG": str(api_kubeconfig),
        }
        yield Stack(operator, api, url, api_env, api_kubeconfig)
    finally:
        for process in reversed(processes):
            process.stop(timeout=15)
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for process in processes:
                print(f"----- {process.name} log (tail)\n{process.log_tail(80)}")


def _workdir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def admin_cli(stack: Stack, kubeconfig: Path, *args: str) -> str:
    """`python -m api_shim.admin ...` from the NOTES, in the API container's environment.
    With the chart's default (api.rbac.tenantAdmin off) the API's own ServiceAccount may not
    write Tenants, so the NOTES have the installer run it with their own kubeconfig."""
    done = subprocess.run(
        ["python", "-m", "api_shim.admin", *args],
        env={**stack.api_env, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"admin {args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def create_avatar(api_client: k8s.ApiClient, namespace: str, tenant: str) -> str:
    """What POST /v1/avatars will store; written directly until avatars land in the API."""
    public_id = new_public_id(AVATAR_PREFIX)
    body = avatar_manifest(public_id, tenant)
    k8s.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, AVATAR.plural, body
    )
    return public_id


def client_for(kubeconfig: Path) -> k8s.ApiClient:
    api: k8s.ApiClient = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    return api


def forbidden(call: Any, *args: Any, **kwargs: Any) -> bool:
    try:
        call(*args, **kwargs)
    except k8s.ApiException as error:
        return bool(error.status == 403)
    return False


def plain(api_client: k8s.ApiClient, obj: object) -> dict[str, Any]:
    """A client model as the JSON the API server sent (camelCase keys, no None fields)."""
    result: dict[str, Any] = api_client.sanitize_for_serialization(obj)
    return result


# The operator has no rights on pods outside its namespace (test_rbac.py): it admits and places
# sessions on its pools' workers all the same, and is refused nothing (the end of the test).
def test_the_installed_operator_and_api_take_a_session_through_its_life(
    stack: Stack,
    release: Release,
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    gpu_nodes: GpuNodeFactory,
) -> None:
    namespace = release.namespace
    custom = k8s.CustomObjectsApi(api_client)

    gpu_nodes(1)
    # NOTES step 1: a tenant and a key, with the admin CLI and the installer's kubeconfig (the
    # API's own account cannot: tenantAdmin is off by default).
    installer = control_plane.kubeconfig
    with pytest.raises(AssertionError, match=r"(?i)forbidden"):
        admin_cli(stack, stack.api_kubeconfig, "create-tenant", "acme", "--max-concurrent", "1")
    admin_cli(
        stack, installer, "create-tenant", "acme", "--max-concurrent", "5",
        "--qualities", "mock,lite",
    )  # fmt: skip
    key = admin_cli(stack, installer, "create-key", "acme").strip()
    assert key.startswith("fc_")
    avatar_id = create_avatar(api_client, namespace, "acme")

    # kopf peering works with the chart's CRD, object and RBAC: the keep-alive is written
    # (once kopf has started, see OPERATOR_START_TIMEOUT).
    def peering_keepalive() -> dict[str, Any] | None:
        body: Any = custom.get_namespaced_custom_object(
            "kopf.dev", "v1", namespace, "kopfpeerings", FULLNAME
        )
        status: dict[str, Any] | None = body.get("status")
        return status

    wait_for(
        peering_keepalive,
        timeout=OPERATOR_START_TIMEOUT,
        description="the operator's peering keep-alive",
    )

    # The chart's mock pool has a worker ready before the first session, so the session below
    # must start without queueing (a session posted sooner would queue, correctly, and grow it).
    def mock_pool_free_slots() -> int | None:
        body: Any = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, WORKER_POOL.plural, f"{FULLNAME}-mock"
        )
        return WorkerPool.model_validate(body).status.free_slots or None

    wait_for(mock_pool_free_slots, timeout=60, description="a free slot in the warm mock pool")

    # NOTES step 3: the first session over REST.
    headers = {"x-api-key": key}
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as http:
        created = http.post(
            "/v1/sessions",
            headers={"Idempotency-Key": str(uuid.uuid4())},
            json={
                "avatar_id": avatar_id,
                "quality": "mock",
                "transport": {
                    "type": "livekit",
                    "url": "wss://rtc.example.com",
                    "room_name": "demo",
                    "worker_token": "worker-token-value",
                },
            },
        )
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        name = to_resource_name(session_id, SESSION_PREFIX)
        sessions = Sessions(api_client, namespace)
        core = k8s.CoreV1Api(api_client)

        # The chart's warm mock pool takes it: a slot of a worker already up, nothing of its
        # own (no pod, ServiceAccount or Role).
        starting = sessions.wait_phase(name, "starting", timeout=60).status
        binding = starting.binding
        assert binding is not None
        assert binding.pool == f"{FULLNAME}-mock"
        assert starting.pod_name == binding.pod
        pod = plain(api_client, core.read_namespaced_pod(binding.pod, namespace))
        assert pod["spec"]["nodeName"].startswith("kwok-gpu-")
        labels = pod["metadata"]["labels"]
        assert contract.pool_worker_labels(binding.pool).items() <= labels.items()
        account = pod["spec"]["serviceAccountName"]
        assert account.startswith(contract.pool_worker_account_generate_name(binding.pool))
        # The testbed's view of the session's pod is that worker; no pod is the session's own.
        bound = sessions.pod(name)
        assert bound is not None
        assert plain(api_client, bound)["metadata"]["uid"] == pod["metadata"]["uid"]
        own = core.list_namespaced_pod(namespace, label_selector=f"{contract.LABEL_SESSION}={name}")
        assert not own.items
        accounts = plain(api_client, core.list_namespaced_service_account(namespace))["items"]
        assert f"{name}-worker" not in {a["metadata"]["name"] for a in accounts}
        # The token Secret was created by the API's account; the worker reads it by name.
        token_secret = contract.token_secret_name(name)
        secret = plain(api_client, core.read_namespaced_secret(token_secret, namespace))
        assert secret["metadata"]["ownerReferences"][0]["name"] == name

        # The worker's part, played with the pool worker's own account, as far as its grant
        # (the Role the operator rewrites) lets it.
        worker_kubeconfig = control_plane.kubeconfig_for_service_account(namespace, account)
        with client_for(worker_kubeconfig) as worker_api:
            worker_core = k8s.CoreV1Api(worker_api)
            wait_for(
                lambda: not forbidden(worker_core.read_namespaced_secret, token_secret, namespace),
                timeout=30,
                description="the worker's grant lists the session",
            )
            worker = WorkerStandIn(worker_api, namespace, name)
            worker.first_frame()
            sessions.wait_phase(name, "running", timeout=30)
            assert http.get(f"/v1/sessions/{session_id}").json()["status"] == "running"
            # It may touch only its own session's status, no other Secret, and list none.
            worker_custom = k8s.CustomObjectsApi(worker_api)
            assert forbidden(
                worker_custom.patch_namespaced_custom_object_status,
                GROUP, VERSION, namespace, "avatarsessions", "sess-someone-else",
                {"status": {"worker": {"frames": 1}}},
            )  # fmt: skip
            assert forbidden(
                worker_core.read_namespaced_secret, "sess-someone-else-token", namespace
            )
            assert forbidden(worker_core.list_namespaced_secret, namespace)
            worker.heartbeat(frames=250, billable_seconds=10.0)

            ended = http.post(
                f"/v1/sessions/{session_id}/end", headers={"Idempotency-Key": str(uuid.uuid4())}
            )
            assert ended.status_code == 200, ended.text
            sessions.wait_phase(name, "ending", timeout=30)
            worker.left()
            final = sessions.wait_phase(name, "ended", timeout=60)
            assert final.status.reason == "user_ended"
            # The slot is free and the grant revoked; the warm worker stays for the next one.
            wait_for(
                lambda: forbidden(worker_core.read_namespaced_secret, token_secret, namespace),
                timeout=30,
                description="the session gone from the worker's grant",
            )
        kept = plain(api_client, core.read_namespaced_pod(binding.pod, namespace))
        assert "deletionTimestamp" not in kept["metadata"]
        assert http.get(f"/v1/sessions/{session_id}").json()["status"] == "ended"

    def transitions_posted() -> list[str] | None:
        reasons = sessions.event_reasons(name)
        return reasons if "Ended" in reasons else None

    reasons = wait_for(transitions_posted, timeout=30, description="the operator's Events")
    for reason in ("Starting", "Running", "Ending", "Ended"):
        assert reason in reasons, reasons
    # A warm slot was free: queued and started in one write, with one Event for it.
    assert "Queued" not in reasons, reasons
    assert sessions.tenant_usage()["secondsUsed"] == 10.0

    # Nothing the operator or the API tried was refused, beyond kopf's optional look-ups.
    for process in (stack.operator, stack.api):
        process.check_alive()
        refused = [
            line
            for line in process.log_path.read_text().splitlines()
            if ("forbidden" in line.lower() or " 403" in line)
            and not any(expected in line for expected in EXPECTED_REFUSALS)
        ]
        assert not refused, f"{process.name} was refused:\n" + "\n".join(refused)
