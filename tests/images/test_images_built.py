"""The three images built for real from their Dockerfiles (testbed/images.py: the real
Docker engine, the classic builder, a Debian base made here) and checked from the outside:
cached, non-root, nothing secret inside, the locked environment, an entry point that starts.

Slow when cold (the builds download the members' wheels from PyPI), hence the `images` marker;
tools/test.sh runs it like every other test."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from api_shim.auth import KEY_PATTERN, generate_api_key
from avatar_operator.resources import WORKER_UID
from testbed import images
from testbed.images import BuiltImage, docker
from testbed.wait import wait_for
from tests.chart.test_images import ABSENT, DEV_TOOLS, MODULES, locked_versions, normal

pytestmark = [pytest.mark.images, pytest.mark.timeout(2 * images.BUILD_TIMEOUT)]

# An API key as api_shim.auth makes them (its pattern, unanchored), a PEM private key with its
# body, and files that hold credentials or caches by convention.
API_KEY = re.compile(
    rb"(?<![A-Za-z0-9_-])" + KEY_PATTERN.pattern.strip("^$").encode() + rb"(?![A-Za-z0-9_-])"
)
PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[A-Za-z0-9+/=\s]{40,}-----END")
SECRET_PATH = re.compile(
    r"/(\.env(\.[^/]*)?|\.netrc|\.pypirc|\.git-credentials|id_rsa|id_ecdsa|id_ed25519)$"
    r"|/\.cache/|/\.docker/config\.json$|^/src/"  # ^/src/: the builder stage's context
)


# A layer once found clean is clean (its diff id names its contents) until the scan changes.
SCAN_KEY = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
CLEAN_LAYERS = images.CACHE / "clean-layers"


@functools.cache
def base_files(base: str) -> dict[str, bytes]:
    """The base image's files, by path, as digests of their contents."""
    return {
        path: hashlib.sha256(data).digest()
        for layer in images.layers(base)
        for path, data in images.layer_files(layer)
    }


def layer_secrets(layer: images.Layer, unchanged: dict[str, bytes]) -> list[str]:
    """What looks like a credential in one layer, by path or by contents; a file the same as
    the base's at its path is the base's."""
    clean = CLEAN_LAYERS / f"{layer.diff_id.removeprefix('sha256:')}-{SCAN_KEY}"
    if clean.exists():
        return []
    found: list[str] = []
    for path, data in images.layer_files(layer):
        if unchanged.get(path) == hashlib.sha256(data).digest():
            continue
        if SECRET_PATH.search(path):
            found.append(f"{path} (a credential or cache file)")
        for name, pattern in (("an API key", API_KEY), ("a private key", PRIVATE_KEY)):
            if pattern.search(data):
                found.append(f"{path} (holds {name})")
    if not found:
        clean.parent.mkdir(parents=True, exist_ok=True)
        clean.touch()
    return found


def secrets_in(tag: str) -> list[str]:
    """What looks like a credential in the layers the image adds to its base (the local Debian
    base for all three), or in its history (build arguments and RUN lines are recorded there).
    Each layer is read, not the flattened filesystem, since a file deleted by a later layer
    still ships in its own; a layer already found clean is not read again, so a source change
    rescans only the source layers, not the worker's gigabytes of torch. The base's own files
    are not ours to judge: Debian's libgnutls, for one, carries the private key of its
    self-test."""
    base = images.base_image()
    base_layers = {layer.diff_id for layer in images.layers(base)}
    unchanged = base_files(base)
    found: list[str] = []
    for layer in images.layers(tag):
        if layer.diff_id not in base_layers:
            found += layer_secrets(layer, unchanged)
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout
    for name, pattern in (("an API key", API_KEY), ("a private key", PRIVATE_KEY)):
        if pattern.search(history):
            found.append(f"the image's history (holds {name})")
    return found


