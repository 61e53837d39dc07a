"""CEL rules (`x-kubernetes-validations`) carried on the pydantic models into the CRDs.

Each rule has a pydantic twin on the same model, so the API rejects what the API server would,
with the same message; tests check both sides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

VALIDATIONS_KEY = "x-kubernetes-validations"


@dataclass(frozen=True)
class Rule:
    rule: str
    message: str

    def as_schema(self) -> dict[str, str]:
        return {"rule": self.rule, "message": self.message}


def rules(*items: Rule, **extra: Any) -> dict[str, Any]:
    """A `json_schema_extra` value holding these rules (plus any other schema keywords)."""
    return {VALIDATIONS_KEY: [item.as_schema() for item in items], **extra}


def cel_list(values: Iterable[str]) -> str:
    """A CEL list literal of strings, sorted for stable output: `['a', 'b']`."""
    return "[" + ", ".join(f"'{value!s}'" for value in sorted(values)) + "]"


IMMUTABLE = Rule("self == oldSelf", "is immutable")
