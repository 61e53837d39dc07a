"""A local node: runs the worker pods the scheduler binds to it as processes, like a kubelet.

There is no kubelet or container runtime here, so this is the smallest honest stand-in:

- it registers Node `local-gpu-0` (GPU label, GPU taint, allocatable `nvidia.com/gpu`; *not* a
  kwok node) with the node's own credentials (`system:node:local-gpu-0` in `system:nodes`, so the
  Node authorizer and NodeRestriction limit it exactly as they limit a kubelet), and keeps its
  Lease and Ready condition fresh;
- it watches the pods bound to it; for each it runs the container's image entrypoint (an image
  maps to a command: `python -m avatar_worker` for the worker image) with the pod's env, the
  Secret volumes materialised into a private directory in place of their mounts (env values
  under a mount path are rewritten to the directory), emptyDirs as temp dirs, a private /tmp
  where no volume is mounted there, mapped host directories for the avatar store, env from the
  downward API (`fieldRef`), and a kubeconfig holding a token for the pod's ServiceAccount from
  the TokenRequest API (bound to the pod, as a kubelet projects it), so the worker has exactly
  its real RBAC (with or without a Secret volume);
- it reports pod status as a kubelet does: Pending/ContainerCreating, Running with
  containerStatuses, Ready at once or, for a pod with an exec `cat FILE` readiness probe, once
  that file exists in the pod's (remapped) directories and not Ready again while it is gone
  (readiness.py), then Succeeded or Failed with the exit code and a termination message
  (FallbackToLogsOnError: the log tail of a failed container);
- on a graceful delete it sends SIGTERM, waits the grace period, SIGKILLs, then removes the pod
  object (grace 0), as a kubelet does; on shutdown it stops every container the same way.

What it does not do: images (the code comes from this checkout), isolation (same user, no
namespaces, no cgroups; runAsUser and resource limits are not enforced), probes other than an
exec `cat FILE` readiness probe (refused), restarts, `kubectl logs`/`exec` (logs are files under
the runner's directory, printed on exit).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from kubernetes import config as k8s_config

from tools.localstack.kubeconfigs import cluster_of
from tools.localstack.local_node import LocalNode, log

# This module is the command line; the node is local_node.py (the adapter), and what it runs
# and reports come from pod_launch.py and kubelet_status.py (no API calls).

NODE_NAME = "local-gpu-0"


def parse_mapping(values: Sequence[str], what: str) -> dict[str, str]:
    mapping = {}
    for value in values:
        key, sep, local = value.partition("=")
        if not sep:
            raise SystemExit(f"{what} must be KEY=VALUE, got {value!r}")
        mapping[key] = local
    return mapping


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.localstack.runner", description=__doc__)
    parser.add_argument("--kubeconfig", required=True, help="the node's own credentials")
    parser.add_argument("--node-name", default=NODE_NAME)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument(
        "--image", action="append", default=[], help="IMAGE=COMMAND: the entrypoint of an image"
    )
    parser.add_argument(
        "--default-command",
        default=f"{sys.executable} -m avatar_worker",
        help="entrypoint for images not given with --image",
    )
    parser.add_argument(
        "--host-path", action="append", default=[], help="CONTAINER_PATH=LOCAL_DIR (volumes)"
    )
    parser.add_argument(
        "--readiness-file-arg",
        default=None,
        help="OPTION: a process with an exec `cat FILE` readiness probe is told where FILE is"
        " here (its local, remapped path) with OPTION PATH after its arguments",
    )
    args = parser.parse_args(argv)
    kubeconfig = Path(args.kubeconfig)
    server, ca_file = cluster_of(kubeconfig)
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    node = LocalNode(
        api,
        name=args.node_name,
        gpus=args.gpus,
        work_dir=work_dir,
        server=server,
        ca_file=ca_file,
        images={k: shlex.split(v) for k, v in parse_mapping(args.image, "--image").items()},
        default_command=shlex.split(args.default_command),
        host_paths=parse_mapping(args.host_path, "--host-path"),
        readiness_file_arg=args.readiness_file_arg,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    node.register()
    for target in (node.heartbeat_loop, node.watch_pods):
        threading.Thread(target=target, daemon=True).start()
    log("ready")
    stop.wait()
    log("stopping: terminating pods")
    node.shutdown()
    log("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
