"""Finding the upstream binaries that tools/testenv/build.sh builds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "tools" / "testenv" / "build.sh"
BIN_ENV_VAR = "FACECAST_TESTENV_BIN"

# Everything build.sh puts in the bin dir that the fixtures use.
REQUIRED = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "kwok-stages.yaml",
    "helm",
    "livekit-server",
)


def testenv_bin_dir() -> Path:
    """The bin dir from $FACECAST_TESTENV_BIN, or from running build.sh.

    build.sh prints the dir as its last stdout line, and its progress on
    stderr, which is left attached so a cold build shows what it is doing.
    """
    configured = os.environ.get(BIN_ENV_VAR)
    if configured:
        bin_dir = Path(configured)
    else:
        completed = subprocess.run(
            [str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
        )
        bin_dir = Path(completed.stdout.strip().splitlines()[-1])
    missing = [name for name in REQUIRED if not (bin_dir / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{bin_dir} lacks {', '.join(missing)}; run tools/testenv/build.sh"
            f" and set {BIN_ENV_VAR} to the directory it prints"
        )
    return bin_dir
