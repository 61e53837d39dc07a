"""Admission passes (`Reconciler.poke_queued`): a burst of pokes is one pass, and a pass that
took long holds the next one back as long, so passes over thousands of sessions never take
more than half the operator's loop (the writes they lead to need the rest)."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, cast

from avatar_operator.event_pacing import EventPoster
from avatar_operator.kube import Kube
from avatar_operator.reconciler import Reconciler
from avatar_operator.settings import Settings
from avatar_operator.webhooks import WebhookSender

PASS_SECONDS = 0.05


def reconciler_with_slow_passes(passes: list[tuple[float, float]]) -> Reconciler:
    """A reconciler whose admission pass holds the loop for PASS_SECONDS (as reading many
    sessions does) and records when each pass started and ended, in loop time."""
    reconciler = Reconciler(
        kube=cast(Kube, None),  # never called: the pass below reads and writes nothing
        view=cast(Any, None),
        settings=Settings(),
        webhooks=cast(WebhookSender, None),
        post_event=cast(EventPoster, None),
    )

    def slow_pass() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        time.sleep(PASS_SECONDS)  # the work itself, blocking as a pass does
        passes.append((started, loop.time()))

    reconciler._admit_and_bind = slow_pass  # type: ignore[method-assign]
    return reconciler


def test_a_burst_of_pokes_is_one_pass() -> None:
    passes: list[tuple[float, float]] = []

    async def burst() -> None:
        reconciler = reconciler_with_slow_passes(passes)
        for _ in range(100):
            reconciler.poke_queued()
        await reconciler.next_admission_pass()

    asyncio.run(burst())
    assert len(passes) == 1


def test_the_next_pass_waits_as_long_as_the_last_one_took() -> None:
    passes: list[tuple[float, float]] = []

    async def three_passes() -> None:
        reconciler = reconciler_with_slow_passes(passes)
        for _ in range(3):
            await reconciler.next_admission_pass()

    asyncio.run(three_passes())

    assert len(passes) == 3
    for (started, ended), (next_started, _) in itertools.pairwise(passes):
        assert next_started - ended >= ended - started >= PASS_SECONDS
