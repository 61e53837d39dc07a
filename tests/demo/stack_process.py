"""Runs the demo command as a subprocess and reads its progress lines, with deadlines."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from testbed import images

REPO_ROOT = Path(__file__).resolve().parents[2]
# From the command's start to the demo session running, on a machine busy with other tests.
START_DEADLINE = 420.0
# ... as root, on the real node: plus the worker image's build and its copy into containerd,
# which take minutes the first time (a cold machine) and seconds after.
REAL_NODE_START_DEADLINE = START_DEADLINE + images.BUILD_TIMEOUT + 300.0


class DemoProcess:
    def __init__(
        self, argv: list[str], log_path: Path, env: dict[str, str], *, sigint_ignored: bool = False
    ) -> None:
        """`sigint_ignored`: start it as a shell without job control starts `cmd &`, with
        SIGINT ignored (inherited across exec), which Ctrl-C must stop all the same."""
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.log_path = log_path
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_ignore_sigint if sigint_ignored else None,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with self.log_path.open("w") as log:
            for line in self.popen.stdout:
                log.write(line)
                log.flush()
                self.lines.put(line.rstrip("\n"))

    def wait_line(self, prefix: str, timeout: float) -> str:
        """The first output line containing `prefix` (earlier lines are kept in `output`)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line with {prefix!r} in {timeout}s:\n{self.tail()}")
            try:
                line = self.lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    raise AssertionError(
                        f"demo exited ({self.popen.returncode}) before {prefix!r}:\n{self.tail()}"
                    ) from None
                continue
            self.output.append(line)
            if prefix in line:
                return line

    def seen(self, text: str) -> int:
        """The index in `output` of the first line read so far that contains `text`."""
        for index, line in enumerate(self.output):
            if text in line:
                return index
        raise AssertionError(f"no line with {text!r} so far:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def interrupt(self, timeout: float) -> int:
        """Ctrl-C (SIGINT to the process group, as a terminal sends it) and wait for the exit."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGINT)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
            raise

    def run_dir(self) -> str:
        for line in self.output:
            if "run directory " in line:
                return line.split("run directory ", 1)[1].split("\x1b")[0].strip()
        raise AssertionError("no run directory line")


@dataclass(frozen=True)
class DemoRun:
    """A demo command left running after its instructions, and where it wrote its recording."""

    process: DemoProcess
    recording: Path


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (orphans of a stopped stack)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
