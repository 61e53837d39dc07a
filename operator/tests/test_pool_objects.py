"""What the pool controller sends to the API server about a pool's workers, read straight from
the pure builders: identity made of one name, a grant that names only the bound sessions (and
never an empty name list), and a pod shaped by the pool with the operator's shared pieces."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from avatar_crds import contract
from avatar_crds.pool import WorkerPool
from avatar_operator import pool_objects
from avatar_operator.pool_objects import GrantedSession, grant_rules
from avatar_operator.settings import WorkerPodSettings

ACCOUNT = "lite-worker-x7k2p"
POOL = WorkerPool.model_validate(
    {
        "metadata": {"name": "lite", "namespace": "fc", "uid": "pool-uid"},
        "spec": {
            "qualities": ["lite"],
            "worker": {
                "image": "ghcr.io/facecast/worker:9",
                "resources": {"requests": {"cpu": "2"}, "limits": {"memory": "8Gi"}},
                "gpus": 2,
                "nodeSelector": {"gpu": "l4"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                "runtimeClassName": "nvidia",
            },
            "slotsPerWorker": 4,
            "maxWorkers": 3,
        },
    }
)
A = GrantedSession(name="sess-a", avatar="av-1")
B = GrantedSession(name="sess-b", avatar="av-1")


def rule_for(rules: list[dict[str, Any]], resource: str) -> dict[str, Any]:
    (rule,) = [r for r in rules if r["resources"] == [resource]]
    return rule


def test_a_worker_without_sessions_may_only_watch_its_own_grant() -> None:
    assert grant_rules(ACCOUNT, []) == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["roles"],
            "verbs": ["get", "watch"],
            "resourceNames": [ACCOUNT],
        }
    ]


def test_the_grant_names_each_bound_session_its_status_token_and_avatar() -> None:
    rules = grant_rules(ACCOUNT, [B, A])
    sessions = rule_for(rules, "avatarsessions")
    status = rule_for(rules, "avatarsessions/status")
    secrets = rule_for(rules, "secrets")
    avatars = rule_for(rules, "avatars")
    assert sessions["verbs"] == ["get", "watch"]  # never list: by name only
    assert sessions["resourceNames"] == ["sess-a", "sess-b"]
    assert status["verbs"] == ["get", "patch"]
    assert status["resourceNames"] == ["sess-a", "sess-b"]
    assert secrets["verbs"] == ["get"]
    assert secrets["apiGroups"] == [""]
    assert secrets["resourceNames"] == ["sess-a-token", "sess-b-token"]
    assert avatars["resourceNames"] == ["av-1"]  # one avatar, named once
    assert all(rule["resourceNames"] for rule in rules)


def test_the_same_sessions_in_any_order_make_the_same_grant() -> None:
    """So that a rewrite that would change nothing is recognised and skipped."""
    assert grant_rules(ACCOUNT, [A, B]) == grant_rules(ACCOUNT, [B, A, A])


def test_a_granted_session_is_read_from_its_body() -> None:
    body = {"metadata": {"name": "sess-a"}, "spec": {"avatarRef": "av-1", "tokenSecretRef": {}}}
    assert GrantedSession.of(body) == A


def test_identity_is_one_generated_name_owned_by_the_pool() -> None:
    account = pool_objects.worker_account(POOL)
    assert account["metadata"]["generateName"] == "lite-worker-"
    assert "name" not in account["metadata"]
    role = pool_objects.worker_role(POOL, ACCOUNT, [A])
    binding = pool_objects.worker_role_binding(POOL, ACCOUNT)
    assert role["metadata"]["name"] == binding["metadata"]["name"] == ACCOUNT
    assert role["rules"] == grant_rules(ACCOUNT, [A])
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": ACCOUNT,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": "fc"}]
    for obj in (account, role, binding):
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("WorkerPool", "lite", "pool-uid")
        assert owner["controller"] is True
        assert obj["metadata"]["labels"] == contract.pool_worker_labels("lite")
        assert obj["metadata"]["namespace"] == "fc"


def test_the_account_name_matches_what_the_admission_policy_confines() -> None:
    generated = pool_objects.worker_account(POOL)["metadata"]["generateName"] + "x7k2p"
    assert re.search(contract.WORKER_ACCOUNT_PATTERN, generated)


def test_the_worker_pod_is_generated_owned_labelled_and_runs_as_its_account() -> None:
    pod = pool_objects.worker_pod(POOL, ACCOUNT, WorkerPodSettings())
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["generateName"] == "lite-"
    assert "name" not in meta
    assert meta["labels"] == contract.pool_worker_labels("lite")
    assert contract.LABEL_SESSION not in meta["labels"]
    assert meta["annotations"] == {contract.ANNOTATION_SLOTS: "4"}
    assert meta["ownerReferences"][0]["uid"] == "pool-uid"
    assert spec["serviceAccountName"] == ACCOUNT
    assert spec["restartPolicy"] == "Never"
    container = spec["containers"][0]
    assert container["args"] == ["pool"]
    assert container["readinessProbe"]["exec"]["command"] == ["cat", contract.WORKER_READY_FILE]


def test_the_worker_pod_has_its_environment_and_no_token_volume() -> None:
    settings = WorkerPodSettings(
        transport_allowed_hosts="livekit.facecast.svc",
        tts_openai_base_url="http://tts:8000/v1",
        tts_openai_api_key_secret="tts-credentials",
    )
    spec = pool_objects.worker_pod(POOL, ACCOUNT, settings)["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env[contract.ENV_POD_NAME]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env[contract.ENV_SESSION_NAMESPACE]["value"] == "fc"
    assert env[contract.ENV_POOL_NAME]["value"] == "lite"
    assert env[contract.ENV_WORKER_GRANT]["value"] == ACCOUNT
    assert env[contract.ENV_WORKER_SLOTS]["value"] == "4"
    assert env[contract.ENV_AVATAR_STORE]["value"] == contract.AVATAR_STORE_DIR
    assert env[contract.ENV_SERVED_QUALITIES]["value"] == "lite"
    assert "NVIDIA_VISIBLE_DEVICES" not in env  # its GPUs are the ones it asked for
    # The operator's shared pieces:
    assert env[contract.ENV_TRANSPORT_ALLOWED_HOSTS]["value"] == "livekit.facecast.svc"
    assert env[contract.ENV_TTS_OPENAI_API_KEY_FILE]["value"] == contract.TTS_KEY_FILE
    assert contract.ENV_SESSION_NAME not in env
    assert contract.ENV_TOKEN_FILE not in env
    volumes = {v["name"] for v in spec["volumes"]}
    assert volumes == {"tmp", "tts-key"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_pool_shapes_its_workers_and_the_operator_adds_its_own_pieces() -> None:
    settings = WorkerPodSettings(
        priority_class_name="avatars",
        termination_grace_seconds=45,
        host_network=True,
        kubernetes_api_host="10.0.0.9",
    )
    spec = pool_objects.worker_pod(POOL, ACCOUNT, settings)["spec"]
    container = spec["containers"][0]
    assert container["image"] == "ghcr.io/facecast/worker:9"
    assert container["resources"] == {
        "requests": {"cpu": "2", "nvidia.com/gpu": "2"},
        "limits": {"memory": "8Gi", "nvidia.com/gpu": "2"},
    }
    assert spec["nodeSelector"] == {"gpu": "l4"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    assert spec["runtimeClassName"] == "nvidia"
    # What the operator keeps: priority, grace period, and the node network's settings.
    assert spec["priorityClassName"] == "avatars"
    assert spec["terminationGracePeriodSeconds"] == 45
    assert spec["hostNetwork"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == ("10.0.0.9", "443")


def test_a_cpu_pool_asks_for_no_gpu() -> None:
    cpu = POOL.model_copy(deep=True)
    cpu.spec.worker.gpus = 0
    cpu.spec.worker.resources.requests = {}
    container = pool_objects.worker_pod(cpu, ACCOUNT, WorkerPodSettings())["spec"]["containers"][0]
    assert container["resources"] == {"limits": {"memory": "8Gi"}}
    # On a GPU node's NVIDIA runtime it would otherwise see every GPU there.
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"


def test_draining_and_taking_back_are_one_annotation() -> None:
    since = datetime(2026, 11, 21, 12, 0, 5, 123456, tzinfo=UTC)
    drain = pool_objects.draining_patch(since)
    assert drain == {
        "metadata": {"annotations": {contract.ANNOTATION_DRAINING_SINCE: "2026-11-21T12:00:05Z"}}
    }
    back = pool_objects.draining_patch(None)
    assert back == {"metadata": {"annotations": {contract.ANNOTATION_DRAINING_SINCE: None}}}


def test_a_gpu_pool_tolerates_the_taint_of_its_gpu_resource() -> None:
    """As Kubernetes' ExtendedResourceToleration plugin would: GPU nodes are tainted with the
    GPU resource's name, and a pool asking for GPUs need not say so."""
    bare = POOL.model_copy(deep=True)
    bare.spec.worker.tolerations = []
    bare.spec.worker.gpu_resource_name = "amd.com/gpu"
    spec = pool_objects.worker_pod(bare, ACCOUNT, WorkerPodSettings())["spec"]
    assert spec["tolerations"] == [
        {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    bare.spec.worker.gpus = 0
    assert pool_objects.worker_pod(bare, ACCOUNT, WorkerPodSettings())["spec"]["tolerations"] == []
