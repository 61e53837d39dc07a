"""Binding sessions to warm pool workers on the real control plane, with kwok GPU nodes.

A WorkerPool of `--workers` workers x `--slots` slots (one GPU each) is brought up and ready,
and `--sessions` sessions are created for a tenant whose plan allows none at once: they queue.
Then the tenant's plan is raised, and the operator binds every session to a free slot (its
status names the worker pod and slot): the binding timed on its own, not the clients' create
rate nor the workers' start. Reports:

- sessions bound per second, first binding to last, against the API server's own rate for the
  same number of plain status patches (same concurrency, same run, a namespace the operator
  does not watch);
- the API server requests per session while binding (its own `apiserver_request_total`, by
  verb and resource), the operator's RSS and CPU;
- the CPU one plain patch and one binding cost each process (API server, etcd, the operator,
  this bench's clients and watch): the rates swing with this machine's load from run to run,
  what each binding costs, and who pays it, much less;
- with `--chaos`: `--queued` more sessions than slots wait; the operator is killed (SIGKILL)
  and restarted; then as many bound sessions are deleted as are queued. Checked: no session
  lost, none bound twice, no slot leaked, the queued ones bound in FIFO order; then the pool is
  scaled down while sessions hold its workers: none of them is interrupted.

    uv run --frozen --no-sync python bench/pool_binding.py                 # 1,000 onto 125 x 8
    uv run --frozen --no-sync python bench/pool_binding.py --chaos --queued 200
    uv run --frozen --no-sync python bench/pool_binding.py --sessions 10000 --workers 1000 \\
        --slots 10                                                         # scale
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatar_crds import contract
from avatar_crds.kinds import AVATAR_SESSION, TENANT, WORKER_POOL
from avatar_crds.meta import API_VERSION, GROUP, VERSION
from testbed.binaries import testenv_bin_dir
from testbed.controlplane import running_control_plane
from testbed.crds import install_crds, wait_until_controllers_watch
from testbed.kwok import create_gpu_nodes
from testbed.metrics import samples
from testbed.operator_process import OperatorProcess
from testbed.process import cpu_seconds, rss_mib
from testbed.sessions import Sessions
from testbed.wait import wait_for

NAMESPACE = "bench"
CLIENT_THREADS = 16
RAW_NAMESPACE = "bench-raw"
POOL = "lite"
LIVE = ("starting", "running", "ending")


def pool_body(workers: int, slots: int) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": WORKER_POOL.kind,
        "metadata": {"name": POOL},
        "spec": {
            "qualities": ["mock"],
            "worker": {"image": "facecast/worker:bench", "gpus": 1},
            "slotsPerWorker": slots,
            "minWorkers": workers,
            "maxWorkers": workers,
            "buffer": 0,
        },
    }


class Bindings:
    """Every session's binding and phase as a watch shows them, with when each was first bound."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.custom = k8s.CustomObjectsApi(api)
        self.bound_at: dict[str, float] = {}
        self.binding: dict[str, tuple[str, int]] = {}
        self.started_at: dict[str, str] = {}
        """`status.startingAt`: when the operator decided the binding (RFC 3339, UTC)."""
        self.created_at: dict[str, str] = {}
        """`metadata.creationTimestamp` (whole seconds): FIFO is by it, then by name."""
        self.phase: dict[str, str] = {}
        self.version: str | None = None
        """The resourceVersion seen last: each watch request goes on from it."""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def _follow(self) -> None:
        stream = watch.Watch()
        while not self.stop.is_set():
            try:
                self._follow_from(stream)
            except k8s.ApiException as error:
                # A loaded API server's watch cache can answer 504 "Too large resource
                # version" (or 410 Gone) to a resumed watch: list afresh and go on.
                print(f"bench watch restarted after {error.status} {error.reason}", flush=True)
                stream = watch.Watch()
                self.version = None

    def _follow_from(self, stream: watch.Watch) -> None:
        # Each request ends after 2 s (to see `stop`) and the next goes on from the last
        # version seen: one without a version replays every session as ADDED, which at 1,000
        # sessions kept the API server 20 % busy, and at 10,000 never caught up. The events
        # are parsed once, as plain JSON (the client's default parses each object three times).
        resume = {"resource_version": self.version} if self.version else {}
        for event in stream.stream(
            self.custom.list_namespaced_custom_object,
            GROUP, VERSION, NAMESPACE, AVATAR_SESSION.plural,
            timeout_seconds=2, deserialize=False, **resume,
        ):  # fmt: skip
            body = event["object"]
            self.version = body["metadata"]["resourceVersion"]
            name = body["metadata"]["name"]
            status = body.get("status") or {}
            self.phase[name] = status.get("phase") or "created"
            self.created_at[name] = body["metadata"]["creationTimestamp"]
            if event["type"] == "DELETED":
                self.phase[name] = "deleted"
            binding = status.get("binding")
            if binding:
                self.bound_at.setdefault(name, time.monotonic())
                self.binding[name] = (binding["pod"], binding["slot"])
                self.started_at[name] = status.get("startingAt") or ""

    def live_slots(self) -> dict[tuple[str, int], list[str]]:
        held: dict[tuple[str, int], list[str]] = {}
        for name, slot in self.binding.items():
            if self.phase.get(name) in LIVE:
                held.setdefault(slot, []).append(name)
        return held


