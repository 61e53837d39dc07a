"""`watched_sessions`: what the operator keeps of each watched session. The scans over every
session read its summary and must reach the same answers as from the whole body; a
reconciliation unpacks the whole body, equal to what was watched and detached from it."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime
from typing import Any

from avatar_crds.session import Binding
from avatar_operator import billing, capacity_readings, metrics, pool_readings
from avatar_operator.pool_objects import GrantedSession
from avatar_operator.watched_sessions import SUMMARY_FIELDS, watched_session

T = "2026-12-06T01:00:00Z"


def session(
    name: str,
    phase: str | None,
    *,
    namespace: str = "fc",
    tenant: str = "acme",
    quality: str = "lite",
    on: tuple[str, int] | None = None,
    deleting: bool = False,
    **status: Any,
) -> dict[str, Any]:
    """A session as the watch shows it, with the many fields no scan reads."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "resourceVersion": str(100 + len(name)),
        "generation": 2,
        "creationTimestamp": T,
        "labels": {"facecast.io/tenant": tenant},
        "finalizers": ["facecast.io/session"],
    }
    if deleting:
        meta["deletionTimestamp"] = T
    spec = {
        "tenant": tenant,
        "avatarRef": f"av-{name}",
        "quality": quality,
        "transport": {"type": "livekit", "livekit": {"url": "wss://lk", "roomName": name}},
        "tokenSecretRef": {"name": f"{name}-token", "key": "token"},
        "metadata": {"order": "42"},
        "speech": [{"id": "task-1", "text": "hello", "interrupt": False}],
    }
    full_status: dict[str, Any] = {
        "conditions": [
            {"type": "Admitted", "status": "True", "reason": "SlotBound", "lastTransitionTime": T}
        ],
        "deadlines": {"startBy": T, "maxDurationAt": T},
        **status,
    }
    if phase is not None:
        full_status["phase"] = phase
    if on is not None:
        full_status["binding"] = {"pool": "lite", "pod": on[0], "slot": on[1]}
    return {
        "apiVersion": "facecast.io/v1alpha1",
        "kind": "AvatarSession",
        "metadata": meta,
        "spec": spec,
        "status": full_status,
    }


SESSIONS = [
    session("s-created", None),
    session("s-queued", "queued", quality="standard"),
    session("s-gone", "queued", deleting=True),
    session("s-starting", "starting", on=("lite-a", 0)),
    session("s-running", "running", on=("lite-a", 1), worker={"heartbeatAt": T, "frames": 9}),
    session(
        "s-ended",
        "ended",
        on=("lite-a", 2),
        finishedAt="2026-12-06T01:05:00Z",
        worker={"leftAt": "2026-12-06T01:04:00Z"},
    ),
    session("s-other", "running", namespace="other", tenant="beta", on=("lite-b", 0)),
]
POOLS = [
    {"metadata": {"name": "lite", "namespace": "fc"}, "spec": {"qualities": ["lite", "standard"]}}
]
WORKER = {"metadata": {"name": "lite-a", "creationTimestamp": T}}


def summaries() -> list[dict[str, Any]]:
    return [watched_session(body) for body in SESSIONS]


def test_the_whole_body_unpacks_equal_and_detached_from_the_watched_one() -> None:
    body = copy.deepcopy(SESSIONS[4])
    kept = watched_session(body)
    body["status"]["phase"] = "ended"
    body["spec"]["speech"].clear()

    assert kept.whole() == SESSIONS[4]
    assert kept["status"]["phase"] == "running"
    # Each unpacking is a fresh copy: a reader that changes it changes nothing kept.
    kept.whole()["spec"]["tenant"] = "mallory"
    assert kept.whole()["spec"]["tenant"] == "acme"


def test_a_summary_keeps_only_the_summary_fields_in_the_body_shape() -> None:
    kept = watched_session(SESSIONS[5])
    assert kept == {
        "metadata": {
            "name": "s-ended",
            "namespace": "fc",
            "resourceVersion": "107",
            "creationTimestamp": T,
        },
        "spec": {"tenant": "acme", "quality": "lite", "avatarRef": "av-s-ended"},
        "status": {
            "phase": "ended",
            "binding": {"pool": "lite", "pod": "lite-a", "slot": 2},
            "finishedAt": "2026-12-06T01:05:00Z",
            "worker": {"leftAt": "2026-12-06T01:04:00Z"},
        },
    }
    assert "deletionTimestamp" in SUMMARY_FIELDS["metadata"]
    assert watched_session(SESSIONS[2])["metadata"]["deletionTimestamp"] == T


def test_a_summary_is_a_small_part_of_the_body() -> None:
    kept = watched_session(SESSIONS[4])
    assert len(pickle.dumps(dict(kept))) < len(kept.packed) / 2


def test_the_admission_scan_reads_the_same_queues_from_summaries() -> None:
    chosen = {("fc", "s-created"): Binding(pool="lite", pod="lite-a", slot=3)}

    def read(bodies: list[dict[str, Any]]) -> dict[str, Any]:
        queues = capacity_readings.read_queues(bodies, chosen)
        return {
            namespace: (
                [capacity_readings.queued_session(b) for b in queue.waiting],
                queue.taken,
                queue.held_by_tenant,
                queue.tenants,
            )
            for namespace, queue in queues.items()
        }

    assert read(summaries()) == read(SESSIONS)
    assert read(SESSIONS)["fc"][0][0].name == "s-queued"


def test_tenant_counts_and_the_phase_metric_are_the_same_from_summaries() -> None:
    assert capacity_readings.held_slots(summaries()) == capacity_readings.held_slots(SESSIONS)
    for own_holds in (False, True):
        args = ("fc", "acme", ("fc", "s-running"), own_holds)
        assert billing.active_sessions(summaries(), *args) == billing.active_sessions(
            SESSIONS, *args
        )

    def phases(bodies: list[dict[str, Any]]) -> list[Any]:
        collector = metrics.SessionPhases()
        collector.sessions = lambda: bodies
        return [sample for family in collector.collect() for sample in family.samples]

    assert phases(summaries()) == phases(SESSIONS)


def test_the_pool_scans_read_the_same_from_summaries() -> None:
    reserved = {"s-created": Binding(pool="lite", pod="lite-a", slot=3)}
    from_summaries = pool_readings.read_sessions(POOLS, summaries(), reserved)
    from_bodies = pool_readings.read_sessions(POOLS, SESSIONS, reserved)
    assert (from_summaries.taken, from_summaries.queued) == (from_bodies.taken, from_bodies.queued)
    now = datetime(2026, 12, 6, 2, tzinfo=UTC)

    def idle(readings: pool_readings.SessionReadings) -> datetime:
        return pool_readings.idle_since(WORKER, readings.served["lite-a"], None, now)

    assert idle(from_summaries) == idle(from_bodies) == datetime(2026, 12, 6, 1, 5, tzinfo=UTC)
    on_worker = pool_readings.bound_sessions("lite-a", summaries())
    assert [GrantedSession.of(s) for s in on_worker] == [
        GrantedSession.of(s) for s in pool_readings.bound_sessions("lite-a", SESSIONS)
    ]
    assert [s["metadata"]["name"] for s in on_worker] == ["s-starting", "s-running"]
