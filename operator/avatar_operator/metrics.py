"""Prometheus metrics of the operator, served on FACECAST_METRICS_PORT."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SESSIONS = Gauge("facecast_sessions", "AvatarSessions by phase", ["phase"])
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
