"""The client ships on its own: it imports nothing of the server side, and needs only what its
pyproject declares."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[1]
DECLARED = {"httpx", "pydantic"}


def _imported_top_level_names() -> set[str]:
    names: set[str] = set()
    for source in (CLIENT / "facecast").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_the_package_imports_only_the_standard_library_and_its_dependencies() -> None:
    outside = _imported_top_level_names() - sys.stdlib_module_names - {"facecast", "__future__"}
    assert outside == DECLARED


def test_its_dependencies_are_declared_and_it_is_typed() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "facecast"
    declared = {spec.split(">")[0].split("=")[0].strip() for spec in project["dependencies"]}
    assert declared == DECLARED
    assert (CLIENT / "facecast" / "py.typed").is_file()
    assert (CLIENT / project["readme"]).is_file()
