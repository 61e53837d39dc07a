"""A private containerd for the real node: Debian's containerd with its CRI plugin, runc, and
the CNI plugins of Debian's containernetworking-plugins, every directory of its own (root, state,
sockets, CNI config and IPAM data) under one temp dir, so it never meets a system containerd.

The pod network is a bridge with no gateway and no masquerade: pods get an address on a
private subnet (CNI requires one) and their own loopback, and no route to anywhere else, so no
pod traffic leaves the machine. Docker's images reach it through `docker save | ctr import`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.process import ManagedProcess, wait_until_serving

# Where Debian's packages put them.
CONTAINERD = Path("/usr/bin/containerd")
CTR = Path("/usr/bin/ctr")
RUNC = Path("/usr/sbin/runc")
CNI_BIN_DIR = Path("/usr/lib/cni")
DEBIAN_PACKAGES = "containerd runc containernetworking-plugins"
# The namespace the CRI plugin keeps Kubernetes' images and containers in.
CRI_NAMESPACE = "k8s.io"
START_TIMEOUT = 60.0


class ContainerdUnavailableError(RuntimeError):
    """Debian's containerd, runc or CNI plugins are not installed."""


def require_installed() -> None:
    missing = [
        str(path) for path in (CONTAINERD, CTR, RUNC, CNI_BIN_DIR / "bridge") if not path.exists()
    ]
    if missing:
        raise ContainerdUnavailableError(
            f"{', '.join(missing)} missing: apt-get install {DEBIAN_PACKAGES}"
            " (tools/bootstrap.sh ensure_node_runtime)"
        )


def qualified(tag: str) -> str:
    """The name containerd gives an image Docker calls `tag` (Docker Hub's implicit prefix)."""
    first = tag.split("/", 1)[0]
    if "/" in tag and ("." in first or ":" in first or first == "localhost"):
        return tag
    return f"docker.io/{tag}" if "/" in tag else f"docker.io/library/{tag}"


@dataclass(frozen=True)
class ContainerdLayout:
    """Every path this containerd uses, all under `directory` but its root (images, snapshots,
    metadata) when `kept_root` names one that outlives the run."""

    directory: Path
    kept_root: Path | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "containerd.sock"

    @property
    def root(self) -> Path:
        return self.kept_root or self.directory / "root"

    @property
    def state(self) -> Path:
        return self.directory / "state"

    @property
    def cni_conf_dir(self) -> Path:
        return self.directory / "cni" / "net.d"

    @property
    def ipam_dir(self) -> Path:
        return self.directory / "cni" / "ipam"

    @property
    def config(self) -> Path:
        return self.directory / "containerd.toml"


def config_toml(layout: ContainerdLayout, sandbox_image: str) -> str:
    """containerd 1.6's config (version 2): CRI on, cgroupfs (runc's own cgroup driver, as
    the kubelet is told), netns mounts under its state dir rather than /var/run/netns."""
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    return f"""\
version = 2
root = "{layout.root}"
state = "{layout.state}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{layout.socket}"

[ttrpc]
  address = "{layout.socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.directory / "opt"}"

{cri}
  sandbox_image = "{qualified(sandbox_image)}"
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # The kubelet asks for negative OOM scores (-998 for sandboxes), which need CAP_SYS_RESOURCE;
  # where root lacks it (sandboxed VMs), runc fails "can't get final child's PID from pipe".
  # This clamps them to containerd's own score instead, as rootless setups do.
  restrict_oom_score_adj = true

{cri[:-1]}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

{cri[:-1]}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{cri[:-1]}.containerd.runtimes.runc.options]
  BinaryName = "{RUNC}"
  Root = "{layout.state / "runc"}"
  SystemdCgroup = false

{cri[:-1]}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{layout.cni_conf_dir}"
  max_conf_num = 1
"""


