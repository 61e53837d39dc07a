"""Fixtures for the demo tests: the npm packages and Chromium that tools/test.sh installs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def web_packages() -> dict[str, str]:
    """FACECAST_NODE_MODULES and FACECAST_LIVEKIT_CLIENT_JS, installing them if needed."""
    if not os.environ.get("FACECAST_NODE_MODULES"):
        done = subprocess.run(
            ["bash", "-c", "source tools/bootstrap.sh >&2; ensure_web_packages >&2;"
             ' echo "$FACECAST_NODE_MODULES"; echo "$FACECAST_LIVEKIT_CLIENT_JS"'],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=600,
        )  # fmt: skip
        modules, client_js = done.stdout.split()[-2:]
        os.environ["FACECAST_NODE_MODULES"] = modules
        os.environ["FACECAST_LIVEKIT_CLIENT_JS"] = client_js
    return {
        "FACECAST_NODE_MODULES": os.environ["FACECAST_NODE_MODULES"],
        "FACECAST_LIVEKIT_CLIENT_JS": os.environ["FACECAST_LIVEKIT_CLIENT_JS"],
    }


@pytest.fixture(scope="session")
def chromium() -> str:
    found = os.environ.get("FACECAST_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("Debian's chromium is not installed: tools/test.sh installs it")
    return found
