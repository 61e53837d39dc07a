"""Facecast's three images, built with a real Docker engine from their own Dockerfiles.

No image registry is reachable here, so the public bases the Dockerfiles name by default come
from this machine instead, through the Dockerfiles' build arguments:

- a Debian 12 root filesystem made by mmdebstrap from Debian's packages and imported into
  Docker: the stand-in for python:3.11-slim and, for the worker, for the CUDA bases (no GPU
  here; the worker's mock and lite renderer tiers run on numpy). Its python3 is 3.11, as the
  lock asks, so the worker uses it (UV_PYTHON_PREFERENCE=only-system) instead of downloading
  uv's Python build, which comes from GitHub;
- the stand-in for ghcr.io/astral-sh/uv: an image holding only /uv, the uv that
  tools/bootstrap.sh installed, checked to be the version the Dockerfiles pin.

The base also gets this machine's CA bundle (the registries may be reached through a proxy that
re-signs TLS). Each is cached, keyed by what makes it: the mmdebstrap command line (the root
filesystem's tarball under $FACECAST_CACHE/images, and its image), the CA bundle, the uv version.
The classic builder (DOCKER_BUILDKIT=0) builds the images, since BuildKit needs the buildx plugin,
which Debian does not package. Docker's layer cache keys each dependency layer by the lock and
the members' pyproject.toml files (a COPY's checksum covers contents, not mtimes), so a warm run
rebuilds nothing, and a source change only reinstalls the workspace's own packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from testbed.binaries import REPO_ROOT
from tests.chart.dockerfiles import DOCKERFILES, build_args, image_tag

FACECAST_CACHE = Path(os.environ.get("FACECAST_CACHE") or Path.home() / ".cache" / "facecast")
CACHE = FACECAST_CACHE / "images"
# The base's packages: Python 3.11 and the CA bundle, as python:3.11-slim has, and passwd for
# the runtime stages' groupadd/useradd.
BASE_PACKAGES = ("ca-certificates", "passwd", "python3")
MMDEBSTRAP = (
    "mmdebstrap",
    "--quiet",
    "--variant=minbase",
    f"--include={','.join(BASE_PACKAGES)}",
    "bookworm",
)
DEBIAN_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
LOCAL_REPOSITORY = "facecast-local"
TEST_REPOSITORY = "facecast-test"
# Each base image argument and the local image standing in for it: key "base" or "uv".
BASE_ARGUMENTS = {
    "operator": {"UV_IMAGE": "uv", "PYTHON_IMAGE": "base"},
    "api": {"UV_IMAGE": "uv", "PYTHON_IMAGE": "base"},
    "worker": {"UV_IMAGE": "uv", "CUDA_BASE_IMAGE": "base", "CUDA_RUNTIME_IMAGE": "base"},
}
# The interpreter is the base's own: uv's Python builds download from GitHub, unreachable here.
OTHER_ARGUMENTS = {"worker": {"UV_PYTHON_PREFERENCE": "only-system"}}
BUILD_TIMEOUT = 1800.0  # a cold API build downloads onnxruntime, OpenCV, SciPy, ...


class DockerUnavailableError(RuntimeError):
    """No Docker engine answers (tools/test.sh installs and starts one)."""


@dataclass(frozen=True)
class BuiltImage:
    component: str
    tag: str
    image_id: str
    size_bytes: int
    build_seconds: float
    steps_run: tuple[str, ...]  # the instructions not answered from Docker's layer cache


class DockerCommandError(subprocess.CalledProcessError):
    """A docker command failed; its message ends with what the command printed."""

    def __str__(self) -> str:
        printed = b"\n".join(part.strip() for part in (self.stdout, self.stderr) if part)
        return f"{super().__str__()}\n{printed.decode(errors='replace')[-4000:]}"


def docker(
    *args: str, timeout: float = 120.0, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run the docker CLI (builds with the classic builder); a failure raises with its output."""
    done = subprocess.run(
        ["docker", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    if done.returncode != 0:
        raise DockerCommandError(done.returncode, done.args, done.stdout, done.stderr)
    return done


def require_engine() -> None:
    if shutil.which("docker") is None:
        raise DockerUnavailableError("no docker CLI: tools/test.sh installs Debian's docker.io")
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except subprocess.CalledProcessError as error:
        raise DockerUnavailableError(
            f"no Docker engine answers ({error.stderr.decode().strip()}): tools/test.sh starts one"
        ) from error


def image_exists(tag: str) -> bool:
    try:
        docker("image", "inspect", tag, timeout=30)
    except subprocess.CalledProcessError:
        return False
    return True


def image_id(tag: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.decode().strip()


def image_size(tag: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.decode())


def rootfs_image() -> str:
    """The Debian 12 root filesystem, imported into Docker; made once per mmdebstrap command."""
    key = hashlib.sha256(" ".join(MMDEBSTRAP).encode()).hexdigest()[:16]
    tag = f"{LOCAL_REPOSITORY}/debian-rootfs:{key}"
    if image_exists(tag):
        return tag
    rootfs = CACHE / f"debian-rootfs-{key}.tar"
    if not rootfs.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = rootfs.with_suffix(".partial.tar")
        subprocess.run([*MMDEBSTRAP, str(partial)], check=True, timeout=900)
        partial.rename(rootfs)
    docker("import", str(rootfs), tag, timeout=300)
    return tag


def base_image() -> str:
    """The root filesystem trusting what this machine trusts: its CA bundle replaces Debian's
    (the same certificates on most machines; here they also hold the CA of the proxy the
    registries are reached through) and SSL_CERT_FILE points uv at it."""
    bundle = Path(os.environ.get("SSL_CERT_FILE") or DEBIAN_CA_BUNDLE).read_bytes()
    rootfs = rootfs_image()
    dockerfile = f"FROM {rootfs}\nCOPY ca-certificates.crt {DEBIAN_CA_BUNDLE}\n"
    dockerfile += f"ENV SSL_CERT_FILE={DEBIAN_CA_BUNDLE}\n"
    key = hashlib.sha256(dockerfile.encode() + bundle).hexdigest()[:16]
    tag = f"{LOCAL_REPOSITORY}/debian-python:{key}"
    if not image_exists(tag):
        context = {"Dockerfile": dockerfile.encode(), "ca-certificates.crt": bundle}
        docker("build", "--network=none", "--tag", tag, "-", stdin=tar_of(context), timeout=300)
    return tag


def tar_of(files: dict[str, bytes]) -> bytes:
    """A tar archive of these files (a build context for `docker build -`)."""
    archive = BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, BytesIO(data))
    return archive.getvalue()


def pinned_uv_version() -> str:
    """The uv version every Dockerfile's UV_IMAGE default names (they must agree)."""
    versions = {image_tag(build_args(path)["UV_IMAGE"]) for path in DOCKERFILES.values()}
    assert len(versions) == 1, f"the Dockerfiles pin different uv versions: {versions}"
    (version,) = versions
    assert version is not None
    return version


def uv_image() -> str:
    """A stand-in for ghcr.io/astral-sh/uv: only /uv, the pinned version of tools/bootstrap.sh."""
    version = pinned_uv_version()
    tag = f"{LOCAL_REPOSITORY}/uv:{version}"
    if image_exists(tag):
        return tag
    found = shutil.which("uv")
    assert found, "uv is not on PATH (tools/bootstrap.sh puts it there)"
    uv = Path(found).resolve()
    reported = subprocess.run(
        [str(uv), "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    assert reported[1] == version, f"{uv} is uv {reported[1]}, the Dockerfiles pin {version}"
    archive = BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(uv, arcname="uv")
    docker("import", "-", tag, stdin=archive.getvalue(), timeout=300)
    return tag


def local_build_args(component: str) -> dict[str, str]:
    images = {"base": base_image(), "uv": uv_image()}
    arguments = {name: images[kind] for name, kind in BASE_ARGUMENTS[component].items()}
    return arguments | OTHER_ARGUMENTS.get(component, {})


def steps_run(output: str) -> tuple[str, ...]:
    """The instructions the classic builder ran, from its output: every step except those it
    answered from its layer cache ("Using cache"), the FROM lines and the ARGs before the first
    FROM (steps that do no work)."""
    ran: list[str] = []
    seen_from = False
    for chunk in re.split(r"^Step \d+/\d+ : ", output, flags=re.MULTILINE)[1:]:
        instruction, _, result = chunk.partition("\n")
        if instruction.startswith("FROM "):
            seen_from = True
        elif seen_from and " ---> Using cache" not in result.splitlines():
            ran.append(instruction)
    return tuple(ran)


def snapshot_context(destination: Path) -> Path:
    """A copy of the build context: what .dockerignore lets in (its `!` rules), the Dockerfiles
    and .dockerignore itself, so that every build in a session sees one state of the checkout
    even while its files are being edited. Docker filters the copy by the same rules."""
    rules = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    allowed = [rule[1:].rstrip("/") for rule in rules if rule.startswith("!")]
    dockerfiles = [str(path.relative_to(REPO_ROOT)) for path in DOCKERFILES.values()]
    for relative in [*allowed, *dockerfiles, ".dockerignore"]:
        origin, target = REPO_ROOT / relative, destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, target)
    return destination


def build(component: str, context: Path, tag: str | None = None) -> BuiltImage:
    """Build one image from its Dockerfile in `context` (snapshot_context) on the local bases.
    RUN steps reach PyPI through the host's network (uv sync); the replaced image, if any, is
    removed so rebuilds after source changes do not pile up old environments."""
    arguments = local_build_args(component)
    dockerfile = context / DOCKERFILES[component].relative_to(REPO_ROOT)
    tag = tag or f"{TEST_REPOSITORY}/{component}:latest"
    previous = image_id(tag) if image_exists(tag) else None
    flags = [f"--build-arg={name}={value}" for name, value in arguments.items()]
    started = time.monotonic()
    done = docker(
        "build", "--network=host", "--force-rm", *flags, "--file", str(dockerfile),
        "--tag", tag, str(context), timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    seconds = time.monotonic() - started
    built = image_id(tag)
    if previous is not None and previous != built:
        docker("image", "rm", previous, timeout=300)
    ran = steps_run(done.stdout.decode(errors="replace"))
    return BuiltImage(component, tag, built, image_size(tag), seconds, ran)


@dataclass(frozen=True)
class Layer:
    """One layer of an image: its diff id (the digest of its uncompressed tar, so the same
    contents in any image) and the directory where Docker's overlay2 storage keeps its files."""

    diff_id: str
    directory: Path


class UnsupportedStorageError(RuntimeError):
    """The engine keeps layers with a storage driver other than overlay2 (its default)."""


def layers(tag: str) -> list[Layer]:
    """The image's layers, bottom first. Every layer, not the flattened filesystem: a file that
    a later layer deletes is still shipped in the earlier one."""
    info = json.loads(docker("image", "inspect", tag).stdout)[0]
    driver = info["GraphDriver"]
    if driver["Name"] != "overlay2":
        raise UnsupportedStorageError(f"Docker stores layers with {driver['Name']}, not overlay2")
    lower = driver["Data"].get("LowerDir")  # top first; absent for a one-layer image
    directories = [*reversed(lower.split(":") if lower else []), driver["Data"]["UpperDir"]]
    diff_ids: list[str] = info["RootFS"]["Layers"]
    assert len(directories) == len(diff_ids), (directories, diff_ids)
    return [Layer(d, Path(p)) for d, p in zip(diff_ids, directories, strict=True)]


def layer_files(layer: Layer) -> Iterator[tuple[str, bytes]]:
    """Every regular file the layer holds, by its path in the image, with its contents
    (whiteouts, links and directories are not files)."""
    for directory, _, names in os.walk(layer.directory):
        for name in names:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                yield "/" + str(path.relative_to(layer.directory)), path.read_bytes()
