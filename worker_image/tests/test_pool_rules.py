"""The pool worker's pure rules: which sessions its grant names, where a granted session runs,
who holds a slot, when a slot leaves its session, and its settings."""

from __future__ import annotations

from typing import Any

import pytest

from avatar_crds import contract
from avatar_crds.enums import CancelReason, EndReason, FailureReason, Phase, Quality
from avatar_crds.meta import GROUP
from avatar_crds.session import AvatarSession, AvatarSessionStatus, Binding
from avatar_worker.config import PoolConfig
from avatar_worker.drain import DrainMode, leave_mode
from avatar_worker.pool.grant import granted_sessions
from avatar_worker.pool.slots import Refused, SlotTable, place
from worker_image.tests.pool_support import grant_rules
from worker_image.tests.support import session_resource

ROLE = "pool-a-worker-x7k2q"
POD = "pool-a-x7k2q"


def _session(name: str) -> AvatarSession:
    return session_resource(url="wss://example.invalid", room=f"room-{name}", name=name)


def _rule(verbs: list[str], names: list[str] | None, resource: str = "avatarsessions") -> Any:
    rule: dict[str, Any] = {"apiGroups": [GROUP], "resources": [resource], "verbs": verbs}
    if names is not None:
        rule["resourceNames"] = names
    return rule


# -- the grant ------------------------------------------------------------------------------


def test_a_role_without_session_rules_grants_nothing() -> None:
    assert granted_sessions({}) == frozenset()
    assert granted_sessions({"rules": []}) == frozenset()
    assert granted_sessions({"rules": None}) == frozenset()
    assert granted_sessions({"rules": grant_rules(ROLE, [])}) == frozenset()


def test_the_sessions_the_role_names_are_granted() -> None:
    a, b = _session("sess-a"), _session("sess-b")
    role = {"metadata": {"name": ROLE}, "rules": grant_rules(ROLE, [a, b])}
    assert granted_sessions(role) == {"sess-a", "sess-b"}


def test_only_a_rule_to_get_and_watch_sessions_by_name_grants_them() -> None:
    rules = [
        _rule(["get"], ["only-get"]),
        _rule(["watch"], ["only-watch"]),
        _rule(["list", "delete"], ["other-verbs"]),
        _rule(["get", "patch"], ["status-only"], resource="avatarsessions/status"),
        _rule(["get", "watch"], ["an-avatar"], resource="avatars"),
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["s"]},
        {
            "apiGroups": ["other.example.com"],
            "resources": ["avatarsessions"],
            "verbs": ["get", "watch"],
            "resourceNames": ["other-group"],
        },
        _rule(["get", "watch"], None),  # every name, in RBAC: names no session here
        _rule(["get", "watch"], []),
        _rule(["watch", "get", "list"], ["granted"]),
        _rule(["*"], ["granted-by-star"]),
    ]
    assert granted_sessions({"rules": rules}) == {"granted", "granted-by-star"}


def test_a_malformed_rule_grants_nothing() -> None:
    rules: list[Any] = ["not a rule", {"apiGroups": GROUP, "resources": "avatarsessions"}]
    assert granted_sessions({"rules": rules}) == frozenset()


# -- placement ------------------------------------------------------------------------------


def _bound(
    phase: Phase, pod: str = POD, slot: int = 1, reason: CancelReason | None = None
) -> AvatarSession:
    session = _session("sess-a")
    session.status = AvatarSessionStatus(
        phase=phase, reason=reason, binding=Binding(pool="pool-a", pod=pod, slot=slot)
    )
    return session


def test_a_session_bound_here_runs_on_its_slot() -> None:
    assert place(_bound(Phase.STARTING), pod=POD, slots=2) == 1
    assert place(_bound(Phase.RUNNING), pod=POD, slots=2) == 1


@pytest.mark.parametrize(
    ("session", "why"),
    [
        (_session("sess-a"), "not bound"),
        (_bound(Phase.STARTING, pod="pool-a-other"), "bound to another worker, pool-a-other"),
        (_bound(Phase.STARTING, slot=2), "slot 2 is beyond this worker's 2 slots"),
        (_bound(Phase.ENDING), "the session is ending"),
        (_bound(Phase.CANCELED, reason=CancelReason.USER_CANCELED), "the session is canceled"),
    ],
)
def test_a_session_not_for_this_worker_is_refused(session: AvatarSession, why: str) -> None:
    refused = place(session, pod=POD, slots=2)
    assert isinstance(refused, Refused)
    assert why in refused.why


