"""Run the real operator (`python -m avatar_operator`) as a subprocess against the test
control plane, exactly as the chart runs it, with settings passed as environment variables."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from testbed.probes import http_ok
from testbed.process import LOOPBACK, ManagedProcess, free_port, wait_until_serving

FAST_TIMEOUTS = {
    "FACECAST_START_TIMEOUT_SECONDS": "20",
    "FACECAST_HEARTBEAT_TIMEOUT_SECONDS": "15",
    "FACECAST_FINALIZE_TIMEOUT_SECONDS": "5",
    "FACECAST_METRICS_PORT": "0",
}


class OperatorProcess:
    def __init__(
        self, kubeconfig: Path, namespace: str, log_dir: Path, env: Mapping[str, str] = {}
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_dir = log_dir
        self.env = {**FAST_TIMEOUTS, **env}
        self.process: ManagedProcess | None = None
        self.starts = 0
        self.health_url = ""

    def start(self) -> None:
        port = free_port()
        self.starts += 1
        self.health_url = f"http://{LOOPBACK}:{port}/healthz"
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "FACECAST_NAMESPACE": self.namespace,
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        self.process = ManagedProcess(
            "operator",
            [sys.executable, "-m", "avatar_operator", "--standalone",
             f"--liveness=http://{LOOPBACK}:{port}/healthz"],
            self.log_dir / f"operator-{self.starts}.log",
            env=env,
        )  # fmt: skip
        wait_until_serving(self.process, lambda: http_ok(self.health_url), timeout=60)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=15)

    def log_tail(self, lines: int = 60) -> str:
        return self.process.log_tail(lines) if self.process else ""
