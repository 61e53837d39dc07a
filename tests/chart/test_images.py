"""The three Dockerfiles and kind-config.yaml, read for their invariants; each builder stage's
install steps (its COPYs and `uv sync` commands, exactly as written) are replayed with uv against
the lock, offline, to show that they install the member with exactly the locked versions.
tests/images builds the images for real."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from avatar_operator.resources import WORKER_UID
from testbed.binaries import REPO_ROOT
from testbed.helm import Helm
from testbed.images import BASE_ARGUMENTS, OTHER_ARGUMENTS
from testbed.kwok import GPU_PRESENT_LABEL, GPU_TAINT
from tests.chart.dockerfiles import DOCKERFILES, Instruction, Stage, build_args, image_tag, parse
from tests.chart.rendering import API, OPERATOR, container, one, render

COMPONENTS = list(DOCKERFILES)
MEMBERS = {"operator": "operator", "api": "api_shim", "worker": "worker_image"}
MODULES = {"operator": "avatar_operator", "api": "api_shim", "worker": "avatar_worker"}
# Each image carries its own member's dependencies and nothing heavy it does not use.
ABSENT = {
    "operator": {"torch", "fastapi", "uvicorn", "livekit", "onnxruntime", "numpy"},
    "api": {"torch", "kopf", "livekit"},
    "worker": {"kopf", "fastapi", "uvicorn", "onnxruntime"},
}
DEV_TOOLS = {"pytest", "ruff", "mypy", "schemathesis", "livekit-agents"}


@pytest.fixture(params=COMPONENTS)
def component(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def stages(component: str) -> list[Stage]:
    return parse(DOCKERFILES[component])


def member_name(component: str) -> str:
    pyproject = tomllib.loads((REPO_ROOT / MEMBERS[component] / "pyproject.toml").read_text())
    name: str = pyproject["project"]["name"]
    return name


def lineage(component: str, alias: str = "builder") -> list[Stage]:
    """The stage named `alias` and the stages it is built FROM, oldest first (the worker's
    builder starts from its `dependencies` stage)."""
    by_alias = {s.alias: s for s in stages(component) if s.alias}
    chain = [by_alias[alias]]
    while chain[0].base in by_alias:
        chain.insert(0, by_alias[chain[0].base])
    return chain


def uv_sync_of(run: Instruction) -> list[str] | None:
    """The `uv sync` command a RUN starts with (what follows its first `&&` is not uv's)."""
    command = run.rest.partition("&&")[0]
    return shlex.split(command) if command.startswith("uv sync") else None


def uv_syncs(component: str) -> list[list[str]]:
    runs = [i for stage in lineage(component) for i in stage.all("RUN")]
    return [command for run in runs if (command := uv_sync_of(run)) is not None]


def test_multi_stage_with_pinned_bases(component: str) -> None:
    parsed = stages(component)
    assert len(parsed) >= 3, "uv, builder and runtime stages"
    aliases = {s.alias for s in parsed if s.alias}
    for stage in parsed:
        if stage.base in aliases:
            continue
        tag = image_tag(stage.base)
        assert tag, f"{stage.base} is not pinned by tag"
        assert tag != "latest", f"{stage.base} is not pinned by tag"
        assert re.search(r"\d", tag), f"{stage.base}: a moving tag"
    runtime = parsed[-1]
    if component == "worker":
        assert runtime.base.startswith("nvidia/cuda:")
        assert "-runtime-" in runtime.base
    else:
        assert runtime.base.startswith("python:3.11.")
        assert "slim" in runtime.base


def test_bases_are_build_arguments(component: str) -> None:
    """Every base image is a build argument (its default the public image, checked above), so
    tests/images can build on a base made locally and users keep the public one; every argument
    the tests pass is one the Dockerfile declares."""
    text = DOCKERFILES[component].read_text()
    aliases = {s.alias for s in stages(component) if s.alias}
    declared = build_args(DOCKERFILES[component])
    for reference in re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE):
        if reference in aliases:
            continue
        match = re.fullmatch(r"\$\{(\w+)\}", reference)
        assert match, f"FROM {reference}: not a build argument"
        assert match.group(1) in declared
    stage_args = {i.rest.partition("=")[0] for s in stages(component) for i in s.all("ARG")}
    passed = BASE_ARGUMENTS[component].keys() | OTHER_ARGUMENTS.get(component, {}).keys()
    assert passed <= declared.keys() | stage_args
    assert BASE_ARGUMENTS[component].keys() <= declared.keys()


