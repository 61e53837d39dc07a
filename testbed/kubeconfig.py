"""Kubeconfig files that point a client certificate or a token at the test apiserver."""

from __future__ import annotations

from pathlib import Path

import yaml

from testbed.certs import CertFiles


def write_kubeconfig(path: Path, server: str, ca_cert: Path, client: CertFiles) -> Path:
    """Write a single-context kubeconfig; file paths, not inline data, so it stays readable."""
    user = {"client-certificate": str(client.cert), "client-key": str(client.key)}
    return _write(path, server, ca_cert, user)


def write_token_kubeconfig(path: Path, server: str, ca_cert: Path, token: str) -> Path:
    """A kubeconfig that authenticates with a bearer token (e.g. a ServiceAccount's).

    Unlike impersonation (`as:`), which kubectl honours but the Python clients (kubernetes,
    kopf) ignore, a token makes every client act with exactly that identity's permissions.
    """
    return _write(path, server, ca_cert, {"token": token})


def _write(path: Path, server: str, ca_cert: Path, user: dict[str, str]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "testenv",
                "cluster": {"server": server, "certificate-authority": str(ca_cert)},
            }
        ],
        "users": [{"name": "testenv", "user": user}],
        "contexts": [{"name": "testenv", "context": {"cluster": "testenv", "user": "testenv"}}],
        "current-context": "testenv",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
