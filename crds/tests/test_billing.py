"""The billing period (a calendar month, UTC) and charges that roll it over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from avatar_crds import billing
from avatar_crds.tenant import CHARGED_SESSIONS_KEPT, TenantUsage

NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
JAN = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "start", "end"),
    [
        (datetime(2026, 11, 21, 12, 30, tzinfo=UTC), NOV, DEC),
        (NOV, NOV, DEC),
        (DEC - timedelta(microseconds=1), NOV, DEC),
        (datetime(2026, 12, 31, 23, 59, tzinfo=UTC), DEC, JAN),
        # 00:30 on Dec 1st in UTC+1 is still November in UTC.
        (datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), NOV, DEC),
    ],
)
def test_a_period_is_a_calendar_month_in_utc(
    moment: datetime, start: datetime, end: datetime
) -> None:
    assert billing.period_start(moment) == start
    assert billing.next_period_start(start) == end


def test_the_first_charge_starts_the_period() -> None:
    usage = billing.charge(TenantUsage(), "s1", 90.0, datetime(2026, 11, 21, tzinfo=UTC))
    assert (usage.seconds_used, usage.period_start, usage.charged_sessions) == (90.0, NOV, ["s1"])


def test_charges_in_the_period_add_up_and_count_once() -> None:
    now = datetime(2026, 11, 21, tzinfo=UTC)
    usage = billing.charge(TenantUsage(), "s1", 90.0, now)
    usage = billing.charge(usage, "s2", 30.0, now)
    assert billing.charge(usage, "s2", 30.0, now) == usage
    assert (usage.seconds_used, usage.period_start) == (120.0, NOV)


def test_a_charge_after_the_period_ended_starts_the_next_one() -> None:
    usage = TenantUsage(seconds_used=3600.0, period_start=NOV, charged_sessions=["s1"])
    rolled = billing.charge(usage, "s2", 45.0, datetime(2026, 12, 3, tzinfo=UTC))
    assert (rolled.seconds_used, rolled.period_start) == (45.0, DEC)
    # A retried charge of a session from before the roll-over is still not added again.
    assert billing.charge(rolled, "s1", 10.0, datetime(2026, 12, 3, tzinfo=UTC)) == rolled


def test_usage_of_an_ended_period_counts_as_nothing() -> None:
    usage = TenantUsage(seconds_used=3600.0, period_start=NOV)
    assert billing.seconds_used(usage, DEC - timedelta(seconds=1)) == 3600.0
    assert billing.seconds_used(usage, DEC) == 0.0
    # Recorded before periods were kept: counts until the next charge starts one.
    assert billing.seconds_used(TenantUsage(seconds_used=60.0), JAN) == 60.0


def test_the_charged_sessions_list_stays_within_the_schema_bound() -> None:
    usage = TenantUsage()
    now = datetime(2026, 11, 21, tzinfo=UTC)
    for index in range(CHARGED_SESSIONS_KEPT + 5):
        usage = billing.charge(usage, f"s{index}", 1.0, now)
    assert len(usage.charged_sessions) == CHARGED_SESSIONS_KEPT
    assert usage.charged_sessions[-1] == f"s{CHARGED_SESSIONS_KEPT + 4}"
    TenantUsage.model_validate(usage.model_dump())
