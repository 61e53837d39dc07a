"""What a real node changes on the host outside its own temp dir, and putting it back.

The kubelet and containerd keep their data under the dirs they are given, except for a few
places fixed in their code: the kubelet's device-plugin socket dir (/var/lib/kubelet/
device-plugins, whatever --root-dir says) and /var/log/containers, the shims' sockets
(/run/containerd/s), libcni's result cache (/var/lib/cni); the kubelet also sets kernel tunables
(setupKernelTunables) and makes cgroups under its cgroup root, and the CNI bridge is a host link.
`HostSnapshot.take()` notes what was there before; `restore()` removes what the node added.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# Removed whole if the node created them (nothing else on a test machine uses them).
OWNED_IF_NEW = (Path("/var/lib/kubelet"), Path("/var/log/containers"), Path("/var/lib/cni"))
# Shared with other containerds (Docker's): only emptied dirs the node created are removed.
SHARED_IF_NEW = (Path("/run/containerd"),)
# The tunables the kubelet sets when protectKernelDefaults is false (pkg/kubelet/cm).
KERNEL_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
CGROUP_V1 = Path("/sys/fs/cgroup")


def _read_sysctl(name: str) -> str | None:
    try:
        return (Path("/proc/sys") / name).read_text().strip()
    except OSError:
        return None


def cgroup_controllers() -> list[Path]:
    """The cgroup v1 hierarchies mounted under /sys/fs/cgroup (cpu, memory, ..., systemd)."""
    if not CGROUP_V1.is_dir():
        return []
    return sorted(
        path
        for path in CGROUP_V1.iterdir()
        if path.is_dir() and not path.is_symlink() and (path / "cgroup.procs").exists()
    )


def create_cgroup_root(name: str) -> None:
    """The kubelet's --cgroup-root must exist in every hierarchy; a new cpuset cgroup starts
    with no CPUs or memory nodes, so it gets its parent's (as runc does for the ones it makes)."""
    for controller in cgroup_controllers():
        path = controller / name
        path.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (controller / knob).exists():
                (path / knob).write_text((controller / knob).read_text())


def remove_cgroup_tree(name: str) -> list[str]:
    """rmdir the cgroup and its children, deepest first; what could not be removed."""
    left: list[str] = []
    for controller in cgroup_controllers():
        root = controller / name
        if not root.exists():
            continue
        for directory, _, _ in sorted(os.walk(root), key=lambda entry: -len(entry[0])):
            try:
                Path(directory).rmdir()
            except OSError as error:
                left.append(f"{directory} ({error.strerror})")
    return left


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below `directory`, deepest first (the order to unmount them)."""
    prefix = str(directory.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(set(found), key=lambda path: -len(path.parts))


def unmount_all_under(directory: Path) -> list[str]:
    """Unmount everything under `directory` (tmpfs volumes, overlays, netns, shm)."""
    failed = []
    for point in mounts_under(directory):
        done = subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)
        if done.returncode != 0:
            failed.append(f"{point}: {done.stderr.decode().strip()}")
    return failed


def delete_link(name: str) -> None:
    subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


@dataclass
class HostSnapshot:
    new_paths: list[Path] = field(default_factory=list)
    shared_new_paths: list[Path] = field(default_factory=list)
    tunables: dict[str, str] = field(default_factory=dict)

    @classmethod
    def take(cls) -> HostSnapshot:
        tunables = {name: value for name in KERNEL_TUNABLES if (value := _read_sysctl(name))}
        return cls(
            new_paths=[path for path in OWNED_IF_NEW if not path.exists()],
            shared_new_paths=[path for path in SHARED_IF_NEW if not path.exists()],
            tunables=tunables,
        )

    def restore(self) -> list[str]:
        """Put the host back as it was; a list of what could not be (empty when clean)."""
        problems = []
        for path in self.new_paths:
            shutil.rmtree(path, ignore_errors=True)
            if path.exists():
                problems.append(f"{path} could not be removed")
        for path in self.shared_new_paths:
            if path.is_dir():
                for directory, _, _ in sorted(os.walk(path), key=lambda entry: -len(entry[0])):
                    with contextlib.suppress(OSError):  # not empty: someone else's now
                        Path(directory).rmdir()
        for name, value in self.tunables.items():
            if _read_sysctl(name) != value:
                try:
                    (Path("/proc/sys") / name).write_text(value)
                except OSError as error:
                    problems.append(f"sysctl {name}={value}: {error}")
        return problems
