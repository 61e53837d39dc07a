"""values.schema.json types every value values.yaml documents, and helm refuses a wrong one.

The cases are derived from values.yaml itself: every value (and every field of the first
element of a list of objects) gets a value of a type its schema does not allow, and every
object with fixed fields gets an unknown key. A value added to values.yaml without a schema
entry fails here too.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from testbed.helm import Helm
from tests.chart.rendering import CHART, template_args, to_json_arg

Path_ = tuple[str | int, ...]

VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
# One example value per JSON type; a wrong value is the first whose type is not allowed.
CANDIDATES: list[tuple[str, Any]] = [
    ("boolean", True),
    ("string", "not-the-right-type"),
    ("integer", 7),
    ("array", [1]),
    ("object", {"unexpected": "object"}),
]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/definitions/")
        node = SCHEMA["definitions"][name]
    return node


def allowed_types(node: dict[str, Any]) -> set[str]:
    node = resolve(node)
    declared = node.get("type")
    assert declared, f"no type in schema node {node}"
    types = {declared} if isinstance(declared, str) else set(declared)
    if "number" in types:
        types.add("integer")
    return types


def walk(value: Any, node: dict[str, Any], path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """Every (path, schema node) under `value`, itself included."""
    node = resolve(node)
    yield path, node
    if isinstance(value, dict) and "properties" in node:
        missing = set(value) - set(node["properties"])
        assert not missing, f"{'.'.join(map(str, path))}: no schema for {sorted(missing)}"
        for key, item in value.items():
            yield from walk(item, node["properties"][key], (*path, key))
    elif isinstance(value, list) and value and "properties" in resolve(node.get("items", {})):
        yield from walk(value[0], node["items"], (*path, 0))


def pointer(path: Path_) -> str:
    return "/" + "/".join(str(part) for part in path)


def case_id(path: Path_) -> str:
    return ".".join(str(part) for part in path)


ALL = [(path, node) for path, node in walk(VALUES, SCHEMA) if path]
OBJECTS = [(path, node) for path, node in walk(VALUES, SCHEMA) if "properties" in node]
MAPS = [
    (path, node)
    for path, node in walk(VALUES, SCHEMA)
    if isinstance(node.get("additionalProperties"), dict)
]


def set_at(path: Path_, new: Any) -> str:
    """A --set-json of the whole top-level value with `new` at `path`: lists are replaced
    whole by helm, so the wrong value travels inside an otherwise valid copy."""
    top = path[0]
    assert isinstance(top, str)
    if len(path) == 1:
        return to_json_arg(top, new)
    document = copy.deepcopy(VALUES[top])
    target = document
    for part in path[1:-1]:
        target = target[part]
    target[path[-1]] = new
    return to_json_arg(top, document)


def test_every_value_has_a_typed_schema() -> None:
    assert SCHEMA["additionalProperties"] is False
    assert len(ALL) > 100
    for path, node in ALL:
        assert allowed_types(node), case_id(path)
        if "properties" in node:
            assert node.get("additionalProperties") is False, case_id(path)


@pytest.mark.parametrize(("path", "node"), ALL, ids=[case_id(p) for p, _ in ALL])
def test_a_wrong_type_is_refused(helm: Helm, path: Path_, node: dict[str, Any]) -> None:
    allowed = allowed_types(node)
    wrong = next(value for kind, value in CANDIDATES if kind not in allowed)
    result = helm.run(*template_args("facecast", set_jsons=[set_at(path, wrong)]), check=False)
    assert result.returncode != 0, f"{case_id(path)}={wrong!r} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert f"at '{pointer(path)}'" in result.stderr, result.stderr


@pytest.mark.parametrize(("path", "node"), OBJECTS, ids=[case_id(p) or "." for p, _ in OBJECTS])
def test_an_unknown_key_is_refused(helm: Helm, path: Path_, node: dict[str, Any]) -> None:
    if not path:
        arg = to_json_arg("unknownTopLevelKey", 1)
    else:
        target: Any = VALUES
        for part in path:
            target = target[part]
        arg = set_at(path, {**target, "unknownKey": 1})
    result = helm.run(*template_args("facecast", set_jsons=[arg]), check=False)
    assert result.returncode != 0, f"unknown key under {case_id(path)} was accepted"
    assert "additional properties" in result.stderr, result.stderr


@pytest.mark.parametrize(("path", "node"), MAPS, ids=[case_id(p) for p, _ in MAPS])
def test_a_wrong_type_inside_a_map_is_refused(
    helm: Helm, path: Path_, node: dict[str, Any]
) -> None:
    """Labels, annotations, node selectors, resource quantities: each entry is typed too."""
    allowed = allowed_types(node["additionalProperties"])
    wrong = next(value for kind, value in CANDIDATES if kind not in allowed)
    result = helm.run(
        *template_args("facecast", set_jsons=[set_at(path, {"some-key": wrong})]), check=False
    )
    assert result.returncode != 0, f"{case_id(path)}: an entry {wrong!r} was accepted"
    assert f"at '{pointer((*path, 'some-key'))}'" in result.stderr, result.stderr
