"""Which sessions a pool worker's grant names (pure).

The operator lists each session bound to the worker by resourceNames in the Role it watches
(POOLS design: `avatarsessions` get,watch; its status, token Secret and Avatar beside it). A
session is granted when one rule lets the worker both read and watch it by name: that is what
serving it takes. A rule without resourceNames names no session here (in RBAC it would mean
every name, which the operator never writes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP

SERVING_VERBS = frozenset({"get", "watch"})


def granted_sessions(role: Mapping[str, Any]) -> frozenset[str]:
    """The session names the Role lets its holder get and watch."""
    names: set[str] = set()
    for rule in _list(role.get("rules")):
        if not isinstance(rule, Mapping):
            continue
        if not _names(rule.get("apiGroups"), GROUP):
            continue
        if not _names(rule.get("resources"), AVATAR_SESSION.plural):
            continue
        verbs = {verb for verb in _list(rule.get("verbs")) if isinstance(verb, str)}
        if "*" not in verbs and not verbs >= SERVING_VERBS:
            continue
        names.update(name for name in _list(rule.get("resourceNames")) if isinstance(name, str))
    return frozenset(names)


def _names(values: Any, wanted: str) -> bool:
    return any(value in (wanted, "*") for value in _list(values))


def _list(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else ()
