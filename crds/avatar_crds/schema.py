"""Turn a pydantic model's JSON Schema into a Kubernetes structural OpenAPI v3 schema.

Kubernetes accepts a subset of OpenAPI v3.0 and demands a *structural* schema: no `$ref`,
every node typed, `properties` never beside `additionalProperties`, nullability spelled
`nullable: true`. Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_DROPPED_KEYS = frozenset({"title", "examples", "discriminator", "const"})
_NULL = {"type": "null"}
_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_ANY_JSON = {_PRESERVE: True}


class SchemaError(ValueError):
    """The model uses a JSON Schema construct that has no structural equivalent."""


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Any] = raw.pop("$defs", {})
    return _convert(raw, defs, path=model.__name__)


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline `$ref` and unwrap `anyOf [X, null]`, keeping the node's own keywords on top."""
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**_resolve(target, defs), **node}
    if "anyOf" in node:
        options = [_resolve(option, defs) for option in node.pop("anyOf") if option != _NULL]
        merged = options[0] if len(options) == 1 else _merge_string_enums(options)
        node = {**merged, **node}
        if node.get("default", 0) is None and not node.get("nullable"):
            del node["default"]  # None is the same as absent; only nullable fields keep null
    if "const" in node:
        node.setdefault("enum", [node["const"]])
    return node


def _merge_string_enums(options: list[dict[str, Any]]) -> dict[str, Any]:
    if not all(option.get("type") == "string" and "enum" in option for option in options):
        raise SchemaError(f"only unions of string enums are supported, got {options}")
    values = [value for option in options for value in option["enum"]]
    return {"type": "string", "enum": values}


def _convert(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out[key] = {
                name: _convert(child, defs, f"{path}.{name}") for name, child in value.items()
            }
        elif key == "items":
            out[key] = _convert(value, defs, f"{path}[]")
        elif key == "additionalProperties":
            if isinstance(value, dict) and value:
                out[key] = _convert(value, defs, f"{path}{{}}")
            elif value is True or value == {}:
                out.update(_ANY_JSON)  # a free-form JSON object
            # `false` (extra="forbid") is left to the API server's pruning.
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        else:
            out[key] = value
    if "type" not in out:
        if out.get("x-kubernetes-int-or-string"):
            return out  # a number or a string: the one structural node that has no type
        if "properties" in out or out.get("x-kubernetes-preserve-unknown-fields"):
            out["type"] = "object"
        else:
            raise SchemaError(f"{path}: every node of a structural schema needs a type: {node}")
    if out["type"] == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out
