"""Pure: a container's readiness probe as the local node runs it, and the kubelet's rule for
turning probe results into the container's `ready`.

The local node has no container to exec into, so it runs the one probe it can run honestly: an
exec `cat FILE` (what a pool worker's pod carries, `contract.WORKER_READY_FILE`) reads the file
at its remapped local path. Any other probe is refused rather than ignored: ignoring it would
report a container Ready that a kubelet would not."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

# The API server defaults these on every probe; the same values stand in if a pod body lacks them.
DEFAULT_PERIOD_SECONDS = 10
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3


class UnsupportedProbeError(ValueError):
    """A probe the local node cannot run as a kubelet would."""


@dataclass(frozen=True)
class ReadinessProbe:
    """An exec `cat FILE` readiness probe: the file at its local path, and its timing."""

    container_path: str
    local_path: str
    initial_delay_s: float
    period_s: float
    success_threshold: int
    failure_threshold: int


def readiness_probe(
    container: Mapping[str, Any], local_path: Callable[[str], str | None]
) -> ReadinessProbe | None:
    """The container's readiness probe, or None when it has none (Ready once it runs).

    `local_path` maps a container path to its local one, or None when no volume or private
    directory of the pod holds it."""
    for other in ("livenessProbe", "startupProbe"):
        if container.get(other):
            raise UnsupportedProbeError(f"{other} is not supported by the local node")
    probe = container.get("readinessProbe")
    if not probe:
        return None
    command = [str(part) for part in (probe.get("exec") or {}).get("command") or []]
    if len(command) != 2 or PurePosixPath(command[0]).name != "cat":
        raise UnsupportedProbeError(
            "the local node runs only an exec `cat FILE` readiness probe"
            f" (got {', '.join(sorted(probe)) or 'an empty probe'})"
        )
    path = command[1]
    local = local_path(path) if path.startswith("/") else None
    if local is None:
        raise UnsupportedProbeError(f"readinessProbe reads {path}, outside the pod's directories")
    return ReadinessProbe(
        container_path=path,
        local_path=local,
        initial_delay_s=float(probe.get("initialDelaySeconds") or 0),
        period_s=float(probe.get("periodSeconds") or DEFAULT_PERIOD_SECONDS),
        success_threshold=int(probe.get("successThreshold") or DEFAULT_SUCCESS_THRESHOLD),
        failure_threshold=int(probe.get("failureThreshold") or DEFAULT_FAILURE_THRESHOLD),
    )


@dataclass
class Readiness:
    """The kubelet's prober rule: a container starts not ready, turns ready after
    `success_threshold` passes in a row, and not ready again after `failure_threshold`
    failures in a row."""

    probe: ReadinessProbe
    ready: bool = False
    _last: bool | None = field(default=None, repr=False)
    _run: int = field(default=0, repr=False)

    def observe(self, passed: bool) -> bool:
        """Records one probe result; True when it changed `ready`."""
        self._run = self._run + 1 if passed == self._last else 1
        self._last = passed
        if passed and not self.ready and self._run >= self.probe.success_threshold:
            self.ready = True
            return True
        if not passed and self.ready and self._run >= self.probe.failure_threshold:
            self.ready = False
            return True
        return False
