"""The built helm CLI, isolated from the developer's own helm config and cache."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path  # holds helm's cache, config and data dirs for this test session
    kubeconfig: Path | None = None

    def run(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run helm with `args`; on failure the error includes its stdout and stderr."""
        env = {
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        command = [str(self.binary), *(str(arg) for arg in args)]
        if self.kubeconfig is not None:
            command.append(f"--kubeconfig={self.kubeconfig}")
        completed = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        if check and completed.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {completed.returncode}\n"
                f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
            )
        return completed

    def with_kubeconfig(self, kubeconfig: Path) -> Helm:
        return Helm(self.binary, self.home, kubeconfig)
