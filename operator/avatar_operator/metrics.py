"""Prometheus metrics of the operator, served on FACECAST_METRICS_PORT."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from avatar_crds.enums import Phase


class SessionPhases(Collector):
    """`facecast_sessions{phase}`, counted from the watched sessions when scraped: counting
    them on every session event instead cost a pass over all of them per event."""

    def __init__(self) -> None:
        self.sessions: Callable[[], Iterable[dict[str, Any]]] = list

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = dict.fromkeys(Phase, 0)
        for body in self.sessions():
            counts[Phase((body.get("status") or {}).get("phase") or Phase.CREATED)] += 1
        family = GaugeMetricFamily("facecast_sessions", "AvatarSessions by phase", labels=["phase"])
        for phase, count in counts.items():
            family.add_metric([phase.value], count)
        yield family


SESSIONS = SessionPhases()
"""Registered once; the operator points it at its view of the sessions when it starts."""
REGISTRY.register(SESSIONS)
TRANSITIONS = Counter(
    "facecast_session_transitions_total", "Phase changes", ["from_phase", "to_phase"]
)
TIME_TO_RUNNING = Histogram(
    "facecast_time_to_running_seconds",
    "From the session's creation to its first frame",
    buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144),
)
RECONCILE_ERRORS = Counter(
    "facecast_reconcile_errors_total", "Reconciliations that raised", ["error"]
)
RECONCILES = Counter("facecast_reconciles_total", "Reconciliations of a session")
ADMISSION_PASS_SECONDS = Histogram(
    "facecast_admission_pass_seconds",
    "One admission pass over every waiting session (admit, or bind to pool slots)",
    buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
