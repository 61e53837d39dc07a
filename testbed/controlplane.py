"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, and kwok for fake nodes and pods."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from testbed.certs import CertFiles, Pki, create_pki
from testbed.kubeconfig import write_kubeconfig, write_token_kubeconfig
from testbed.probes import http_ok
from testbed.process import (
    LOOPBACK,
    ComponentDiedError,
    ManagedProcess,
    free_port,
    wait_until_serving,
)
from testbed.wait import wait_for

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# kwok only manages nodes carrying this annotation, so a test can also create
# nodes nobody manages (they never become Ready) when it needs to.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"
# Generous: on a 2-core machine the apiserver's first start (etcd compaction,
# bootstrap RBAC, post-start hooks) can take tens of seconds.
START_TIMEOUT = 120.0
# Extra kwok stages for failure tests (see the file), beside kwok's default stages.
TEST_STAGES = Path(__file__).with_name("kwok-test-stages.yaml")
NEVER_PULLS_IMAGE = "registry.invalid/facecast/never-pulls:1"


@dataclass
class ControlPlane:
    """A running control plane. `kubeconfig` is an admin (system:masters) kubeconfig."""

    directory: Path
    bin_dir: Path
    pki: Pki
    server: str = ""
    kubeconfig: Path = Path()
    processes: list[ManagedProcess] = field(default_factory=list)

    def api_client(self) -> k8s.ApiClient:
        """A new admin ApiClient; the caller closes it (or uses it as a context manager)."""
        api: k8s.ApiClient = k8s_config.new_client_from_config(config_file=str(self.kubeconfig))
        return api

    def kubeconfig_for(self, name: str, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig authenticating as `user` in `groups` with a client certificate."""
        path = self.directory / f"{name}.kubeconfig"
        if not path.exists():
            write_kubeconfig(
                path, self.server, self.pki.ca.cert, self.pki.client(name, user, groups)
            )
        return path

    def kubeconfig_for_service_account(
        self, namespace: str, name: str, expiration_seconds: int = 3600
    ) -> Path:
        """A kubeconfig holding a fresh token of ServiceAccount `namespace/name` (TokenRequest,
        as the kubelet mounts into pods): clients using it have exactly that account's RBAC."""
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        with self.api_client() as api:
            issued = k8s.CoreV1Api(api).create_namespaced_service_account_token(
                name, namespace, request
            )
        token = issued.status.token if issued.status else None
        assert token, f"no token issued for {namespace}/{name}"
        path = self.directory / f"sa-{namespace}-{name}.kubeconfig"
        return write_token_kubeconfig(path, self.server, self.pki.ca.cert, token)

    def check_alive(self) -> None:
        """Raise ComponentDiedError, with its log tail, if any component has exited."""
        for process in self.processes:
            process.check_alive()

    def log_tails(self, lines: int = 30) -> str:
        parts = []
        for process in self.processes:
            state = "running" if process.alive else f"EXITED ({process.popen.returncode})"
            parts.append(
                f"----- {process.name} [{state}] {process.log_path}\n{process.log_tail(lines)}"
            )
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop in reverse start order, so nothing loses its apiserver or etcd first."""
        for process in reversed(self.processes):
            process.stop()

    def start_component(self, name: str, args: list[str | Path]) -> ManagedProcess:
        """Start `name` from the bin dir; it is stopped with the rest of the plane."""
        # HOME points into the temp dir so no component reads the developer's
        # own config (kwok loads ~/.kwok/kwok.yaml if it exists).
        env = {"HOME": str(self.directory), "PATH": str(self.bin_dir)}
        process = ManagedProcess(
            name, [self.bin_dir / name, *args], self.directory / "logs" / f"{name}.log", env=env
        )
        self.processes.append(process)
        return process


def _start_etcd(plane: ControlPlane) -> str:
    client_url = f"http://{LOOPBACK}:{free_port()}"
    peer_url = f"http://{LOOPBACK}:{free_port()}"
    etcd = plane.start_component(
        "etcd",
        [
            "--name=testenv",
            f"--data-dir={plane.directory / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=testenv={peer_url}",
            # Test data is thrown away: durability buys nothing and fsync is slow.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    wait_until_serving(etcd, lambda: http_ok(f"{client_url}/health"), timeout=START_TIMEOUT)
    return client_url


def _start_apiserver(plane: ControlPlane, etcd_url: str, admin: CertFiles) -> None:
    port = free_port()
    pki = plane.pki
    apiserver = plane.start_component(
        "kube-apiserver",
        [
            f"--etcd-servers={etcd_url}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={port}",
            f"--cert-dir={plane.directory / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving.cert}",
            f"--tls-private-key-file={pki.serving.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_private_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            # The "kubernetes" Endpoints would point at 127.0.0.1, which
            # Endpoints validation rejects; nothing in-cluster needs it here.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ],
    )
    plane.server = f"https://{LOOPBACK}:{port}"
    wait_until_serving(
        apiserver,
        lambda: http_ok(f"{plane.server}/readyz", ca=pki.ca.cert, client=admin),
        timeout=START_TIMEOUT,
    )


def _controller_args(plane: ControlPlane, kubeconfig: Path, port: int) -> list[str | Path]:
    """Flags the controller-manager and scheduler share: whom to talk to, where to serve."""
    pki = plane.pki
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        # The client CA is given above; without this they also look for a
        # front-proxy CA in kube-system, which this cluster has no use for,
        # and log an error about its absence many times a second at start.
        "--authentication-skip-lookup=true",
        # One instance of each: waiting for a lease would only slow the start.
        "--leader-elect=false",
    ]


NODE_MONITOR_GRACE = "5m"


def _start_controllers(plane: ControlPlane) -> None:
    pki = plane.pki
    kcm_port, scheduler_port = free_port(), free_port()
    kcm_kubeconfig = plane.kubeconfig_for(
        "kube-controller-manager", "system:kube-controller-manager"
    )
    scheduler_kubeconfig = plane.kubeconfig_for("kube-scheduler", "system:kube-scheduler")
    controller_manager = plane.start_component(
        "kube-controller-manager",
        [
            *_controller_args(plane, kcm_kubeconfig, kcm_port),
            # Each controller runs as its own ServiceAccount (as in real
            # clusters), so the token signer and root CA must be configured.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account_private_key}",
            f"--root-ca-file={pki.ca.cert}",
            f"--cluster-signing-cert-file={pki.ca.cert}",
            f"--cluster-signing-key-file={pki.ca.key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--cluster-name=facecast-testenv",
            # kwok renews every kwok node's lease from one process; with a thousand of them
            # on two cores shared with the API server, a renewal can be late by more than the
            # default 40 s. The node lifecycle controller then marks the node's pods unready,
            # and kwok, unlike a kubelet, never marks them ready again.
            f"--node-monitor-grace-period={NODE_MONITOR_GRACE}",
        ],
    )
    scheduler = plane.start_component(
        "kube-scheduler", _controller_args(plane, scheduler_kubeconfig, scheduler_port)
    )
    for process, port in ((controller_manager, kcm_port), (scheduler, scheduler_port)):
        url = f"https://{LOOPBACK}:{port}/healthz"
        wait_until_serving(process, _probe(url, pki.ca.cert), timeout=START_TIMEOUT)


def _probe(url: str, ca: Path) -> Callable[[], bool]:
    return lambda: http_ok(url, ca=ca)


def _start_kwok(plane: ControlPlane) -> None:
    port = free_port()
    kwok = plane.start_component(
        "kwok",
        [
            f"--kubeconfig={plane.kubeconfig}",
            f"--config={plane.bin_dir / 'kwok-stages.yaml'}",
            f"--config={TEST_STAGES}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}={KWOK_NODE_ANNOTATION_VALUE}",
            # kwok renews a Lease per node, so the node lifecycle controller
            # keeps the fake nodes Ready instead of tainting and evicting them.
            "--node-lease-duration-seconds=40",
            f"--cidr={POD_CIDR}",
            f"--server-address={LOOPBACK}:{port}",
        ],
    )
    wait_until_serving(
        kwok, lambda: http_ok(f"http://{LOOPBACK}:{port}/healthz"), timeout=START_TIMEOUT
    )


def _default_service_account_exists(plane: ControlPlane) -> bool:
    plane.check_alive()
    with plane.api_client() as api:
        accounts = k8s.CoreV1Api(api).list_namespaced_service_account("default")
        return any(
            account.metadata is not None and account.metadata.name == "default"
            for account in accounts.items
        )


def start_control_plane(bin_dir: Path, directory: Path) -> ControlPlane:
    """Start every component, each waited on by condition; stop all of them on failure."""
    plane = ControlPlane(directory=directory, bin_dir=bin_dir, pki=create_pki(directory / "pki"))
    try:
        admin = plane.pki.client("admin", "facecast-testenv-admin", ("system:masters",))
        etcd_url = _start_etcd(plane)
        _start_apiserver(plane, etcd_url, admin)
        plane.kubeconfig = write_kubeconfig(
            directory / "admin.kubeconfig", plane.server, plane.pki.ca.cert, admin
        )
        _start_controllers(plane)
        _start_kwok(plane)
        # Pods can only be created once the ServiceAccount controller has made
        # the namespace's "default" account, so "ready" includes that.
        wait_for(
            lambda: _default_service_account_exists(plane),
            timeout=START_TIMEOUT,
            description="the default ServiceAccount",
            fatal=(ComponentDiedError,),
        )
    except BaseException:
        plane.stop()
        raise
    return plane


@contextlib.contextmanager
def running_control_plane(bin_dir: Path, directory: Path) -> Iterator[ControlPlane]:
    plane = start_control_plane(bin_dir, directory)
    try:
        yield plane
    finally:
        plane.stop()
