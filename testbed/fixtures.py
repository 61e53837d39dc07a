"""Fixtures that run real upstream components (ARCHITECTURE.md, "How it is tested"),
registered repo-wide by the root conftest.py.

Stable fixture names (other tests rely on them):

- ``testenv_bin`` (session) -> ``Path``: the dir holding etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler, kubectl, kwok, helm, livekit-server.
  From ``$FACECAST_TESTENV_BIN``, else by running ``tools/testenv/build.sh``.
- ``control_plane`` (session) -> ``ControlPlane``: etcd, kube-apiserver
  (Node,RBAC), kube-controller-manager, kube-scheduler and kwok on 127.0.0.1.
  ``.kubeconfig`` is an admin (system:masters) kubeconfig path, ``.server`` the
  apiserver URL, ``.api_client()`` a new admin ``kubernetes.client.ApiClient``,
  ``.kubeconfig_for(name, user, groups)`` a kubeconfig for another identity,
  ``.kubeconfig_for_service_account(namespace, name)`` one holding a ServiceAccount token.
- ``crds`` (session): Facecast's generated CRDs installed and Established.
- ``kubeconfig`` (session) -> ``Path``: ``control_plane.kubeconfig``.
- ``api_client`` (session) -> ``kubernetes.client.ApiClient`` (admin).
- ``namespace`` (function) -> ``str``: a fresh namespace, deleted afterwards.
- ``gpu_nodes`` (function) -> ``GpuNodeFactory``: ``gpu_nodes(count, gpus=1)``
  creates Ready fake GPU nodes (annotation ``kwok.x-k8s.io/node=fake``, labels
  ``nvidia.com/gpu.present=true`` and ``type=kwok``, taint
  ``nvidia.com/gpu=present:NoSchedule``, allocatable ``nvidia.com/gpu``) and
  returns their names; they are deleted after the test.
- ``helm`` (session) -> ``Helm``: ``helm.run("lint", chart)``; use
  ``helm.with_kubeconfig(kubeconfig)`` for commands that reach the cluster.
- ``livekit_server`` (session) -> ``LiveKitServer``: ``.url``
  (``ws://127.0.0.1:PORT``), ``.http_url``, ``.api_key``, ``.api_secret``.
- ``local_stack`` (session) -> ``tools.localstack.stack.Stack``: the whole local stack (a control
  plane and livekit-server of its own, the local GPU node, the operator, the API, the demo
  tenant, key and avatar), started once for every end-to-end test that needs it (about a minute).

When a test that uses ``control_plane`` or ``livekit_server`` fails, the last
lines of every component's log are attached to its report. Each test item gets
``rep_setup``/``rep_call``/``rep_teardown`` attributes holding its reports, so a
fixture can check ``request.node.rep_call.failed`` in its teardown.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kubernetes import client as k8s

from testbed.binaries import testenv_bin_dir
from testbed.controlplane import ControlPlane, running_control_plane
from testbed.crds import install_crds
from testbed.helm import Helm
from testbed.kwok import GpuNodeFactory, create_gpu_nodes, delete_nodes
from testbed.livekit_server import LiveKitServer, running_livekit_server

if TYPE_CHECKING:
    from tools.localstack.stack import Stack


@pytest.fixture(scope="session")
def testenv_bin() -> Path:
    return testenv_bin_dir()


@pytest.fixture(scope="session")
def control_plane(
    testenv_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    with running_control_plane(testenv_bin, tmp_path_factory.mktemp("controlplane")) as plane:
        yield plane


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane, testenv_bin: Path) -> None:
    """Facecast's generated CRDs, installed and Established in the control plane."""
    install_crds(testenv_bin / "kubectl", control_plane.kubeconfig)


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    with control_plane.api_client() as api:
        yield api


@pytest.fixture
def namespace(control_plane: ControlPlane, api_client: k8s.ApiClient) -> Iterator[str]:
    control_plane.check_alive()
    name = f"test-{uuid.uuid4().hex[:10]}"
    core = k8s.CoreV1Api(api_client)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    # Not waited on: the namespace controller finishes the job in the background.
    core.delete_namespace(name)


@pytest.fixture
def gpu_nodes(control_plane: ControlPlane, api_client: k8s.ApiClient) -> Iterator[GpuNodeFactory]:
    created: list[str] = []

    def create(count: int = 1, gpus: int = 1) -> list[str]:
        control_plane.check_alive()
        names = create_gpu_nodes(api_client, count, gpus=gpus)
        created.extend(names)
        return names

    yield create
    delete_nodes(api_client, created)


@pytest.fixture(scope="session")
def helm(testenv_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(testenv_bin / "helm", tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def livekit_server(
    testenv_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveKitServer]:
    with running_livekit_server(testenv_bin, tmp_path_factory.mktemp("livekit")) as server:
        yield server


@pytest.fixture(scope="session")
def local_stack(testenv_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Imported here: tools.localstack is built on testbed, not the other way round.
    from tools.localstack.stack import running_stack

    with running_stack(testenv_bin, tmp_path_factory.mktemp("local-stack")) as stack:
        yield stack


def _component_logs(item: pytest.Item) -> str:
    funcargs = getattr(item, "funcargs", {})
    parts = []
    plane = funcargs.get("control_plane")
    if isinstance(plane, ControlPlane):
        parts.append(plane.log_tails())
    server = funcargs.get("livekit_server")
    if isinstance(server, LiveKitServer):
        parts.append(f"----- livekit-server {server.process.log_path}\n{server.log_tail()}")
    return "\n".join(parts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # Lets fixtures see in teardown whether the test failed (request.node.rep_call).
    setattr(item, f"rep_{report.when}", report)
    if report.failed:
        logs = _component_logs(item)
        if logs:
            report.sections.append(("testenv component logs (tails)", logs))
    return report