def cni_config(bridge: str, subnet: str, ipam_dir: Path) -> dict[str, Any]:
    """A bridge with no gateway (no host address on it, no IP forwarding, no NAT) plus the
    pod's loopback: pods reach each other and themselves, nothing else."""
    return {
        "cniVersion": "0.4.0",
        "name": "facecast-real-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "loopback"},
        ],
    }


class Containerd:
    """A running private containerd; `ctr()` runs its CLI against it."""

    def __init__(self, layout: ContainerdLayout, process: ManagedProcess) -> None:
        self.layout = layout
        self.process = process

    @property
    def endpoint(self) -> str:
        return f"unix://{self.layout.socket}"

    def ctr(self, *args: str, timeout: float = 120.0, stdin: Any = None) -> str:
        done = subprocess.run(
            [str(CTR), "--address", str(self.layout.socket), "--namespace", CRI_NAMESPACE, *args],
            stdin=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"ctr {' '.join(args)} failed ({done.returncode}): {done.stderr.decode()[-2000:]}"
            )
        return done.stdout.decode()

    def import_from_docker(self, tag: str, timeout: float = 600.0) -> str:
        """Copy Docker's image `tag` into containerd (unpacked for the CRI); its CRI name.
        Skipped when a kept root already holds that very image (same Docker image id): the
        worker's is gigabytes, minutes to save, import and unpack."""
        name = qualified(tag)
        docker_id = _docker_image_id(tag)
        marker = self.layout.root / "facecast-imported" / hashlib.sha256(name.encode()).hexdigest()
        listed = self.ctr("images", "list", "--quiet").split()
        if name in listed and marker.is_file() and marker.read_text() == docker_id:
            return name
        with subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE) as save:
            self.ctr("images", "import", "-", timeout=timeout, stdin=save.stdout)
            if save.wait(timeout=timeout) != 0:
                raise RuntimeError(f"docker save {tag} failed")
        listed = self.ctr("images", "list", "--quiet").split()
        if name not in listed:
            raise RuntimeError(f"{name} not in containerd after import: {listed}")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(docker_id)
        return name

    def remove_all_containers(self) -> None:
        """Kill and delete every task and container left in the CRI namespace (what the
        kubelet did not tear down), so no shim outlives containerd."""
        for container in self.ctr("containers", "list", "--quiet").split():
            subprocess.run(
                [str(CTR), "--address", str(self.layout.socket), "--namespace", CRI_NAMESPACE,
                 "tasks", "delete", "--force", container],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
            self.ctr("containers", "delete", container, timeout=60)

    def stop(self) -> None:
        self.process.stop(timeout=30)


def _docker_image_id(tag: str) -> str:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def start_containerd(
    directory: Path, sandbox_image: str, bridge: str, subnet: str, kept_root: Path | None = None
) -> Containerd:
    """Write the config and the CNI network, start containerd, wait until it answers. With
    `kept_root`, images stay there between runs; containers left in it by a run that was killed
    are removed first."""
    require_installed()
    layout = ContainerdLayout(directory, kept_root)
    layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    layout.ipam_dir.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(config_toml(layout, sandbox_image))
    (layout.cni_conf_dir / "10-facecast.conflist").write_text(
        json.dumps(cni_config(bridge, subnet, layout.ipam_dir), indent=2)
    )
    # PATH: the shim (containerd-shim-runc-v2) and the CNI plugins' own helpers (iptables, ...).
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    process = ManagedProcess(
        "containerd",
        [CONTAINERD, "--config", layout.config, "--log-level", "info"],
        directory / "containerd.log",
        env=env,
    )
    runtime = Containerd(layout, process)
    try:
        wait_until_serving(
            process, lambda: _answers(runtime), timeout=START_TIMEOUT, what="answering"
        )
        if kept_root is not None:
            runtime.remove_all_containers()
    except BaseException:
        process.stop()
        raise
    return runtime


def _answers(runtime: Containerd) -> bool:
    runtime.ctr("version", timeout=10)
    return True