def apiserver_requests(api: k8s.ApiClient) -> Counter[str]:
    """The requests the API server has served so far (its own `apiserver_request_total`), by
    verb and resource."""
    pool: Any = api.rest_client.pool_manager  # the admin client's, with its certificate
    text = pool.request("GET", f"{api.configuration.host}/metrics").data.decode()
    counts: Counter[str] = Counter()
    for labels, value in samples(text, "apiserver_request_total"):
        kind = "/".join(filter(None, (labels.get("resource"), labels.get("subresource"))))
        counts[f"{labels.get('verb')} {kind}"] += int(value)
    return counts


class CpuMeter:
    """CPU seconds used by each control-plane component, the operator and this bench (its
    clients and watch) between two readings: what one binding costs the machine, by who
    pays it, which a loaded machine's rates alone do not tell."""

    def __init__(self, plane: Any) -> None:
        self.plane = plane
        self.operator_pid: int | None = None

    def read(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for process in self.plane.processes:
            used[process.name] = cpu_seconds(process.popen.pid)
        if self.operator_pid is not None:
            used["operator"] = cpu_seconds(self.operator_pid)
        used["bench"] = cpu_seconds(os.getpid())
        return used

    @staticmethod
    def per_operation(before: dict[str, float], after: dict[str, float], count: int) -> str:
        spent = {name: (after[name] - before[name]) * 1000 / count for name in after}
        ranked = sorted(spent.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{name} {ms:.1f}" for name, ms in ranked if ms >= 0.05)
        return f"{sum(spent.values()):.1f} ms ({shown})"


def queued_events(core: k8s.CoreV1Api) -> int:
    """How many `Queued` Events the operator has posted (read as plain JSON: 10,000 of them
    as client models took seconds each time)."""
    reply: Any = core.list_namespaced_event(
        NAMESPACE, field_selector="reason=Queued", _preload_content=False
    )
    return len(json.loads(reply.data)["items"])


def plain_status_patch_rate(api: k8s.ApiClient, count: int, meter: CpuMeter) -> tuple[float, str]:
    """The API server's own rate for `count` status patches of sessions nobody watches, and
    the CPU each took."""
    raw = Sessions(api, RAW_NAMESPACE)
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        names = list(pool.map(lambda _: raw.create(idleTimeoutSeconds=None), range(count)))
    custom = k8s.CustomObjectsApi(api)
    body = {"status": {"worker": {"heartbeatAt": "2026-12-03T00:00:00Z"}}}

    def patch(name: str) -> None:
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, RAW_NAMESPACE, AVATAR_SESSION.plural, name, body
        )

    cpu_before = meter.read()
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(patch, names))
    rate = count / (time.monotonic() - started)
    return rate, CpuMeter.per_operation(cpu_before, meter.read(), count)


def create_sessions(sessions: Sessions, count: int) -> dict[str, float]:
    created: dict[str, float] = {}

    def create(_: int) -> None:
        name = sessions.create(idleTimeoutSeconds=None)
        created[name] = time.monotonic()

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(create, range(count)))
    return created


