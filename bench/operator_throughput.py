"""Operator throughput on the real control plane: 500 sessions against 100 kwok GPU nodes.

Reports the time from creating an AvatarSession to its worker pod appearing (p50/p99),
sessions reconciled per second, the operator's memory, and, for scale, the API server's own
rate of creating the same number of plain pods in the same run.

    uv run --frozen --no-sync python bench/operator_throughput.py [--sessions 500 --nodes 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from kubernetes import client as k8s
from kubernetes import watch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatar_crds import contract
from testbed.binaries import testenv_bin_dir
from testbed.controlplane import running_control_plane
from testbed.crds import install_crds, wait_until_controllers_watch
from testbed.kwok import create_gpu_nodes
from testbed.operator_process import OperatorProcess
from testbed.process import free_port
from testbed.sessions import Sessions
from testbed.wait import wait_for

CLIENT_THREADS = 16


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def watch_pods(
    api: k8s.ApiClient, namespace: str, seen: dict[str, float], stop: threading.Event
) -> None:
    """Record when each pod first appears, as this process sees it (creationTimestamp has
    only one-second resolution)."""
    core = k8s.CoreV1Api(api)
    stream = watch.Watch()
    while not stop.is_set():
        for event in stream.stream(core.list_namespaced_pod, namespace, timeout_seconds=2):
            name = event["object"].metadata.name
            seen.setdefault(name, time.monotonic())
            if stop.is_set():
                break


def rss_mib(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reconcile_count(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("facecast_reconciles_total "):
            return float(line.split()[1])
    return 0.0


def plain_pod(name: str) -> k8s.V1Pod:
    return k8s.V1Pod.model_validate(
        {
            "metadata": {"name": name},
            "spec": {
                "containers": [{"name": "c", "image": "bench/none:1"}],
                "nodeSelector": {"bench": "nowhere"},  # stays Pending: only the create counts
            },
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=100)
    args = parser.parse_args()
    gpus_per_node = -(-args.sessions // args.nodes)
    work = Path(tempfile.mkdtemp(prefix="facecast-bench-"))
    with running_control_plane(testenv_bin_dir(), work / "cp") as plane, plane.api_client() as api:
        core = k8s.CoreV1Api(api)
        install_crds(plane.bin_dir / "kubectl", plane.kubeconfig)
        wait_until_controllers_watch(
            plane.bin_dir / "kubectl", plane.kubeconfig, log=partial(print, flush=True)
        )
        for ns in ("bench", "bench-raw"):
            core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
        print(
            f"creating {args.nodes} kwok GPU nodes with {gpus_per_node} GPUs each ...", flush=True
        )
        create_gpu_nodes(api, args.nodes, gpus=gpus_per_node)

        # The API server's own cost: the same number of plain pod creates, same concurrency.
        started = time.monotonic()
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            list(
                pool.map(
                    lambda i: core.create_namespaced_pod("bench-raw", plain_pod(f"raw-{i}")),
                    range(args.sessions),
                )
            )
        raw_rate = args.sessions / (time.monotonic() - started)
        print(f"API server alone: {raw_rate:.0f} pod creates/s", flush=True)

        metrics_port = free_port()
        operator = OperatorProcess(
            plane.kubeconfig, "bench", work,
            {"FACECAST_METRICS_PORT": str(metrics_port), "FACECAST_START_TIMEOUT_SECONDS": "600"},
        )  # fmt: skip
        operator.start()
        assert operator.process is not None
        sessions = Sessions(api, "bench")
        sessions.create_tenant(max_concurrent=args.sessions)
        reconciles_before = reconcile_count(metrics_port)
        cpu_before = cpu_seconds(operator.process.popen.pid)

        seen: dict[str, float] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=watch_pods, args=(api, "bench", seen, stop), daemon=True)
        watcher.start()
        created: dict[str, float] = {}

        def create(_: int) -> None:
            name = sessions.create(idleTimeoutSeconds=None)
            created[contract.worker_pod_name(name)] = time.monotonic()

        print(f"creating {args.sessions} sessions ...", flush=True)
        started = time.monotonic()
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            list(pool.map(create, range(args.sessions)))
        create_seconds = time.monotonic() - started
        wait_for(lambda: all(pod in seen for pod in created), timeout=600, interval=0.5,
                 description="every worker pod created")  # fmt: skip
        elapsed = max(seen[pod] for pod in created) - started
        reconciles = reconcile_count(metrics_port) - reconciles_before
        rss, peak = rss_mib(operator.process.popen.pid)
        cpu = cpu_seconds(operator.process.popen.pid) - cpu_before
        load = os.getloadavg()[0]
        stop.set()
        operator.stop()

    latencies = [seen[pod] - created[pod] for pod in created]
    rate = args.sessions / elapsed
    print()
    print(f"sessions: {args.sessions} on {args.nodes} nodes (created in {create_seconds:.1f} s)")
    p50, p99 = statistics.median(latencies) * 1000, percentile(latencies, 0.99) * 1000
    print(f"create -> worker pod created: p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")  # fmt: skip
    print(f"sessions admitted with a pod: {rate:.1f}/s; reconciliations: {reconciles:.0f} "
          f"({reconciles / elapsed:.0f}/s)")  # fmt: skip
    share = cpu / elapsed
    print(f"operator RSS: {rss:.0f} MiB now, {peak:.0f} MiB peak; CPU {cpu:.1f} s over "
          f"{elapsed:.1f} s ({share:.0%} of one core); machine load {load:.1f}")  # fmt: skip
    print(f"API server alone: {raw_rate:.0f} plain pod creates/s; "
          f"operator pipeline / API server = {rate / raw_rate:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