def test_a_slot_is_held_until_its_session_releases_it() -> None:
    table = SlotTable(2)
    assert table.take(0, "a")
    assert not table.take(0, "b")
    assert not table.take(0, "a")  # granted again while still leaving: it waits for itself
    assert table.take(1, "b")
    table.release(0, "b")  # not its slot: nothing happens
    assert table.holder(0) == "a"
    table.release(0, "a")
    assert table.holder(0) is None
    assert table.take(0, "b")
    assert (table.holder(0), table.holder(1)) == ("b", "b")
    with pytest.raises(ValueError, match="slot 2"):
        table.take(2, "c")


# -- leaving --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "mode"),
    [
        (None, None),
        (AvatarSessionStatus(), None),
        (AvatarSessionStatus(phase=Phase.STARTING), None),
        (AvatarSessionStatus(phase=Phase.RUNNING), None),
        (AvatarSessionStatus(phase=Phase.ENDING, reason=EndReason.USER_ENDED), DrainMode.FINISH),
        (
            AvatarSessionStatus(phase=Phase.ENDING, reason=EndReason.MAX_DURATION_REACHED),
            DrainMode.CUT,
        ),
        (AvatarSessionStatus(phase=Phase.ENDED, reason=EndReason.USER_ENDED), DrainMode.CUT),
        (
            AvatarSessionStatus(phase=Phase.FAILED, reason=FailureReason.WORKER_LOST),
            DrainMode.CUT,
        ),
    ],
)
def test_a_slot_leaves_once_its_session_is_over(
    status: AvatarSessionStatus | None, mode: DrainMode | None
) -> None:
    assert leave_mode(status) == mode


# -- settings -------------------------------------------------------------------------------

POOL_ENV = {
    contract.ENV_SESSION_NAMESPACE: "tenant-ns",
    contract.ENV_POD_NAME: POD,
    contract.ENV_POOL_NAME: "pool-a",
    contract.ENV_WORKER_GRANT: ROLE,
    contract.ENV_WORKER_SLOTS: "4",
    contract.ENV_AVATAR_STORE: "/store",
    contract.ENV_TRANSPORT_ALLOWED_CIDRS: "10.0.0.0/8",
}


def test_the_pool_settings_come_from_the_pod_environment() -> None:
    config = PoolConfig.from_env([], POOL_ENV)
    assert (config.namespace, config.pod_name, config.grant, config.slots, config.pool) == (
        "tenant-ns",
        POD,
        ROLE,
        4,
        "pool-a",
    )
    assert config.ready_file == contract.WORKER_READY_FILE
    assert config.qualities == {Quality.MOCK, Quality.LITE}
    assert config.worker.namespace == "tenant-ns"
    assert config.worker.session_name is None
    assert config.worker.avatar_store == "/store"
    assert config.worker.transport_allow.networks
    served = PoolConfig.from_env(
        ["--ready-file", "/tmp/x"], {**POOL_ENV, contract.ENV_SERVED_QUALITIES: "standard"}
    )
    assert served.ready_file == "/tmp/x"
    assert served.qualities == {Quality.STANDARD}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({contract.ENV_WORKER_GRANT: ""}, contract.ENV_WORKER_GRANT),
        ({contract.ENV_POD_NAME: " "}, contract.ENV_POD_NAME),
        ({contract.ENV_WORKER_SLOTS: "0"}, "from 1 to 64"),
        ({contract.ENV_WORKER_SLOTS: "65"}, "from 1 to 64"),
        ({contract.ENV_WORKER_SLOTS: "two"}, "from 1 to 64"),
        ({contract.ENV_SERVED_QUALITIES: "ultra"}, "not a quality tier"),
    ],
)
def test_bad_pool_settings_are_refused(
    change: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        PoolConfig.from_env([], {**POOL_ENV, **change})
    assert message in capsys.readouterr().err
