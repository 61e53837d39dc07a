"""One tenant-slot rule (`avatar_crds.phases.holds_slot`) read three ways: the API's count at
create (`policy.active_count`), the operator's binding to slots, and the Tenant's
`status.usage.activeSessions`. A session holds a slot from create until it is terminal or being
deleted, queued included, so all three agree on the same tenant."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from api_shim import policy
from avatar_crds.enums import Phase, Quality
from avatar_crds.phases import holds_slot, is_waiting
from avatar_crds.session import AvatarSession
from avatar_operator import capacity_readings
from avatar_operator.admission import TenantRoom
from avatar_operator.event_pacing import EventPoster
from avatar_operator.kube import Kube
from avatar_operator.observe import Key
from avatar_operator.pool_assignment import PoolWorker, assign
from avatar_operator.reconciler import Reconciler
from avatar_operator.settings import Settings
from avatar_operator.webhooks import WebhookSender
from testbed.objects import session_manifest

DELETED_AT = "2026-11-21T10:05:00Z"


def body(name: str, phase: str | None, *, tenant: str = "acme", **meta: Any) -> dict[str, Any]:
    status: dict[str, Any] = {} if phase is None else {"phase": phase}
    if phase in (Phase.ENDED, Phase.CANCELED):
        status["reason"] = "user_ended"
    manifest = session_manifest(
        spec={"tenant": tenant, "tokenSecretRef": {"name": f"{name}-token"}}
    )
    manifest["metadata"].update(
        name=name, resourceVersion="1", creationTimestamp=f"2026-11-21T10:00:0{len(name)}Z", **meta
    )
    manifest["status"] = status
    return manifest


# acme: two waiting (one not yet seen by the operator), two with a worker, one ended, one
# running but being deleted. The other tenant's session must never count for acme.
SESSIONS = [
    body("q", Phase.QUEUED),
    body("cc", None),
    body("ccc", Phase.STARTING),
    body("cccc", Phase.RUNNING),
    body("ccccc", Phase.ENDED),
    body("cccccc", Phase.RUNNING, deletionTimestamp=DELETED_AT),
    body("o", Phase.RUNNING, tenant="other"),
]
HOLDERS = 4  # q, cc, ccc, cccc


def room_at_acme_limit(sessions: list[dict[str, Any]]) -> TenantRoom:
    """The operator's reading for binding, with acme's plan allowing exactly `HOLDERS`."""
    queue = capacity_readings.read_queues(sessions, {})["fc"]
    return TenantRoom(held_by_tenant=queue.held_by_tenant, max_by_tenant={"acme": HOLDERS})


def bound(sessions: list[dict[str, Any]]) -> list[str]:
    """Who gets a slot of a roomy pool serving every tier: only the tenant's limit decides."""
    waiting = capacity_readings.read_queues(sessions, {})["fc"].waiting
    queue = [capacity_readings.queued_session(b) for b in waiting]
    worker = PoolWorker("any", "any-x", slots=64, taken=frozenset(), ready=True, draining=False)
    pools = {"any": frozenset(Quality)}
    assignment = assign(queue, pools, [worker], room_at_acme_limit(sessions))
    return sorted(binding.session for binding in assignment.bindings)


class View:
    """A stand-in for the operator's watch indexes (kopf's, in production)."""

    def __init__(self, sessions: Iterable[dict[str, Any]]) -> None:
        self._sessions = list(sessions)

    def sessions(self) -> list[dict[str, Any]]:
        return self._sessions


@pytest.mark.parametrize(
    ("phase", "deleting", "holds", "waiting"),
    [
        (None, False, True, True),
        (Phase.CREATED, False, True, True),
        (Phase.QUEUED, False, True, True),
        (Phase.STARTING, False, True, False),
        (Phase.RUNNING, False, True, False),
        (Phase.ENDING, False, True, False),
        (Phase.ENDED, False, False, False),
        (Phase.FAILED, False, False, False),
        (Phase.CANCELED, False, False, False),
        (Phase.QUEUED, True, False, False),
        (Phase.RUNNING, True, False, False),
    ],
)
def test_a_session_holds_a_slot_from_create_until_terminal_or_deleted(
    phase: str | None, deleting: bool, holds: bool, waiting: bool
) -> None:
    assert holds_slot(phase, deleting=deleting) is holds
    assert is_waiting(phase, deleting=deleting) is waiting


def test_api_count_operator_admission_and_active_sessions_agree() -> None:
    typed = [AvatarSession.model_validate(b) for b in SESSIONS if b["spec"]["tenant"] == "acme"]
    api_count = policy.active_count(typed)

    waiting = capacity_readings.read_queues(SESSIONS, {})["fc"].waiting
    waiting_for_acme = sum(1 for b in waiting if b["spec"]["tenant"] == "acme")
    binding_count = room_at_acme_limit(SESSIONS).held_by_tenant["acme"] + waiting_for_acme

    reconciler = Reconciler(
        kube=cast(Kube, None),  # never called: counting reads only the watched view
        view=cast(Any, View(SESSIONS)),
        settings=Settings(),
        webhooks=cast(WebhookSender, None),
        post_event=cast(EventPoster, None),
    )
    own: Key = ("fc", "q")
    active_sessions = reconciler._active_sessions(
        "fc", "acme", own, holds_slot("queued", deleting=False)
    )

    assert api_count == binding_count == active_sessions == HOLDERS
    # At exactly its limit, the tenant's waiting sessions (already counted) all start.
    assert bound(SESSIONS) == ["cc", "q"]


def test_a_session_beyond_the_limit_waits_even_when_it_got_past_the_api() -> None:
    """Two API replicas may both accept a create at the limit; the operator's count is the
    final word: the newest waiting session over the limit is not bound."""
    late = body("late", Phase.QUEUED)
    late["metadata"]["creationTimestamp"] = datetime(2026, 11, 21, 11, tzinfo=UTC).isoformat()
    assert bound([*SESSIONS, late]) == ["cc", "q"]
