"""The operator's connections to the API server stay few through a burst of work.

Binding a burst of sessions ends in a burst of Events (held while the bindings are written,
then posted together). kopf posted each object's Events from a worker of its own, over a
connection pool without a limit: a TLS connection per session, 726 for 3,000 sessions, with
512 KiB of buffers each (bench/pool_binding.py). Here 150 sessions bind at once.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s

from avatar_crds.kinds import TENANT
from avatar_crds.meta import GROUP, VERSION
from avatar_operator.handlers import EVENT_POSTERS
from avatar_operator.kube import CONNECTIONS
from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.pools import create_pool, ready_workers
from testbed.process import open_sockets
from testbed.sessions import Sessions
from testbed.wait import wait_for

SESSIONS = 150
WORKERS = 3
WATCHES_AND_LISTENERS = 12
"""kopf's watches (sessions, pods, nodes, tenants, pools), the liveness and metrics ports."""


def test_a_burst_of_bindings_and_their_events_opens_only_a_few_connections(
    operator: OperatorProcess,
    sessions: Sessions,
    api_client: k8s.ApiClient,
    namespace: str,
    gpu_nodes: GpuNodeFactory,
) -> None:
    assert operator.process is not None
    pid = operator.process.popen.pid
    gpu_nodes(WORKERS)
    slots = SESSIONS // WORKERS
    create_pool(api_client, namespace, slotsPerWorker=slots, minWorkers=WORKERS,
                maxWorkers=WORKERS)  # fmt: skip
    wait_for(lambda: len(ready_workers(api_client, namespace)) == WORKERS, timeout=60,
             description="every worker ready")  # fmt: skip
    sessions.create_tenant(max_concurrent=0)  # they queue until the plan is raised
    names = [sessions.create() for _ in range(SESSIONS)]
    for name in names:
        sessions.wait_phase(name, "queued")

    plan = {"maxConcurrentSessions": SESSIONS, "minutes": 1000}
    k8s.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, TENANT.plural, "acme", {"spec": {"plan": plan}}
    )
    core = k8s.CoreV1Api(api_client)
    most = 0

    def every_start_posted() -> bool:
        nonlocal most
        most = max(most, open_sockets(pid))
        events: Any = core.list_namespaced_event(namespace)
        started = {e.involved_object.name for e in events.items if e.reason == "Starting"}
        return started >= set(names)

    wait_for(every_start_posted, timeout=120, interval=0.05,
             description="a Starting Event for every session")  # fmt: skip
    most = max(most, open_sockets(pid))
    assert most <= CONNECTIONS + EVENT_POSTERS + WATCHES_AND_LISTENERS, most