def run(tag: str, *args: str, entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
    """A container of the image with no network, removed afterwards."""
    override = [f"--entrypoint={entrypoint}"] if entrypoint else []
    return subprocess.run(
        ["docker", "run", "--rm", "--network=none", *override, tag, *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_warm_rebuild_runs_no_step(
    image: BuiltImage, builds: dict[str, list[BuiltImage]], build_context: Path
) -> None:
    """The dependency layer is keyed by the lock, the source layers by the sources: with
    neither changed, Docker's layer cache answers every step and the image is the same."""
    again = images.build(image.component, build_context)
    builds[image.component].append(again)
    assert again.steps_run == (), "not answered from the cache"
    assert again.image_id == image.image_id


def test_a_source_change_reinstalls_only_the_workspace(
    builds: dict[str, list[BuiltImage]], build_context: Path, tmp_path: Path
) -> None:
    """Changed sources (the shared avatar_crds here) rebuild only what follows their COPY:
    the third-party dependencies stay in their cached layer, keyed by the lock."""
    if "operator" not in builds:
        builds["operator"] = [images.build("operator", build_context)]
    context = shutil.copytree(build_context, tmp_path / "context")
    changed = context / "crds" / "avatar_crds" / "__init__.py"
    # A change no earlier run made, or Docker's cache would have its layers too.
    marker = uuid.uuid4().hex
    changed.write_text(f"{changed.read_text()}# changed: {marker}\n")
    tag = f"{images.TEST_REPOSITORY}/changed:{marker[:8]}"
    try:
        rebuilt = images.build("operator", context, tag)
    finally:
        docker("image", "rm", "--force", tag)
    assert rebuilt.steps_run[0] == "COPY crds/avatar_crds crds/avatar_crds", rebuilt.steps_run
    assert not [step for step in rebuilt.steps_run if "--no-install-workspace" in step]


def test_runs_as_the_unprivileged_user(image: BuiltImage) -> None:
    config = json.loads(
        docker("image", "inspect", "--format", "{{json .Config}}", image.tag).stdout
    )
    assert config["User"] == f"{WORKER_UID}:{WORKER_UID}"
    ran = run(image.tag, "-u", entrypoint="id")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == str(WORKER_UID)
    # Its files are not writable by that user: the environment is root's, read-only to it.
    ran = run(image.tag, "-c", "import os; print(os.access('/opt/venv/bin', os.W_OK))",
              entrypoint="python")  # fmt: skip
    assert ran.stdout.strip() == "False", ran.stderr


def test_holds_exactly_the_locked_member(image: BuiltImage) -> None:
    listing = run(
        image.tag, "-c",
        "import importlib.metadata as m, json, sys;"
        "print(json.dumps({'python': list(sys.version_info[:2]),"
        " 'installed': {d.metadata['Name']: d.version for d in m.distributions()}}))",
        entrypoint="python",
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    found: dict[str, Any] = json.loads(listing.stdout)
    assert found["python"] == [3, 11]
    installed = {normal(name): version for name, version in found["installed"].items()}
    locked = locked_versions()
    for name, version in installed.items():
        assert locked.get(name) == version, f"{name} {version}, locked {locked.get(name)}"
    assert not installed.keys() & (ABSENT[image.component] | DEV_TOOLS)
    assert "avatar-crds" in installed


def test_entry_point_starts(image: BuiltImage, tmp_path: Path) -> None:
    entrypoint = docker("image", "inspect", "--format", "{{json .Config.Entrypoint}}", image.tag)
    assert json.loads(entrypoint.stdout) == ["python", "-m", MODULES[image.component]]
    if image.component == "api":
        _api_serves(image.tag, tmp_path)
        return
    ran = run(image.tag, "--help")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("usage: "), ran.stdout
    if image.component == "operator":
        assert "--peering" in ran.stdout
    else:
        assert "--session-file" in ran.stdout


def _api_serves(tag: str, workdir: Path) -> None:
    """The API has no --help: it starts for real (its kubeconfig names a server that is not
    there, which only /readyz asks) and answers /healthz inside the container."""
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "none", "user": {}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
    }))  # fmt: skip
    kubeconfig.chmod(0o644)
    name = f"facecast-api-{uuid.uuid4().hex[:8]}"
    docker(
        "run", "--detach", "--network=none", f"--name={name}",
        f"--volume={kubeconfig}:/etc/facecast/kubeconfig:ro",
        "--env=FACECAST_KUBECONFIG=/etc/facecast/kubeconfig", "--env=FACECAST_PORT=8080", tag,
    )  # fmt: skip
    try:
        probe = (
            "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/healthz').status)"
        )

        def healthy() -> bool:
            state = docker("inspect", "--format", "{{.State.Running}}", name).stdout
            assert state.strip() == b"true", docker("logs", name).stderr.decode()[-2000:]
            return docker("exec", name, "python", "-c", probe).stdout.strip() == b"200"

        wait_for(healthy, timeout=60, interval=0.5, description="the API's /healthz",
                 fatal=(AssertionError,))  # fmt: skip
        logs = docker("logs", name)
        assert b'"api_starting"' in logs.stdout + logs.stderr
    finally:
        docker("rm", "--force", name)


def test_no_secret_inside(image: BuiltImage) -> None:
    assert secrets_in(image.tag) == []


def test_the_secret_scan_finds_a_planted_key(
    builds: dict[str, list[BuiltImage]], build_context: Path
) -> None:
    """The scan above, on an image with a key, an API key and a .env planted in a layer on top
    of the operator's, the key then deleted by the next layer (it still ships in the first):
    all three are found (so an empty result above means something)."""
    if "operator" not in builds:
        builds["operator"] = [images.build("operator", build_context)]
    base = builds["operator"][0].tag
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    api_key = generate_api_key().encode()
    files = {
        "Dockerfile": (
            f"FROM {base}\nCOPY leak /opt/leak\nUSER 0\nRUN rm /opt/leak/tls.key\n".encode()
        ),
        "leak/tls.key": key,
        "leak/settings.py": b"KEY = '" + api_key + b"'\n",
        "leak/.env": b"COLOR=blue\n",
    }
    tag = f"{images.TEST_REPOSITORY}/planted:{uuid.uuid4().hex[:8]}"
    docker("build", "--network=none", "--tag", tag, "-", stdin=images.tar_of(files), timeout=300)
    try:
        found = secrets_in(tag)
    finally:
        docker("image", "rm", "--force", tag)
    assert sorted(found) == [
        "/opt/leak/.env (a credential or cache file)",
        "/opt/leak/settings.py (holds an API key)",
        "/opt/leak/tls.key (holds a private key)",
    ]
