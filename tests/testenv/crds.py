"""Facecast's generated CRDs, installed into a control plane with the real kubectl."""

from __future__ import annotations

import subprocess
from pathlib import Path

CRD_DIR = Path(__file__).resolve().parents[2] / "crds" / "manifests"


def install_crds(kubectl: Path, kubeconfig: Path) -> None:
    """Apply the generated CRDs with the real kubectl and wait until they are served."""
    base = [str(kubectl), f"--kubeconfig={kubeconfig}"]
    for args in (
        ["apply", "--server-side", "-f", str(CRD_DIR)],
        ["wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD_DIR)],
    ):
        done = subprocess.run([*base, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {args[0]} failed:\n{done.stdout}{done.stderr}")
