"""Public ids (`sess_<ULID>`, `av_<ULID>`) and the Kubernetes object names they map to.

Kubernetes names are lowercase DNS subdomains, so `sess_01JC...` is stored as `sess-01jc...`.
Crockford base32 is case-insensitive, which makes the mapping lossless both ways.
"""

from __future__ import annotations

import re

from ulid import ULID

SESSION_PREFIX = "sess"
AVATAR_PREFIX = "av"
API_KEY_PREFIX = "key"

ULID_PATTERN = "[0-9A-HJKMNP-TV-Z]{26}"
"""A ULID in Crockford base32, as `ulid` writes it (upper case)."""
_PUBLIC = re.compile(rf"^(?P<prefix>[a-z]+)_(?P<ulid>{ULID_PATTERN})$")
_NAME = re.compile(rf"^(?P<prefix>[a-z]+)-(?P<ulid>{ULID_PATTERN.lower()})$")


def public_id_pattern(prefix: str) -> str:
    """Regex (for schemas) of a public id with this prefix: `sess_<ULID>`."""
    return rf"^{prefix}_{ULID_PATTERN}$"


def name_pattern(prefix: str) -> str:
    """Regex (for schemas) of the Kubernetes name of a resource with this id prefix."""
    return rf"^{prefix}-{ULID_PATTERN.lower()}$"


def new_public_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"


def to_resource_name(public_id: str, prefix: str) -> str:
    """`sess_01JC...` -> `sess-01jc...`; ValueError if it is not an id of that kind."""
    match = _PUBLIC.match(public_id)
    if match is None or match["prefix"] != prefix:
        raise ValueError(f"not a valid {prefix}_<ULID> id: {public_id!r}")
    return f"{prefix}-{match['ulid'].lower()}"


def to_public_id(resource_name: str) -> str:
    """`sess-01jc...` -> `sess_01JC...`; ValueError if the name is not id-shaped."""
    match = _NAME.match(resource_name)
    if match is None:
        raise ValueError(f"not an id-shaped resource name: {resource_name!r}")
    return f"{match['prefix']}_{match['ulid'].upper()}"