def wait(
    condition: Callable[[], bool], description: str, timeout: float = 900, interval: float = 0.5
) -> None:
    wait_for(condition, timeout=timeout, interval=interval, description=description)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=125)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--nodes", type=int, default=0, help="kwok nodes (default: --workers)")
    parser.add_argument("--chaos", action="store_true")
    parser.add_argument("--queued", type=int, default=200, help="with --chaos: sessions queued")
    args = parser.parse_args()
    nodes = args.nodes or args.workers
    gpus_per_node = -(-args.workers // nodes)
    work = Path(tempfile.mkdtemp(prefix="facecast-bench-"))
    failures: list[str] = []
    with running_control_plane(testenv_bin_dir(), work / "cp") as plane, plane.api_client() as api:
        core = k8s.CoreV1Api(api)
        custom = k8s.CustomObjectsApi(api)
        install_crds(plane.bin_dir / "kubectl", plane.kubeconfig)
        wait_until_controllers_watch(
            plane.bin_dir / "kubectl", plane.kubeconfig, log=partial(print, flush=True)
        )
        for ns in (NAMESPACE, RAW_NAMESPACE):
            core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
        print(f"creating {nodes} kwok GPU nodes with {gpus_per_node} GPUs each ...", flush=True)
        create_gpu_nodes(api, nodes, gpus=gpus_per_node)

        print(f"API server alone: {args.sessions} plain status patches ...", flush=True)
        meter = CpuMeter(plane)
        raw_rate, raw_cpu = plain_status_patch_rate(api, args.sessions, meter)
        print(f"API server alone: {raw_rate:.0f} status patches/s", flush=True)

        operator = OperatorProcess(
            plane.kubeconfig, NAMESPACE, work, {"FACECAST_START_TIMEOUT_SECONDS": "3600"}
        )
        operator.start()
        assert operator.process is not None
        meter.operator_pid = operator.process.popen.pid
        sessions = Sessions(api, NAMESPACE)
        sessions.create_tenant(max_concurrent=0)  # every session waits for the plan's raise
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, WORKER_POOL.plural, pool_body(args.workers, args.slots)
        )

        def pool_status() -> dict[str, Any]:
            body: Any = custom.get_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, WORKER_POOL.plural, POOL
            )
            return dict(body.get("status") or {})

        wait(lambda: pool_status().get("readyWorkers") == args.workers, "every worker ready")
        bindings = Bindings(api)
        bindings.thread.start()
        print(f"creating {args.sessions} sessions; they queue ...", flush=True)
        created = create_sessions(sessions, args.sessions)
        wait(lambda: all(bindings.phase.get(n) == "queued" for n in created), "every one queued")
        # ... and the operator done with them: their `Queued` Events, posted behind the
        # transitions, would otherwise be posted inside the binding window and counted in it.
        wait(lambda: queued_events(core) >= len(created), "every Queued Event posted")

        requests_before = apiserver_requests(api)
        cpu_before = meter.read()
        print("raising the tenant's plan ...", flush=True)
        opened = time.monotonic()
        # Room for every session (and with --chaos, the queued ones): the CRD allows 10,000.
        room = args.sessions + (args.queued if args.chaos else 0)
        plan = {"maxConcurrentSessions": room, "minutes": 1000}
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, TENANT.plural, "acme", {"spec": {"plan": plan}}
        )
        # Looked at often: what is read next (requests, CPU) should end with the last binding,
        # not take in the Events the operator posts once the burst is over.
        wait(
            lambda: (
                len(bindings.bound_at) >= len(created)
                and all(n in bindings.bound_at for n in created)
            ),
            "every session bound",
            interval=0.02,
        )
        first = min(bindings.bound_at[n] for n in created)
        last = max(bindings.bound_at[n] for n in created)
        requests = apiserver_requests(api) - requests_before
        cpu_after = meter.read()
        cpu = cpu_after["operator"] - cpu_before["operator"]
        bind_cpu = CpuMeter.per_operation(cpu_before, cpu_after, args.sessions)
        rss, peak = rss_mib(operator.process.popen.pid)
        doubled = {s: names for s, names in bindings.live_slots().items() if len(names) > 1}
        if doubled:
            failures.append(f"{len(doubled)} slots bound twice")

        if args.chaos:
            failures += chaos(args, api, operator, sessions, bindings, created)
        bindings.stop.set()
        operator.stop()

    rate = args.sessions / (last - opened)
    print()
    print(f"sessions: {args.sessions} onto {args.workers} workers x {args.slots} slots "
          f"on {nodes} kwok nodes")  # fmt: skip
    print(f"plan raised -> first bound {first - opened:.2f} s, -> all bound "
          f"{last - opened:.1f} s")  # fmt: skip
    print(f"sessions bound: {rate:.1f}/s; API server alone: {raw_rate:.0f} "
          f"plain status patches/s; bound / patches = {rate / raw_rate:.0%} "
          f"(goal: at least 50%)")  # fmt: skip
    print(f"CPU per plain patch: {raw_cpu}")
    print(f"CPU per binding:     {bind_cpu}")
    per_session = sum(requests.values()) / args.sessions
    top = ", ".join(f"{kind} {n / args.sessions:.2f}" for kind, n in requests.most_common(8))
    print(f"API server requests per session while binding (all clients): {per_session:.1f}"
          f" ({top})")  # fmt: skip
    elapsed = last - opened
    load = os.getloadavg()[0]
    print(f"operator RSS: {rss:.0f} MiB now, {peak:.0f} MiB peak (goal under 1024); "
          f"CPU {cpu:.1f} s over {elapsed:.1f} s; machine load {load:.1f}")  # fmt: skip
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


