"""The operator's unit tests. Like the other members' test folders, this one is deliberately not
a package, so nothing here is importable by name."""

from __future__ import annotations

import importlib
import sys


def _unshadow_stdlib_operator() -> None:
    """pytest's importlib mode names the modules here `operator.tests.*` and, to import their
    parent, loads the workspace folder `operator/` as a namespace package in place of the
    standard library's `operator` module (which `collections`, pydantic and kopf import). Put the
    standard module back before anything imports it again."""
    loaded = sys.modules.get("operator")
    if loaded is not None and getattr(loaded, "__file__", None) is None:
        del sys.modules["operator"]
        importlib.import_module("operator")


_unshadow_stdlib_operator()
