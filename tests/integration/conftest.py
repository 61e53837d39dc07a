"""Fixtures for cross-component tests: CRDs installed in the real control plane, the real
operator as a process, and helpers to create and watch sessions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from testbed.controlplane import ControlPlane
from testbed.operator_process import OperatorProcess
from testbed.pools import one_worker_per_session
from testbed.sessions import Sessions
from testbed.webhook_receiver import WebhookReceiver, running_webhook_receiver


@pytest.fixture
def sessions(crds: None, api_client: k8s.ApiClient, namespace: str) -> Sessions:
    return Sessions(api_client, namespace)


@pytest.fixture
def worker_per_session(crds: None, api_client: k8s.ApiClient, namespace: str) -> None:
    """Sessions run on pool workers only: this pool gives each one a cold worker of its own
    (`testbed.pools.one_worker_per_session`). Modules that test something else than pools
    use it, so each session has a worker pod to look at, as before pools."""
    one_worker_per_session(api_client, namespace)


@pytest.fixture
def operator_env() -> dict[str, str]:
    """Override in a test module (or parametrize) to change the operator's settings."""
    return {}


@pytest.fixture
def operator(
    crds: None,
    control_plane: ControlPlane,
    namespace: str,
    operator_env: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(control_plane.kubeconfig, namespace, tmp_path, operator_env)
    process.start()
    yield process
    process.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"----- operator log (tail)\n{process.log_tail()}")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A tenant's webhook endpoint; it refuses the first delivery, so retries are on the way."""
    with running_webhook_receiver(refuse_first=True) as server:
        yield server