def test_the_classic_builder_can_build_it(component: str) -> None:
    """No BuildKit-only syntax: the suite builds with the classic builder (no buildx here)."""
    text = DOCKERFILES[component].read_text()
    syntax = re.search(r"^#\s*syntax=.*", text, flags=re.MULTILINE | re.IGNORECASE)
    assert syntax is None, f"{syntax.group()}: a frontend image BuildKit pulls"
    for stage in stages(component):
        for instruction in stage.instructions:
            assert not any(f.startswith("--mount") for f in instruction.flags), instruction


def test_installs_only_the_locked_member(component: str) -> None:
    syncs = uv_syncs(component)
    assert syncs, "the builder installs with uv sync"
    for command in syncs:
        assert "--frozen" in command, command
        assert "--no-dev" in command, command
        assert command[command.index("--package") + 1] == member_name(component)
        assert "--no-editable" in command, command
    for stage in stages(component):
        for run in stage.all("RUN"):
            assert "pip install" not in run.rest, "everything comes from the lock via uv"


def test_runtime_stage_is_small_and_non_root(component: str, helm: Helm) -> None:
    runtime = stages(component)[-1]
    copies = [i for i in runtime.all("COPY")]
    build_stages = {f"--from={alias}" for alias in ("builder", "dependencies")}
    assert all(set(i.flags) & build_stages for i in copies), copies
    sources = {shlex.split(i.rest)[0] for i in copies}
    # The environment (the worker's in two parts: third-party, then the workspace's own files).
    assert sources <= {"/opt/venv", "/opt/python", "/opt/workspace/"}, "only the environment"
    assert "uv" not in " ".join(i.rest for i in runtime.instructions if i.keyword == "RUN")

    user = runtime.user()
    assert user is not None
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), user
    assert gid.isdigit(), user
    assert int(uid) != 0
    assert int(gid) != 0
    assert runtime.exec_form("ENTRYPOINT") == ["python", "-m", MODULES[component]]
    if component == "worker":
        # The operator runs worker pods with this uid; the image's files must agree.
        assert int(uid) == WORKER_UID
        return
    # The chart runs the container as this user with the image's own entry point.
    docs = render(helm)
    deployment = one(docs, "Deployment", OPERATOR if component == "operator" else API)
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)
    assert container(deployment)["command"] == runtime.exec_form("ENTRYPOINT")


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "**", "everything is excluded unless listed"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for component in COMPONENTS:
        for stage in stages(component):
            for copy in stage.all("COPY"):
                if copy.flags:
                    continue
                for source in shlex.split(copy.rest)[:-1]:
                    assert source.rstrip("/") in allowed, f"{source} is not in the context"
                    assert (REPO_ROOT / source).exists(), source


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    return {normal(p["name"]): p["version"] for p in lock["package"] if "version" in p}


