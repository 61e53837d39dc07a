"""The operator process itself, as `python -m avatar_operator` starts it."""

from __future__ import annotations

import json
from typing import Any

from testbed.operator_process import OperatorProcess
from testbed.wait import wait_for


def logged(operator: OperatorProcess, event: str) -> dict[str, Any] | None:
    """The first log line for `event`, parsed; None if there is none yet."""
    for line in operator.log_tail(100_000).splitlines():
        if f'"{event}"' in line:
            parsed: dict[str, Any] = json.loads(line)
            if parsed.get("event") == event:
                return parsed
    return None


def test_startup_objects_are_frozen_out_of_the_garbage_collector(
    operator: OperatorProcess,
) -> None:
    started = wait_for(
        lambda: logged(operator, "operator_started"), timeout=30, description="operator_started"
    )
    # Imports and handlers are no longer walked by every full collection (see __main__).
    assert started["objects_frozen"] > 10_000
