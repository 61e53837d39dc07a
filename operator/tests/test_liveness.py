"""Telling a watch that follows the API server from one that stalled."""

from __future__ import annotations

from avatar_operator.liveness import Freshness, Listing, caught_up

A, B = ("fc", "a"), ("fc", "b")


def test_a_listing_is_caught_up_when_every_object_is_seen_at_that_version_or_newer() -> None:
    listing = Listing(at=0.0, versions={A: 5, B: 7})
    present = frozenset({A, B})
    assert caught_up(listing, {A: 5, B: 9}, present)
    assert not caught_up(listing, {A: 5, B: 6}, present)
    assert not caught_up(listing, {A: 5}, present)
    # b was deleted since: nothing is left for the watch to show
    assert caught_up(listing, {A: 5}, frozenset({A}))


def test_a_watch_that_keeps_up_is_never_deaf() -> None:
    fresh = Freshness(deadline=10.0)
    fresh.listed(Listing(at=0.0, versions={A: 5}), seen={A: 5})
    fresh.listed(Listing(at=20.0, versions={A: 8}), seen={A: 7})  # the event is on its way
    assert fresh.lag(25.0, {A: 7}) == 5.0
    assert fresh.lag(26.0, {A: 8}) == 0.0
    assert not fresh.deaf(1000.0, {A: 8})


def test_a_change_the_watch_never_shows_makes_it_deaf_after_the_deadline() -> None:
    fresh = Freshness(deadline=10.0)
    fresh.listed(Listing(at=0.0, versions={A: 5}), seen={A: 5})
    fresh.listed(Listing(at=1.0, versions={A: 5, B: 6}), seen={A: 5})
    fresh.listed(Listing(at=2.0, versions={A: 5, B: 6}), seen={A: 5})
    assert not fresh.deaf(10.0, {A: 5})
    assert fresh.deaf(11.5, {A: 5})
    # The watch catches up (kopf reconnected): healthy again at once.
    assert not fresh.deaf(12.0, {A: 5, B: 6})


def test_the_oldest_pending_listing_gives_way_to_the_newest_when_caught_up() -> None:
    fresh = Freshness(deadline=10.0)
    fresh.listed(Listing(at=0.0, versions={A: 5}), seen={})
    fresh.listed(Listing(at=8.0, versions={A: 5, B: 6}), seen={})
    # a shows up, b does not: the age now counts from the listing that had b
    assert fresh.lag(12.0, {A: 5}) == 4.0
