"""Charging tenants: a session's seconds, added once, and the tenant's count of slot-holding
sessions, both in the Tenant's `status.usage`; and whether a tenant's minutes are used up.

Everything but `write_usage` is pure. The billing period's rules are `avatar_crds.billing`'s,
which the API reads usage through too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from avatar_crds import billing as period
from avatar_crds.enums import Phase
from avatar_crds.phases import is_being_deleted, is_terminal, phase_of
from avatar_crds.session import AvatarSession
from avatar_crds.tenant import Tenant, TenantUsage
from avatar_operator.capacity_readings import held_slots
from avatar_operator.kube import Kube, KubeError
from avatar_operator.observe import Key, session_key

WRITE_ATTEMPTS = 5


def slot_may_have_moved(session: AvatarSession, phase: Phase) -> bool:
    """Whether stepping `session` into `phase` may change its tenant's slot count: the first
    step on a new session (it took its slot at create), a move into or out of the terminal
    phases, or any move of a session being deleted (it gave its slot back then)."""
    if session.status.phase is None:
        return True
    if phase is phase_of(session):
        return False
    return is_being_deleted(session) or phase.is_terminal != is_terminal(session)


def minutes_exhausted(session: AvatarSession, tenant: Tenant | None, now: datetime) -> bool:
    """The tenant's minutes this period, this session's running seconds included, are used."""
    if tenant is None:
        return False
    own = session.status.worker.billable_seconds if session.status.worker else 0.0
    used = period.seconds_used(tenant.status.usage, now)
    return used + own >= tenant.spec.plan.minutes * 60


def active_sessions(
    sessions: Iterable[dict[str, Any]], namespace: str, tenant: str, own: Key, own_holds: bool
) -> int:
    """The tenant's sessions holding a slot (`avatar_crds.phases`, the API's count too) among
    `sessions` (the newest copy known of each), with `own` counted as just decided: the
    copies do not show that decision yet."""
    others = [
        body for body in sessions if session_key(body) != own and session_key(body)[0] == namespace
    ]
    return held_slots(others).get(tenant, 0) + own_holds


def usage_after(
    usage: TenantUsage, *, session: str, charge: float | None, active: int, now: datetime
) -> TenantUsage:
    """`usage` with the active count replaced and, with `charge`, `session`'s seconds added
    (once, even across retries and restarts)."""
    if charge is not None:
        usage = period.charge(usage, session, charge, now)
    return usage.model_copy(update={"active_sessions": active})


async def write_usage(
    kube: Kube, namespace: str, tenant: str, update: Callable[[TenantUsage], TenantUsage]
) -> None:
    """Replace the Tenant's usage with `update` of what it is now, reading again when a
    concurrent writer wins the race. Nothing to do for a tenant that is gone."""
    for _attempt in range(WRITE_ATTEMPTS):
        body = await kube.read("Tenant", namespace, tenant)
        if body is None:
            return
        parsed = Tenant.model_validate(body)
        usage = update(parsed.status.usage)
        if usage == parsed.status.usage:
            return
        body["status"] = parsed.status.model_copy(update={"usage": usage}).to_k8s()
        try:
            await kube.replace_status("Tenant", body)
            return
        except KubeError as exc:
            if exc.status != 409:
                raise
    raise RuntimeError(f"could not update tenant {tenant} after {WRITE_ATTEMPTS} attempts")
