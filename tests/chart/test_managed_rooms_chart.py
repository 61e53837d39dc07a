"""`managedRooms.*` reach the API: its URL and key as env, the LiveKit API secret (and the
optional session-token secret) only from Secrets mounted as files the API reads, and the
platform's LiveKit addresses in the worker's and the API's NetworkPolicies. Off by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api_shim.settings import Settings as ApiSettings
from testbed.helm import Helm
from tests.chart.rendering import API, FULLNAME, Manifest, container, one, render

ENABLED = (
    "managedRooms.enabled=true",
    "managedRooms.url=ws://livekit.livekit.svc.cluster.local:7880",
    "managedRooms.clientUrl=wss://livekit.example.com",
    "managedRooms.apiKey=APIfacecast",
    "managedRooms.apiSecretSecret.name=livekit-keys",
    "managedRooms.cidrs[0].cidr=10.96.12.34/32",
)


def api_pod(docs: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment", API)["spec"]["template"]["spec"]
    return spec


def secret_files(pod: dict[str, Any], tmp_path: Path, contents: dict[str, str]) -> dict[str, str]:
    """Each mounted Secret volume's files, written under tmp_path as the kubelet would project
    them; returns container path -> local path."""
    mounts = {
        m["name"]: m for m in container({"spec": {"template": {"spec": pod}}})["volumeMounts"]
    }
    files: dict[str, str] = {}
    for volume in pod["volumes"]:
        secret = volume.get("secret")
        if secret is None:
            continue
        mount = mounts[volume["name"]]
        assert mount["readOnly"] is True
        for item in secret["items"]:
            local = tmp_path / volume["name"] / item["path"]
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(contents[f"{secret['secretName']}/{item['key']}"])
            files[f"{mount['mountPath']}/{item['path']}"] = str(local)
    return files


def test_off_by_default(helm: Helm) -> None:
    docs = render(helm)
    pod = api_pod(docs)
    env = {e["name"] for e in container({"spec": {"template": {"spec": pod}}})["env"]}
    assert not {name for name in env if "MANAGED" in name or "SESSION_TOKEN" in name}
    assert not [v for v in pod["volumes"] if "secret" in v]


def test_the_api_reads_its_livekit_from_the_values_and_a_secret_file(
    helm: Helm, tmp_path: Path
) -> None:
    docs = render(helm, sets=ENABLED)
    pod = api_pod(docs)
    spec = container({"spec": {"template": {"spec": pod}}})
    assert all("valueFrom" not in e for e in spec["env"])  # no secret in the env
    env = {e["name"]: e["value"] for e in spec["env"]}
    files = secret_files(pod, tmp_path, {"livekit-keys/api-secret": "s3cret-from-secret"})
    env = {name: files.get(value, value) for name, value in env.items()}
    managed = ApiSettings.from_env(env).managed_livekit()
    assert managed is not None
    assert (managed.url, managed.client_url, managed.api_key, managed.api_secret) == (
        "ws://livekit.livekit.svc.cluster.local:7880",
        "wss://livekit.example.com",
        "APIfacecast",
        "s3cret-from-secret",
    )
    assert ApiSettings.from_env(env).session_token_secret() == "s3cret-from-secret"


def test_a_session_token_secret_of_its_own(helm: Helm, tmp_path: Path) -> None:
    sets = (*ENABLED, "managedRooms.sessionTokenSecret.name=kaltura-tokens")
    pod = api_pod(render(helm, sets=sets))
    env = {e["name"]: e["value"] for e in container({"spec": {"template": {"spec": pod}}})["env"]}
    files = secret_files(
        pod,
        tmp_path,
        {
            "livekit-keys/api-secret": "livekit",
            "kaltura-tokens/session-token-secret": "tokens-of-their-own",
        },
    )
    env = {name: files.get(value, value) for name, value in env.items()}
    assert ApiSettings.from_env(env).session_token_secret() == "tokens-of-their-own"


def test_workers_and_the_api_may_reach_the_platforms_livekit(helm: Helm) -> None:
    def egress_to(policy: Manifest, cidr: str) -> list[dict[str, Any]]:
        return [
            rule
            for rule in policy["spec"]["egress"]
            if {"ipBlock": {"cidr": cidr}} in rule.get("to", [])
        ]

    default = render(helm)
    assert not egress_to(one(default, "NetworkPolicy", f"{FULLNAME}-worker"), "10.96.12.34/32")
    docs = render(helm, sets=ENABLED)
    (worker,) = egress_to(one(docs, "NetworkPolicy", f"{FULLNAME}-worker"), "10.96.12.34/32")
    assert {"protocol": "TCP", "port": 7880} in worker["ports"]
    assert {"protocol": "UDP", "port": 50000, "endPort": 60000} in worker["ports"]
    (api,) = egress_to(one(docs, "NetworkPolicy", API), "10.96.12.34/32")
    assert {"protocol": "TCP", "port": 7880} in api["ports"]
    assert all(port["protocol"] == "TCP" for port in api["ports"])


@pytest.mark.parametrize(
    "missing", ["managedRooms.url", "managedRooms.apiKey", "managedRooms.apiSecretSecret.name"]
)
def test_enabled_without_its_server_does_not_render(helm: Helm, missing: str) -> None:
    sets = [item for item in ENABLED if not item.startswith(f"{missing}=")]
    with pytest.raises(AssertionError, match=f"/{missing.replace('.', '/')}"):
        render(helm, sets=sets)
