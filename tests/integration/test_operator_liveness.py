"""The operator's liveness probe fails when a watch stops following the API server.

The real operator runs against the real API server through a proxy that can stall the
watch streams of one resource while everything else (its LISTs, its writes) still flows.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from avatar_crds.kinds import AVATAR_SESSION
from testbed.controlplane import ControlPlane
from testbed.operator_process import OperatorProcess
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.apiserver_proxy import StallingProxy, stalling_proxy

CHECK_INTERVAL = 0.5
STALE_AFTER = 3.0
KOPF_PROBE_CACHE = 10.0
"""kopf reuses a successful probe result this long (kopf/_core/engines/probing.py)."""


def health(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.fixture
def proxy(control_plane: ControlPlane) -> Iterator[StallingProxy]:
    with stalling_proxy(control_plane.kubeconfig) as running:
        yield running


@pytest.fixture
def proxied_operator(
    crds: None, proxy: StallingProxy, namespace: str, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[OperatorProcess]:  # fmt: skip
    env = {
        "FACECAST_WATCH_CHECK_INTERVAL_SECONDS": str(CHECK_INTERVAL),
        "FACECAST_WATCH_STALE_SECONDS": str(STALE_AFTER),
    }
    kubeconfig = proxy.kubeconfig(tmp_path / "proxied.kubeconfig")
    process = OperatorProcess(kubeconfig, namespace, tmp_path, env)
    process.start()
    yield process
    process.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"----- operator log (tail)\n{process.log_tail()}")


def test_liveness_fails_while_a_watch_is_stalled_and_recovers_after(
    proxied_operator: OperatorProcess, proxy: StallingProxy, sessions: Sessions
) -> None:
    url = proxied_operator.health_url
    sessions.create_tenant()
    first = sessions.create()
    sessions.wait_phase(first, "queued")  # no WorkerPool: it waits, watched

    # Healthy: changes keep coming and the watches keep up, for longer than the deadline
    # plus kopf's cache of a good answer.
    second = sessions.create()
    sessions.wait_phase(second, "queued")
    until = time.monotonic() + STALE_AFTER + KOPF_PROBE_CACHE + 2 * CHECK_INTERVAL
    while time.monotonic() < until:
        assert health(url) == 200
        time.sleep(CHECK_INTERVAL)  # a sampling period over a window, not a wait

    proxy.stall(AVATAR_SESSION.plural)
    stalled_at = time.monotonic()
    unseen = sessions.create()
    wait_for(
        lambda: health(url) != 200,
        timeout=STALE_AFTER + KOPF_PROBE_CACHE + 15,
        description="the liveness probe to fail while the session watch is stalled",
    )
    print(f"\nliveness failed {time.monotonic() - stalled_at:.1f} s after the watch stalled")
    unseen_status = sessions.get(unseen)
    assert unseen_status is not None
    assert unseen_status.status.phase is None  # the deaf operator never saw it

    proxy.resume()
    wait_for(lambda: health(url) == 200, timeout=30, description="liveness to recover")
    sessions.wait_phase(unseen, "queued")
