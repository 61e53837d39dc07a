"""Status, Avatar and Tenant validation rules, each with a passing and a failing example."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from avatar_crds import ids
from avatar_crds.avatar import AvatarSpec
from avatar_crds.enums import REASONS_BY_PHASE, Phase
from avatar_crds.session import AvatarSessionStatus
from avatar_crds.tenant import Plan, TenantSpec

SpecFactory = Callable[..., dict[str, Any]]


@pytest.mark.parametrize("phase", list(REASONS_BY_PHASE))
def test_terminal_phase_needs_a_reason_of_its_own_kind(phase: Phase) -> None:
    reason = sorted(REASONS_BY_PHASE[phase])[0]
    AvatarSessionStatus.model_validate({"phase": phase, "reason": reason})
    with pytest.raises(ValidationError, match="needs a reason"):
        AvatarSessionStatus.model_validate({"phase": phase})
    foreign = next(r for p, rs in REASONS_BY_PHASE.items() if p != phase for r in rs)
    with pytest.raises(ValidationError):
        AvatarSessionStatus.model_validate({"phase": phase, "reason": foreign})


def test_reason_is_a_closed_enum() -> None:
    with pytest.raises(ValidationError):
        AvatarSessionStatus.model_validate({"phase": "failed", "reason": "cosmic_rays"})


def test_worker_counters_cannot_go_negative() -> None:
    AvatarSessionStatus.model_validate({"worker": {"frames": 0, "billableSeconds": 0}})
    with pytest.raises(ValidationError):
        AvatarSessionStatus.model_validate({"worker": {"frames": -1}})


def test_face_box_must_lie_inside_the_image(
    avatar_spec: dict[str, Any], make_avatar_spec: SpecFactory
) -> None:
    AvatarSpec.model_validate(avatar_spec)
    outside = make_avatar_spec()
    outside["face"]["box"]["x"] = 400  # 400 + 300 > 600
    with pytest.raises(ValidationError, match="inside the image"):
        AvatarSpec.model_validate(outside)


@pytest.mark.parametrize(
    ("path", "good", "bad"),
    [
        (("image", "width"), 800, 801),
        (("image", "sha256"), "a" * 64, "A" * 64),
        (("face", "score"), 1.0, 1.1),
        (("face", "landmarks"), [{"x": 1, "y": 1}] * 5, [{"x": 1, "y": 1}] * 4),
        (("visibility",), "public", "everyone"),
    ],
)
def test_avatar_field_rule(
    path: tuple[str, ...], good: Any, bad: Any, make_avatar_spec: SpecFactory
) -> None:
    for value, ok in ((good, True), (bad, False)):
        spec = make_avatar_spec()
        target = spec
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        if ok:
            AvatarSpec.model_validate(spec)
        else:
            with pytest.raises(ValidationError):
                AvatarSpec.model_validate(spec)


def test_plan_rules() -> None:
    assert Plan().max_session_duration_seconds == 600
    Plan.model_validate({"allowedQualities": ["mock", "pro"], "maxSessionDurationSeconds": 3600})
    with pytest.raises(ValidationError):
        Plan.model_validate({"allowedQualities": []})
    with pytest.raises(ValidationError):
        Plan.model_validate({"allowedQualities": ["lite", "lite"]})
    with pytest.raises(ValidationError):
        Plan.model_validate({"maxSessionDurationSeconds": 3601})


def test_api_keys_are_only_hashes() -> None:
    key = {"id": ids.new_public_id(ids.API_KEY_PREFIX), "sha256": "b" * 64, "hint": "x9Zq"}
    TenantSpec.model_validate({"apiKeys": [key]})
    with pytest.raises(ValidationError):
        TenantSpec.model_validate({"apiKeys": [{**key, "key": "fc_live_secret"}]})


def test_public_ids_map_to_kubernetes_names_and_back() -> None:
    public = ids.new_public_id(ids.SESSION_PREFIX)
    name = ids.to_resource_name(public, ids.SESSION_PREFIX)
    assert name.startswith("sess-")
    assert name == name.lower()
    assert ids.to_public_id(name) == public
    with pytest.raises(ValueError, match="not a valid"):
        ids.to_resource_name(public, ids.AVATAR_PREFIX)
    with pytest.raises(ValueError, match="id-shaped"):
        ids.to_public_id("sess-not-a-ulid")
