"""The local runner's pure part: how a worker pod built by the operator becomes a process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from avatar_crds import contract
from avatar_operator.settings import WorkerPodSettings
from testbed.objects import pool_worker_pod
from tools.localstack.kubelet_status import termination_message
from tools.localstack.pod_launch import LaunchPlan, UnsupportedPodError, plan_launch


def _pod() -> dict[str, Any]:
    """The operator's own pool worker pod (with a TTS key Secret volume), as the API server
    returns it: named from its generateName, with the service account's token volume."""
    settings = WorkerPodSettings(
        tts_openai_base_url="http://127.0.0.1:8000/v1", tts_openai_api_key_secret="tts-key"
    )
    pod = pool_worker_pod(settings)
    pod["metadata"]["name"] = "mock-x7k2p"
    pod["spec"]["containers"][0]["image"] = "facecast/worker:local"
    # What the ServiceAccount admission plugin adds to every pod.
    pod["spec"]["volumes"].append({"name": "kube-api-access-x", "projected": {"sources": []}})
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    )
    return pod


def _unprobed(pod: dict[str, Any]) -> dict[str, Any]:
    del pod["spec"]["containers"][0]["readinessProbe"]
    return pod


def test_the_operators_worker_pod_maps_to_the_worker_process(tmp_path: Path) -> None:
    plan = _plan(_pod(), tmp_path)
    ready = str(tmp_path / "volumes" / "tmp" / "facecast-ready")
    assert plan.argv == ["python", "-m", "avatar_worker", "pool", READY_ARG, ready]
    key_dir = str(tmp_path / "volumes" / "tts-key")
    assert plan.env[contract.ENV_TTS_OPENAI_API_KEY_FILE] == f"{key_dir}/api-key"
    assert plan.env[contract.ENV_AVATAR_STORE] == "/srv/avatars"
    assert plan.env[contract.ENV_POD_NAME] == "mock-x7k2p"
    assert plan.env["KUBECONFIG"] == str(tmp_path / "sa.kubeconfig")
    assert plan.env["TMPDIR"] == str(tmp_path / "volumes" / "tmp")
    assert plan.secret_dirs == {"tts-key": key_dir}
    assert plan.secret_items["tts-key"] == [("api-key", "api-key", 0o440)]


def test_a_pod_without_a_probe_is_ready_on_start(tmp_path: Path) -> None:
    plan = _plan(_unprobed(_pod()), tmp_path)
    assert plan.readiness is None
    assert plan.directories == [str(tmp_path / "volumes" / "tmp")]


def test_env_from_other_objects_is_refused(tmp_path: Path) -> None:
    pod = _pod()
    pod["spec"]["containers"][0]["env"].append(
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    )
    with pytest.raises(UnsupportedPodError, match="valueFrom"):
        plan_launch(
            pod, tmp_path, images={}, default_command=["w"], host_paths={},
            kubeconfig=tmp_path / "k", base_env={},
        )  # fmt: skip


READY_ARG = "--ready-file"


def _pool_pod(*, tmp_volume: bool) -> dict[str, Any]:
    """A pool worker pod as POOLS.md describes it, as the API server returns it: named from
    its generateName, env from the downward API, an exec readiness probe, no Secret volume."""
    env: list[dict[str, Any]] = [
        {"name": contract.ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": contract.ENV_SESSION_NAMESPACE,
         "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        {"name": contract.ENV_WORKER_GRANT,
         "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": contract.ENV_POOL_NAME, "value": "lite"},
        {"name": contract.ENV_WORKER_SLOTS, "value": "4"},
        {"name": contract.ENV_AVATAR_STORE, "value": contract.AVATAR_STORE_DIR},
    ]  # fmt: skip
    container: dict[str, Any] = {
        "name": "worker",
        "image": "facecast/worker:local",
        "args": ["pool"],
        "env": env,
        "volumeMounts": [],
        "readinessProbe": {
            "exec": {"command": ["cat", contract.WORKER_READY_FILE]},
            "periodSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": 2,
            "timeoutSeconds": 1,
        },
    }
    volumes: list[dict[str, Any]] = []
    if tmp_volume:
        volumes.append({"name": "tmp", "emptyDir": {}})
        container["volumeMounts"].append({"name": "tmp", "mountPath": "/tmp"})
    return {
        "metadata": {
            "generateName": contract.pool_worker_generate_name("lite"),
            "name": "lite-x7k2p",
            "namespace": "facecast",
            "uid": "u-2",
            "labels": contract.pool_worker_labels("lite"),
            "annotations": {contract.ANNOTATION_SLOTS: "4"},
        },
        "spec": {
            "serviceAccountName": "lite-worker-q4vzt",
            "nodeName": "local-gpu-0",
            "containers": [container],
            "volumes": volumes,
        },
    }


def _plan(pod: dict[str, Any], pod_dir: Path) -> LaunchPlan:
    return plan_launch(
        pod,
        pod_dir,
        images={"facecast/worker:local": ["python", "-m", "avatar_worker"]},
        default_command=["false"],
        host_paths={contract.AVATAR_STORE_DIR: "/srv/avatars"},
        kubeconfig=pod_dir / "sa.kubeconfig",
        base_env={"PATH": "/usr/bin"},
        readiness_file_arg=READY_ARG,
    )


