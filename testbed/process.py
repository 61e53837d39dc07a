"""Child processes for test components: started with a log file, stopped for sure."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from testbed.wait import WaitTimeoutError, wait_for

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The kernel picks it; there is a small window before the component binds it,
    which is acceptable on a test machine.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file, or a note if it does not exist."""
    if not path.exists():
        return f"<no log at {path}>"
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        # Logs can be large; reading the last 64 KiB is plenty for 40 lines.
        handle.seek(max(0, size - 65536))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it if pytest itself is killed.

    Fixture teardown stops components normally; this only covers a pytest
    that never got to run it (SIGKILL, OOM), which would otherwise leave an
    apiserver and etcd running on the machine.
    """
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class ComponentDiedError(RuntimeError):
    """A component process exited while it was supposed to be serving."""


class ManagedProcess:
    """One long-running component, its stdout and stderr in `log_path`."""

    def __init__(
        self,
        name: str,
        args: Sequence[str | Path],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.args = [str(arg) for arg in args]
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.args)}\n".encode())
            log.flush()
            # A new session so that a Ctrl-C in the terminal running pytest
            # reaches pytest, which then stops the components in order.
            self.popen = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        """Raise ComponentDiedError, with the log tail, if the process has exited."""
        code = self.popen.poll()
        if code is not None:
            raise ComponentDiedError(
                f"{self.name} exited with code {code}; last log lines:\n{tail(self.log_path)}"
            )

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        if not self.alive:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout)


def wait_until_serving(
    process: ManagedProcess,
    probe: Callable[[], bool],
    *,
    timeout: float,
    what: str = "ready",
) -> None:
    """Poll `probe` until it is true; fail at once, with the log, if the process dies."""

    def ready() -> bool:
        process.check_alive()
        return probe()

    try:
        wait_for(
            ready,
            timeout=timeout,
            interval=0.2,
            description=f"{process.name} to be {what}",
            fatal=(ComponentDiedError,),
        )
    except WaitTimeoutError as error:
        raise WaitTimeoutError(
            f"{error}\nlast log lines of {process.name}:\n{process.log_tail()}"
        ) from error


def rss_mib(pid: int) -> tuple[float, float]:
    """A process's resident memory now and at its peak (VmRSS, VmHWM), in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def open_sockets(pid: int) -> int:
    """How many sockets a process holds open (its connections, and what it listens on)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except FileNotFoundError:  # closed while we looked
            continue
    return count


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