def replay_builder(component: str, workdir: Path) -> Path:
    """Run the builder stage's COPY and `uv sync` steps here; returns the environment."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (tools/test.sh puts it there)")
    context = workdir / "src"
    context.mkdir()
    venv = workdir / "venv"
    env = {
        **os.environ,
        **{k: v for stage in lineage(component) for k, v in stage.env().items()},
        # Where this machine differs from the image build: the paths, an interpreter that is
        # already here, no network (the cache holds what the workspace lock resolved).
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON": sys.executable,
        "UV_PYTHON_PREFERENCE": "only-system",
        "UV_OFFLINE": "1",
        "UV_COMPILE_BYTECODE": "0",
        "UV_LINK_MODE": "hardlink",
        "UV_NO_PROGRESS": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    env.pop("UV_NO_CACHE", None)  # offline, the cache is where the locked wheels are
    for instruction in [i for stage in lineage(component) for i in stage.instructions]:
        if instruction.keyword == "COPY" and not instruction.flags:
            *sources, destination = shlex.split(instruction.rest)
            for source in sources:
                origin = REPO_ROOT / source
                target = context / destination
                if origin.is_dir():
                    shutil.copytree(
                        origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                    )
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
        elif instruction.keyword == "RUN" and (sync := uv_sync_of(instruction)) is not None:
            command = [uv, *sync[1:]]
            done = subprocess.run(
                command, cwd=context, env=env, capture_output=True, text=True, timeout=600,
                check=False,
            )  # fmt: skip
            assert done.returncode == 0, f"{instruction.rest}\n{done.stdout}\n{done.stderr}"
    return venv


def test_builder_installs_exactly_the_locked_versions(component: str, tmp_path: Path) -> None:
    venv = replay_builder(component, tmp_path)
    python = venv / "bin" / "python"
    listing = subprocess.run(
        [str(python), "-c",
         "import importlib.metadata as m, json;"
         "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    installed: dict[str, Any] = {normal(k): v for k, v in json.loads(listing.stdout).items()}
    locked = locked_versions()
    assert normal(member_name(component)) in installed
    for name, version in installed.items():
        assert name in locked, f"{name} is not in uv.lock"
        assert version == locked[name], f"{name} {version}, locked {locked[name]}"
    assert not installed.keys() & (ABSENT[component] | DEV_TOOLS)
    # The entry module imports from the installed (not editable) packages alone.
    imported = subprocess.run(
        [str(python), "-I", "-c", f"import {MODULES[component]}.__main__ as m; print(m.__file__)"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip().startswith(str(venv))


def test_kind_config_matches_the_chart_and_the_readme(helm: Helm) -> None:
    config = yaml.safe_load((REPO_ROOT / "kind-config.yaml").read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [node["role"] for node in config["nodes"]]
    assert roles == ["control-plane", "worker"]
    gpu_node = config["nodes"][1]
    # Labelled and tainted as the test environment's kwok GPU nodes and real GPU pools are,
    # which the chart's default worker placement selects and tolerates.
    assert gpu_node["labels"] == {GPU_PRESENT_LABEL: "true"}
    (patch,) = [yaml.safe_load(p) for p in gpu_node["kubeadmConfigPatches"]]
    assert patch["kind"] == "JoinConfiguration"
    assert patch["nodeRegistration"]["taints"] == [GPU_TAINT]
    values = yaml.safe_load((REPO_ROOT / "charts/facecast/values.yaml").read_text())
    assert values["worker"]["nodeSelector"].items() <= gpu_node["labels"].items()
    (toleration,) = values["worker"]["tolerations"]
    assert toleration["key"] == GPU_TAINT["key"]
    assert toleration["effect"] == GPU_TAINT["effect"]

    # The port mapping carries the API's node port from values-kind.yaml, on the host port
    # the README's curl commands use.
    (mapping,) = config["nodes"][0]["extraPortMappings"]
    kind_values = yaml.safe_load((REPO_ROOT / "charts/facecast/values-kind.yaml").read_text())
    assert mapping["containerPort"] == kind_values["api"]["service"]["nodePort"]
    readme = (REPO_ROOT / "README.md").read_text()
    kind_section = readme[readme.index("## Try it on kind") :]
    assert f"http://127.0.0.1:{mapping['hostPort']}" in kind_section
    assert "kind create cluster --config kind-config.yaml" in kind_section
    for image in ("operator", "api", "worker"):
        assert f"facecast/{image}:dev" in kind_section
        assert kind_values[image]["image"]["repository"] == f"facecast/{image}"
