"""A session's token Secret is its own only when the API made it for that very session."""

from __future__ import annotations

from typing import Any

import pytest

from avatar_crds import contract
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import owner_reference
from avatar_crds.token_secret import foreign_token_secret

NAME, UID = "sess-a", "uid-a"
LABELS = {contract.LABEL_MANAGED_BY: contract.MANAGED_BY, contract.LABEL_SESSION: NAME}


def metadata(**changes: Any) -> dict[str, Any]:
    base = {"labels": LABELS, "ownerReferences": [owner_reference(AVATAR_SESSION.kind, NAME, UID)]}
    return {**base, **changes}


def test_the_apis_secret_for_this_session_is_its_own() -> None:
    assert foreign_token_secret(NAME, UID, metadata()) is None


def test_an_absent_secret_is_not_refused() -> None:
    assert foreign_token_secret(NAME, UID, None) is None


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"ownerReferences": []}, "owned by"),
        ({"ownerReferences": [owner_reference(AVATAR_SESSION.kind, NAME, "uid-b")]}, "owned by"),
        ({"labels": {}}, "labelled for"),
        ({"labels": {**LABELS, contract.LABEL_SESSION: "sess-b"}}, "labelled for"),
    ],
)
def test_anything_else_is_refused_by_name_only(changes: dict[str, Any], why: str) -> None:
    refusal = foreign_token_secret(NAME, UID, metadata(**changes))
    assert refusal is not None
    assert why in refusal
    assert contract.token_secret_name(NAME) in refusal
