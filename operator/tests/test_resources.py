"""What the operator sends to the API server about every worker (its shared pod pieces) and
about a session (its status patch), read straight from the pure builders; and its settings."""

from __future__ import annotations

from typing import Any

import pytest

from avatar_crds import contract
from avatar_crds.enums import Phase
from avatar_crds.session import AvatarSessionStatus
from avatar_operator.resources import status_patch
from avatar_operator.settings import Settings, SettingsError, WorkerPodSettings, load_settings
from testbed.objects import pool_worker_pod


def build(**settings: Any) -> dict[str, Any]:
    return pool_worker_pod(WorkerPodSettings(**settings))


def test_pod_is_locked_down() -> None:
    spec = build()["spec"]
    container = spec["containers"][0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["restartPolicy"] == "Never"


def test_status_patch_touches_only_changed_operator_fields() -> None:
    old = AvatarSessionStatus.model_validate({"phase": "queued", "worker": {"frames": 3}})
    new = old.model_copy(update={"phase": Phase.STARTING, "worker": None})
    assert status_patch(old, new) == {"status": {"phase": "starting"}}
    assert status_patch(old, old) is None


def test_settings_from_environment() -> None:
    settings = load_settings(
        {
            "FACECAST_NAMESPACE": "avatars",
            "FACECAST_WORKER_TERMINATION_GRACE_SECONDS": "45",
            "FACECAST_WORKER_PRIORITY_CLASS_NAME": "avatars",
        }
    )
    assert settings.namespace == "avatars"
    assert settings.worker.termination_grace_seconds == 45
    assert settings.worker.priority_class_name == "avatars"
    assert load_settings({}) == Settings()
    with pytest.raises(SettingsError, match="termination_grace_seconds"):
        load_settings({"FACECAST_WORKER_TERMINATION_GRACE_SECONDS": "0"})


def test_webhook_timeout_is_configurable() -> None:
    assert load_settings({"FACECAST_WEBHOOK_TIMEOUT_SECONDS": "2.5"}).webhook_timeout_seconds == 2.5


VOICES = '[{"voice": "alloy", "languages": ["en"]}]'


def test_tts_server_settings_reach_the_worker_and_its_key_only_as_a_file() -> None:
    pod = build(
        tts_openai_base_url="http://tts.platform.svc:8000/v1",
        tts_openai_voices=VOICES,
        tts_openai_api_key_secret="tts-credentials",
        tts_openai_api_key_secret_key="openai",
    )
    spec = pod["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[contract.ENV_TTS_OPENAI_BASE_URL] == "http://tts.platform.svc:8000/v1"
    assert env[contract.ENV_TTS_OPENAI_VOICES] == VOICES
    assert env[contract.ENV_TTS_OPENAI_API_KEY_FILE] == contract.TTS_KEY_FILE
    volume = next(v for v in spec["volumes"] if v["name"] == "tts-key")
    assert volume["secret"]["secretName"] == "tts-credentials"
    assert volume["secret"]["items"] == [{"key": "openai", "path": "api-key"}]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "tts-key")
    assert f"{mount['mountPath']}/api-key" == contract.TTS_KEY_FILE
    assert mount["readOnly"] is True
    assert all("secretKeyRef" not in e.get("valueFrom", {}) for e in container["env"])


def test_without_a_tts_server_the_worker_gets_none_of_its_settings() -> None:
    container = build()["spec"]["containers"][0]
    names = {e["name"] for e in container["env"]}
    assert not names & {
        contract.ENV_TTS_OPENAI_BASE_URL,
        contract.ENV_TTS_OPENAI_VOICES,
        contract.ENV_TTS_OPENAI_API_KEY_FILE,
    }
    assert all(m["name"] != "tts-key" for m in container["volumeMounts"])


def test_tts_and_warning_settings_from_environment() -> None:
    settings = load_settings(
        {
            "FACECAST_TTS_OPENAI_BASE_URL": "https://tts.example/v1",
            "FACECAST_TTS_OPENAI_VOICES": VOICES,
            "FACECAST_TTS_OPENAI_API_KEY_SECRET": "tts-credentials",
            "FACECAST_ENDING_SOON_SECONDS": "0",
        }
    )
    assert settings.worker.tts_openai_base_url == "https://tts.example/v1"
    assert settings.worker.tts_openai_voices == VOICES
    assert settings.worker.tts_openai_api_key_secret == "tts-credentials"
    assert settings.worker.tts_openai_api_key_secret_key == "api-key"
    assert settings.ending_soon_seconds == 0
    assert Settings().ending_soon_seconds == 10
    with pytest.raises(SettingsError, match="TTS_OPENAI_VOICES"):
        load_settings({"FACECAST_TTS_OPENAI_VOICES": '[{"voice": "alloy"}]'})
    with pytest.raises(SettingsError, match="tts_openai_base_url"):
        load_settings({"FACECAST_TTS_OPENAI_BASE_URL": "ftp://tts.example"})


def test_node_network_and_api_server_address_reach_the_worker_from_environment() -> None:
    """For a cluster without kube-proxy and a pod network (the chart's `hostNetwork` and
    `kubernetesApi`): the worker runs on its node's network and finds the API server there."""
    settings = load_settings(
        {
            "FACECAST_WORKER_HOST_NETWORK": "true",
            "FACECAST_KUBERNETES_API_HOST": "127.0.0.1",
            "FACECAST_KUBERNETES_API_PORT": "6443",
        }
    )
    pod = pool_worker_pod(settings.worker)
    assert pod["spec"]["hostNetwork"] is True
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "6443"
    # By default neither: the pod network, and the `kubernetes` Service the kubelet names.
    default = build()
    assert "hostNetwork" not in default["spec"]
    names = {e["name"] for e in default["spec"]["containers"][0]["env"]}
    assert not names & {"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}
    with pytest.raises(SettingsError, match="kubernetes_api_port"):
        load_settings({"FACECAST_KUBERNETES_API_PORT": "0"})
