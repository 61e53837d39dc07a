"""Kubeconfig files that point a client certificate at the test apiserver."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.testenv.certs import CertFiles


def write_kubeconfig(path: Path, server: str, ca_cert: Path, client: CertFiles) -> Path:
    """Write a single-context kubeconfig; file paths, not inline data, so it stays readable."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "testenv",
                "cluster": {"server": server, "certificate-authority": str(ca_cert)},
            }
        ],
        "users": [
            {
                "name": "testenv",
                "user": {
                    "client-certificate": str(client.cert),
                    "client-key": str(client.key),
                },
            }
        ],
        "contexts": [{"name": "testenv", "context": {"cluster": "testenv", "user": "testenv"}}],
        "current-context": "testenv",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