def chaos(
    args: argparse.Namespace,
    api: k8s.ApiClient,
    operator: OperatorProcess,
    sessions: Sessions,
    bindings: Bindings,
    created: dict[str, float],
) -> list[str]:
    failures: list[str] = []
    capacity = args.workers * args.slots
    extra = max(0, capacity - len(created)) + args.queued
    print(f"chaos: {extra} more sessions, {args.queued} of them queued ...", flush=True)
    more = create_sessions(sessions, extra)
    everyone = {**created, **more}
    wait(
        lambda: sum(n in bindings.bound_at for n in everyone) >= capacity,
        "the pool full, the rest queued",
    )
    queued = sorted((n for n in everyone if n not in bindings.bound_at), key=everyone.__getitem__)
    assert operator.process is not None
    os.kill(operator.process.popen.pid, signal.SIGKILL)
    operator.process.popen.wait()
    print(f"chaos: operator killed with {capacity} bound, {len(queued)} queued", flush=True)
    operator.start()
    leaving = sorted((n for n in everyone if n in bindings.bound_at), key=everyone.__getitem__)
    for name in leaving[: len(queued)]:
        sessions.delete(name)
    wait(lambda: all(n in bindings.bound_at for n in queued), "the queued sessions bound")
    # FIFO: no queued session is bound after one queued behind it was, by when the operator
    # decided each binding (`startingAt`; the watch's arrival times are not in write order).
    # Queue order is the operator's: creation time, then name. The name's ULID alone is the
    # client's clock in milliseconds, which 16 client threads do not send in order, while the
    # API server stamps whole seconds.
    late: list[str] = []
    latest = datetime.min.replace(tzinfo=UTC)
    for name in sorted(queued, key=lambda n: (bindings.created_at[n], n)):
        started = datetime.fromisoformat(bindings.started_at[name])
        if started < latest:
            late.append(name)
        latest = max(latest, started)
    if late:
        failures.append(f"FIFO broken for {len(late)} sessions")
    gone = [n for n in everyone if n not in leaving[: len(queued)] and sessions.get(n) is None]
    if gone:
        failures.append(f"{len(gone)} sessions lost")
    doubled = [s for s, names in bindings.live_slots().items() if len(names) > 1]
    if doubled:
        failures.append(f"{len(doubled)} slots bound twice")
    live = sum(len(names) for names in bindings.live_slots().values())
    print(f"chaos: after restart {live} sessions hold {len(bindings.live_slots())} slots; "
          f"lost {len(gone)}, bound twice {len(doubled)}, FIFO out of order "
          f"{len(late)}")  # fmt: skip

    # Scale down under load: every worker holds sessions, so none may go before they leave.
    custom = k8s.CustomObjectsApi(api)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, WORKER_POOL.plural, POOL,
        {"spec": {"minWorkers": 0, "maxWorkers": max(1, args.workers // 2)}},
    )  # fmt: skip

    def draining() -> bool:
        body: Any = custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, WORKER_POOL.plural, POOL
        )
        return int((body.get("status") or {}).get("drainingWorkers", 0)) > 0

    wait(draining, "the pool draining its surplus workers", timeout=120)
    interrupted = [n for n, phase in bindings.phase.items() if phase == "failed"]
    if interrupted:
        failures.append(f"{len(interrupted)} sessions interrupted by the scale-down")
    pods = k8s.CoreV1Api(api).list_namespaced_pod(
        NAMESPACE, label_selector=contract.pool_selector(POOL)
    )
    print(f"chaos: scaled down to {args.workers // 2}: {len(pods.items)} worker pods remain "
          f"(the surplus drain), {len(interrupted)} sessions interrupted")  # fmt: skip
    return failures


if __name__ == "__main__":
    sys.exit(main())
