"""The kubeconfig files of the local node: the one it writes for each pod's ServiceAccount
token, and the server and CA it reads from its own."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_token_kubeconfig(path: Path, server: str, ca_file: str, token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": ca_file}}
        ],
        "users": [{"name": "pod", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "pod"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def cluster_of(kubeconfig: Path) -> tuple[str, str]:
    """The server URL and CA file of a kubeconfig's single cluster."""
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    return str(cluster["server"]), str(cluster["certificate-authority"])
