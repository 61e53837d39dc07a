"""Facecast's generated CRDs, installed into a control plane with the real kubectl."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from avatar_crds.kinds import ALL_KINDS
from avatar_crds.meta import GROUP
from avatar_crds.policy import policy_manifests
from testbed.metrics import samples
from testbed.wait import WaitTimeoutError, wait_for

CRD_DIR = Path(__file__).resolve().parents[1] / "crds" / "manifests"
# kube-controller-manager looks for new kinds every 30 s (a fixed period in its garbage
# collector and quota controllers); this leaves room for one miss.
CONTROLLERS_DISCOVERY_TIMEOUT = 75.0
PLURALS = tuple(kind.plural for kind in ALL_KINDS)


def install_crds(kubectl: Path, kubeconfig: Path) -> None:
    """Apply the generated CRDs with the real kubectl and wait until they are served, and the
    admission policy the chart ships with them (a worker writes only `status.worker`), so
    that every test runs under the rules a real install enforces."""
    base = [str(kubectl), f"--kubeconfig={kubeconfig}"]
    policy = json.dumps({"apiVersion": "v1", "kind": "List", "items": policy_manifests()})
    for args, stdin in (
        (["apply", "--server-side", "-f", str(CRD_DIR)], None),
        (["wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD_DIR)], None),
        (["apply", "--server-side", "-f", "-"], policy),
    ):
        done = subprocess.run(
            [*base, *args], input=stdin, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {args[0]} failed:\n{done.stdout}{done.stderr}")


def wait_until_controllers_watch(
    kubectl: Path,
    kubeconfig: Path,
    plurals: Iterable[str] = PLURALS,
    *,
    timeout: float = CONTROLLERS_DISCOVERY_TIMEOUT,
    log: Callable[[str], None] = lambda _: None,
) -> None:
    """Wait until something watches each of `plurals` across the whole cluster.

    Before any operator runs, that is kube-controller-manager: its garbage collector and
    quota controllers find CRDs installed after they started only on their next discovery,
    up to 30 s later, and then list every object of the new kinds and look up the owners of
    what they own. Benchmarks wait for this, so that it does not land in the middle of a
    measurement. `log` hears of a wait that is not over at once."""
    missing = set(plurals)
    started = time.monotonic()
    told = False

    def watched() -> bool:
        nonlocal told
        missing.difference_update(cluster_watched(_metrics(kubectl, kubeconfig)))
        if missing and not told:
            told = True
            log(
                "waiting for kube-controller-manager to watch the new kinds"
                " (it looks for new kinds every 30 s) ..."
            )
        return not missing

    try:
        wait_for(watched, timeout=timeout, interval=0.5, description="cluster-wide watches")
    except WaitTimeoutError as error:
        raise WaitTimeoutError(f"{error} of {', '.join(sorted(missing))}") from error
    if told:
        log(f"... watched after {time.monotonic() - started:.0f} s")


def cluster_watched(metrics: str) -> set[str]:
    """The Facecast plurals with at least one cluster-wide WATCH open, from the API server's
    metrics text."""
    found = set()
    for labels, value in samples(metrics, "apiserver_longrunning_requests"):
        if (
            labels.get("verb") == "WATCH"
            and labels.get("scope") == "cluster"
            and labels.get("group") == GROUP
            and value >= 1
        ):
            found.add(labels["resource"])
    return found


def _metrics(kubectl: Path, kubeconfig: Path) -> str:
    done = subprocess.run(
        [str(kubectl), f"--kubeconfig={kubeconfig}", "get", "--raw", "/metrics"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl get --raw /metrics failed: {done.stderr.strip()}")
    return done.stdout
