"""The pure parts of charging a tenant: when the slot count may move, when minutes are used
up, and a charge that is added once. (The count itself is `test_tenant_slots.py`'s.)"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from avatar_crds.enums import Phase
from avatar_crds.session import AvatarSession
from avatar_crds.tenant import Tenant, TenantUsage
from avatar_operator.billing import minutes_exhausted, slot_may_have_moved, usage_after
from testbed.objects import T0, session_manifest


def session(phase: str | None, **meta: Any) -> AvatarSession:
    manifest = session_manifest(status={} if phase is None else {"phase": phase})
    if phase in ("ended", "canceled"):
        manifest["status"]["reason"] = "user_ended"
    manifest["metadata"].update(meta)
    return AvatarSession.model_validate(manifest)


@pytest.mark.parametrize(
    ("now", "to", "deleting", "moved"),
    [
        (None, Phase.QUEUED, False, True),  # the first step: it took its slot at create
        ("queued", Phase.QUEUED, False, False),
        ("queued", Phase.STARTING, False, False),  # still holding its slot
        ("running", Phase.ENDING, False, False),
        ("ending", Phase.ENDED, False, True),  # gives the slot back
        ("running", Phase.FAILED, False, True),
        ("running", Phase.ENDING, True, True),  # gave it back when deletion began
    ],
)
def test_the_slot_count_is_rewritten_only_when_it_may_have_moved(
    now: str | None, to: Phase, deleting: bool, moved: bool
) -> None:
    meta = {"deletionTimestamp": T0.isoformat()} if deleting else {}
    assert slot_may_have_moved(session(now, **meta), to) is moved


def test_minutes_run_out_counting_the_running_sessions_own_seconds() -> None:
    tenant = Tenant.model_validate(
        {
            "metadata": {"name": "acme"},
            "spec": {"plan": {"minutes": 10}},
            "status": {"usage": {"secondsUsed": 540.0, "periodStart": T0.replace(day=1)}},
        }
    )
    fresh = session("running")  # no worker report yet
    assert not minutes_exhausted(fresh, tenant, T0)
    manifest = session_manifest(status={"phase": "running", "worker": {"billableSeconds": 60.0}})
    minute_in = AvatarSession.model_validate(manifest)
    assert minutes_exhausted(minute_in, tenant, T0)
    next_month = T0 + timedelta(days=31)  # the period is over: nothing counts as used
    assert not minutes_exhausted(minute_in, tenant, next_month)
    assert not minutes_exhausted(minute_in, None, T0)  # no tenant, no limit to apply


def test_a_charge_is_added_once_and_the_count_always_replaced() -> None:
    first = usage_after(TenantUsage(), session="s1", charge=30.0, active=2, now=T0)
    again = usage_after(first, session="s1", charge=30.0, active=1, now=T0)
    counted = usage_after(again, session="s2", charge=None, active=0, now=T0)
    assert (first.seconds_used, first.active_sessions) == (30.0, 2)
    assert (again.seconds_used, again.active_sessions) == (30.0, 1)
    assert (counted.seconds_used, counted.active_sessions) == (30.0, 0)
