"""The local runner's pure part: how a worker pod built by the operator becomes a process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from avatar_crds import contract
from avatar_crds.session import AvatarSession
from avatar_operator.resources import worker_pod
from avatar_operator.settings import WorkerPodSettings
from tools.localstack.kubelet_status import termination_message
from tools.localstack.pod_launch import UnsupportedPodError, plan_launch


def _pod() -> dict[str, Any]:
    session = AvatarSession.model_validate(
        {
            "metadata": {"name": "sess-01abc", "namespace": "facecast", "uid": "u-1"},
            "spec": {
                "tenant": "demo",
                "avatarRef": "av-01jcz3v7m4q8r2t6w9x0y1z2a3",
                "quality": "lite",
                "transport": {
                    "type": "livekit",
                    "livekit": {"url": "ws://127.0.0.1:7880", "roomName": "r"},
                },
                "tokenSecretRef": {"name": "sess-01abc-token"},
            },
        }
    )
    pod = worker_pod(session, WorkerPodSettings(image="facecast/worker:local"))
    # What the ServiceAccount admission plugin adds to every pod.
    pod["spec"]["volumes"].append({"name": "kube-api-access-x", "projected": {"sources": []}})
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    )
    return pod


def test_the_operators_worker_pod_maps_to_the_worker_process(tmp_path: Path) -> None:
    plan = plan_launch(
        _pod(),
        tmp_path,
        images={"facecast/worker:local": ["python", "-m", "avatar_worker"]},
        default_command=["false"],
        host_paths={contract.AVATAR_STORE_DIR: "/srv/avatars"},
        kubeconfig=tmp_path / "sa.kubeconfig",
        base_env={"PATH": "/usr/bin"},
    )
    assert plan.argv == ["python", "-m", "avatar_worker"]
    token_dir = str(tmp_path / "volumes" / "transport-token")
    assert plan.env[contract.ENV_TOKEN_FILE] == f"{token_dir}/{contract.TOKEN_SECRET_KEY}"
    assert plan.env[contract.ENV_AVATAR_STORE] == "/srv/avatars"
    assert plan.env[contract.ENV_SESSION_NAME] == "sess-01abc"
    assert plan.env["KUBECONFIG"] == str(tmp_path / "sa.kubeconfig")
    assert plan.env["TMPDIR"] == str(tmp_path / "volumes" / "tmp")
    assert plan.secret_dirs == {"sess-01abc-token": token_dir}
    assert plan.secret_items["sess-01abc-token"] == [("token", "token", 0o440)]


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


def test_termination_message_falls_back_to_the_log_tail_on_error(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(200)))
    message = termination_message(1, tmp_path / "absent", log)
    assert message.endswith("line 199")
    assert len(message.encode()) <= 2048
    assert termination_message(0, tmp_path / "absent", log) == ""
