"""The pod sandbox ("pause") image, built here: no registry is reachable, so registry.k8s.io's
pause image is made from the same source, Kubernetes' build/pause/linux/pause.c, taken from the
k8s.io/kubernetes module that tools/testenv/build.sh already downloaded (the version its
kubernetes/go.mod pins). Compiled as upstream's Makefile does (gcc -Os -static), it is the only
file of an image imported into Docker; cached by the source's and the compiler's digest."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from testbed.binaries import REPO_ROOT
from testbed.images import FACECAST_CACHE, LOCAL_REPOSITORY, docker, image_exists

KUBERNETES_GO_MOD = REPO_ROOT / "tools" / "testenv" / "kubernetes" / "go.mod"
# build.sh keeps the module cache here (GOMODCACHE).
MODULE_CACHE = FACECAST_CACHE / "go" / "mod"
# build/pause/Makefile's TAG at the pinned version; the binary prints it for --version (-v).
PAUSE_TAG = "3.10.1"


def kubernetes_version(go_mod: Path = KUBERNETES_GO_MOD) -> str:
    """The k8s.io/kubernetes version tools/testenv/kubernetes/go.mod requires."""
    for line in go_mod.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "k8s.io/kubernetes" and fields[1].startswith("v"):
            return fields[1]
    raise LookupError(f"{go_mod} requires no k8s.io/kubernetes")


def pause_source() -> Path:
    source = (
        MODULE_CACHE / f"k8s.io/kubernetes@{kubernetes_version()}" / "build/pause/linux/pause.c"
    )
    if not source.exists():
        raise FileNotFoundError(f"{source} is missing: tools/testenv/build.sh downloads it")
    return source


def pause_image() -> str:
    """The Docker tag of the pause image (built and imported on first use)."""
    source = pause_source()
    compiler = subprocess.run(
        ["gcc", "--version"], capture_output=True, check=True, timeout=30
    ).stdout
    key = hashlib.sha256(source.read_bytes() + compiler).hexdigest()[:16]
    tag = f"{LOCAL_REPOSITORY}/pause:{PAUSE_TAG}-{key}"
    if image_exists(tag):
        return tag
    with tempfile.TemporaryDirectory() as scratch:
        binary = Path(scratch) / "pause"
        subprocess.run(
            ["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{PAUSE_TAG}-facecast",
             "-o", str(binary), str(source)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        archive = BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.add(binary, arcname="pause")
    # Upstream's Dockerfile: the binary alone, run as nobody (65535).
    changes = ["--change", 'ENTRYPOINT ["/pause"]', "--change", "USER 65535:65535"]
    docker("import", *changes, "-", tag, stdin=archive.getvalue(), timeout=120)
    return tag
