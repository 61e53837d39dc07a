"""The plugin ships as its own wheel, built from the workspace offline, and imports nothing it
does not declare (besides the LiveKit SDKs that livekit-agents itself requires, as every
upstream avatar plugin relies on)."""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata as metadata
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_FILES = {
    f"livekit/plugins/facecast/{name}"
    for name in ("__init__.py", "avatar.py", "errors.py", "log.py", "py.typed", "version.py")
}


def build_wheel(out_dir: Path) -> Path:
    uv = shutil.which("uv")
    assert uv is not None, "uv is not on PATH (tools/bootstrap.sh installs it)"
    subprocess.run(
        [uv, "build", "--package", "livekit-plugins-facecast", "--wheel", "--offline",
         "--out-dir", str(out_dir)],
        cwd=REPO_ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = out_dir.glob("livekit_plugins_facecast-*.whl")
    return wheel


def _names(requirements: list[str]) -> set[str]:
    return {
        metadata.distribution(Requirement(r).name).metadata["Name"].lower()
        for r in requirements
        if Requirement(r).marker is None or Requirement(r).marker.evaluate()  # type: ignore[union-attr]
    }


def _distribution_of(module: str) -> str:
    """The installed distribution a module comes from (by the files each one installs)."""
    parts = module.split(".")
    # `livekit` is a namespace shared by several distributions: look one level deeper.
    depth = 2 if parts[0] == "livekit" else 1
    path = "/".join(parts[:depth])
    for dist in metadata.distributions():
        for file in dist.files or ():
            if str(file).startswith((f"{path}/", f"{path}.py")):
                return str(dist.metadata["Name"]).lower()
    # A workspace member is installed editable (a .pth file, not its modules): by its name.
    with contextlib.suppress(metadata.PackageNotFoundError):
        return str(metadata.distribution(parts[0]).metadata["Name"]).lower()
    raise AssertionError(f"no installed distribution provides {module}")


def imported_modules(wheel: Path) -> set[str]:
    modules: set[str] = set()
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.endswith(".py"):
                continue
            for node in ast.walk(ast.parse(archive.read(name))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module)
    return modules


def test_the_wheel_builds_offline_with_its_package_and_declared_dependencies(
    tmp_path: Path,
) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        files = {n for n in archive.namelist() if ".dist-info/" not in n}
        (meta_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        meta = archive.read(meta_name).decode()
    # livekit/ and livekit/plugins/ stay namespace packages, shared with the other plugins.
    assert files == PACKAGE_FILES
    requires = sorted(
        line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: ")
    )
    assert requires == ["facecast", "livekit-agents>=1.2"]

    declared = _names(requires)
    allowed = declared | _names(metadata.requires("livekit-agents") or [])
    third_party = {
        m for m in imported_modules(wheel) if m.split(".")[0] not in sys.stdlib_module_names
    }
    used = {module: _distribution_of(module) for module in third_party}
    assert set(used.values()) <= allowed, used
    assert {"facecast", "livekit-agents"} <= set(used.values())
