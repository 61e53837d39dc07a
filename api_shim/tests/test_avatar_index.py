"""The avatar cache without a cluster: what a LIST and each watch event leave in it, and that it
answers nothing while out of sync. (Its watch on the real API server is tested in
test_admission_on_control_plane.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from api_shim.avatar_index import AvatarIndex
from avatar_crds.avatar import Avatar
from avatar_crds.ids import AVATAR_PREFIX, new_public_id
from testbed.objects import avatar_manifest


@pytest.fixture
def index() -> AvatarIndex:
    return AvatarIndex(None)


def raw_avatar(tenant: str = "acme") -> dict[str, Any]:
    raw = avatar_manifest(new_public_id(AVATAR_PREFIX), tenant)
    Avatar.model_validate(raw)  # the fixture itself must be valid
    return raw


def name_of(raw: dict[str, Any]) -> str:
    return str(raw["metadata"]["name"])


def test_out_of_sync_it_knows_no_avatar(index: AvatarIndex) -> None:
    first = raw_avatar()
    index._apply("ADDED", first)
    assert index.get(name_of(first)) is None
    index._replace([first], 0.0)
    found = index.get(name_of(first))
    assert found is not None
    assert found.spec.tenant == "acme"
    index._lost()
    assert index.get(name_of(first)) is None


def test_a_list_is_the_new_truth_and_events_follow_it(index: AvatarIndex) -> None:
    kept, dropped, added = raw_avatar(), raw_avatar(), raw_avatar("globex")
    index._replace([kept, dropped], 0.0)
    index._replace([kept], 0.0)
    assert index.get(name_of(dropped)) is None
    index._apply("ADDED", added)
    found = index.get(name_of(added))
    assert found is not None
    assert found.spec.tenant == "globex"
    index._apply("DELETED", kept)
    assert index.get(name_of(kept)) is None


def test_what_this_process_deleted_is_forgotten_at_once(index: AvatarIndex) -> None:
    avatar = raw_avatar()
    index._replace([avatar], 0.0)
    index.forget(name_of(avatar))
    assert index.get(name_of(avatar)) is None


def test_an_object_that_does_not_validate_is_not_kept(index: AvatarIndex) -> None:
    avatar = raw_avatar()
    index._replace([avatar], 0.0)
    broken = {**avatar, "spec": {**avatar["spec"], "visibility": "everyone"}}
    index._apply("MODIFIED", broken)
    assert index.get(name_of(avatar)) is None  # lookups fall back to the API server
