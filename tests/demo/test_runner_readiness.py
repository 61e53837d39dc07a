"""The local node's readiness rule (tools/localstack/readiness.py): the kubelet's thresholds
over the results of an exec `cat FILE` probe."""

from __future__ import annotations

from tools.localstack.readiness import Readiness, ReadinessProbe


def _readiness(success: int = 1, failure: int = 3) -> Readiness:
    probe = ReadinessProbe(
        container_path="/tmp/facecast-ready",
        local_path="/pods/p/tmp/facecast-ready",
        initial_delay_s=0,
        period_s=1,
        success_threshold=success,
        failure_threshold=failure,
    )
    return Readiness(probe)


def test_not_ready_until_the_probe_passes() -> None:
    readiness = _readiness()
    assert [readiness.observe(False) for _ in range(5)] == [False] * 5
    assert not readiness.ready
    assert readiness.observe(True)
    assert readiness.ready


def test_not_ready_again_after_failure_threshold_failures_in_a_row() -> None:
    readiness = _readiness(failure=3)
    readiness.observe(True)
    assert not readiness.observe(False)
    assert not readiness.observe(False)
    assert readiness.ready
    assert readiness.observe(False)
    assert not readiness.ready


def test_a_pass_between_failures_starts_the_count_again() -> None:
    readiness = _readiness(failure=2)
    readiness.observe(True)
    readiness.observe(False)
    readiness.observe(True)
    assert not readiness.observe(False)
    assert readiness.ready


def test_success_threshold_passes_in_a_row_make_it_ready() -> None:
    readiness = _readiness(success=2)
    assert not readiness.observe(True)
    assert not readiness.observe(False)
    assert not readiness.observe(True)
    assert readiness.observe(True)
    assert readiness.ready
