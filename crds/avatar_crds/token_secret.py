"""Whether a session's token Secret is really its own: shared by the operator (before it
mounts it into a session's own worker pod) and a pool worker (before it uses it for a slot)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from avatar_crds import contract
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import controls


def foreign_token_secret(
    session_name: str, session_uid: str | None, secret_metadata: Mapping[str, Any] | None
) -> str | None:
    """Why the Secret the session names must not be used as its token, or None.

    The CRD already ties the name to the session (`<session>-token`), but a Secret of that
    name may predate the session: another session's of the same name awaiting garbage
    collection, or anything someone else created. Only the one the API made for this very
    session (owned by its uid, labelled for it) is its token. An absent Secret (None) is not
    refused: the API creates it just after the session. The message names the Secret, never
    its contents."""
    if secret_metadata is None:
        return None
    name = contract.token_secret_name(session_name)
    owned = controls(AVATAR_SESSION.kind, session_uid, dict(secret_metadata))
    labels = secret_metadata.get("labels") or {}
    expected = {
        contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
        contract.LABEL_SESSION: session_name,
    }
    labelled = all(labels.get(label) == value for label, value in expected.items())
    if owned and labelled:
        return None
    missing = "owned by" if not owned else "labelled for"
    return f"token Secret {name} is not {missing} this session; refusing to use it"