def test_a_pool_worker_pod_gets_its_generated_name_namespace_and_account(tmp_path: Path) -> None:
    plan = _plan(_pool_pod(tmp_volume=True), tmp_path)
    ready = str(tmp_path / "volumes" / "tmp" / "facecast-ready")
    assert plan.argv == ["python", "-m", "avatar_worker", "pool", READY_ARG, ready]
    assert plan.env[contract.ENV_POD_NAME] == "lite-x7k2p"
    assert plan.env[contract.ENV_SESSION_NAMESPACE] == "facecast"
    assert plan.env[contract.ENV_WORKER_GRANT] == "lite-worker-q4vzt"
    assert plan.env[contract.ENV_POOL_NAME] == "lite"
    assert plan.env[contract.ENV_AVATAR_STORE] == "/srv/avatars"
    # No token Secret volume: nothing to lay out but the kubeconfig of its own account.
    assert plan.secret_dirs == {}
    assert plan.env["KUBECONFIG"] == str(tmp_path / "sa.kubeconfig")


def test_the_ready_file_is_read_in_the_pods_tmp_volume(tmp_path: Path) -> None:
    plan = _plan(_pool_pod(tmp_volume=True), tmp_path)
    ready = str(tmp_path / "volumes" / "tmp" / "facecast-ready")
    assert plan.readiness is not None
    assert plan.readiness.container_path == contract.WORKER_READY_FILE
    assert plan.readiness.local_path == ready
    assert (plan.readiness.period_s, plan.readiness.failure_threshold) == (1.0, 2)
    # The process is told where that is, since it has no /tmp of its own here.
    assert plan.argv[-2:] == [READY_ARG, ready]
    assert plan.env["TMPDIR"] == str(tmp_path / "volumes" / "tmp")


def test_without_a_tmp_volume_the_pod_gets_a_private_tmp(tmp_path: Path) -> None:
    plan = _plan(_pool_pod(tmp_volume=False), tmp_path)
    assert plan.readiness is not None
    assert plan.readiness.local_path == str(tmp_path / "tmp" / "facecast-ready")
    assert plan.env["TMPDIR"] == str(tmp_path / "tmp")
    assert plan.directories == [str(tmp_path / "tmp")]


def test_the_ready_file_option_is_given_only_to_a_probed_pod(tmp_path: Path) -> None:
    assert READY_ARG not in _plan(_unprobed(_pod()), tmp_path).argv


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("metadata.labels['facecast.io/pool']", "lite"),
        (f"metadata.annotations['{contract.ANNOTATION_SLOTS}']", "4"),
        ("metadata.labels['absent']", ""),
        ("metadata.uid", "u-2"),
        ("spec.nodeName", "local-gpu-0"),
        ("status.podIP", "127.0.0.1"),
    ],
)
def test_other_downward_api_fields(tmp_path: Path, path: str, expected: str) -> None:
    pod = _pool_pod(tmp_volume=True)
    pod["spec"]["containers"][0]["env"].append(
        {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": path}}}
    )
    assert _plan(pod, tmp_path).env["X"] == expected


def test_a_field_the_downward_api_does_not_offer_is_refused(tmp_path: Path) -> None:
    pod = _pool_pod(tmp_volume=True)
    pod["spec"]["containers"][0]["env"].append(
        {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.containers"}}}
    )
    with pytest.raises(UnsupportedPodError, match=r"spec\.containers"):
        _plan(pod, tmp_path)


@pytest.mark.parametrize(
    ("probes", "refusal"),
    [
        ({"readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}, "cat FILE"),
        ({"readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/x"]}}}, "cat FILE"),
        ({"readinessProbe": {"exec": {"command": ["cat", "/etc/ready"]}}}, "/etc/ready"),
        ({"readinessProbe": {"exec": {"command": ["cat", "ready"]}}}, "ready"),
        ({"livenessProbe": {"exec": {"command": ["cat", "/tmp/x"]}}}, "livenessProbe"),
        ({"startupProbe": {"exec": {"command": ["cat", "/tmp/x"]}}}, "startupProbe"),
    ],
)
def test_probes_the_node_cannot_run_are_refused(
    tmp_path: Path, probes: dict[str, Any], refusal: str
) -> None:
    """Refused, not ignored: ignoring one would report Ready a pod a kubelet would not."""
    pod = _pool_pod(tmp_volume=True)
    container = pod["spec"]["containers"][0]
    del container["readinessProbe"]
    container.update(probes)
    with pytest.raises(UnsupportedPodError, match=refusal):
        _plan(pod, tmp_path)


def test_a_cat_probe_by_absolute_path_of_cat_is_run(tmp_path: Path) -> None:
    pod = _pool_pod(tmp_volume=True)
    pod["spec"]["containers"][0]["readinessProbe"]["exec"]["command"] = ["/bin/cat", "/tmp/r"]
    plan = _plan(pod, tmp_path)
    assert plan.readiness is not None
    assert plan.readiness.local_path == str(tmp_path / "volumes" / "tmp" / "r")


def test_termination_message_falls_back_to_the_log_tail_on_error(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(200)))
    message = termination_message(1, tmp_path / "absent", log)
    assert message.endswith("line 199")
    assert len(message.encode()) <= 2048
    assert termination_message(0, tmp_path / "absent", log) == ""
