"""Fixtures for the demo tests: the npm packages and Chromium that tools/test.sh installs, and the
one demo run that the command, page and Ctrl-C tests share (a stack of its own for each of them
cost CI about two minutes)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.demo.stack_process import REAL_NODE_START_DEADLINE, REPO_ROOT, DemoProcess, DemoRun


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


@pytest.fixture(scope="session")
def demo_run(
    web_packages: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoRun]:
    """The README's command, `tools/demo.sh`, up to its last instruction line and left running.

    Started as a shell without job control starts `cmd &` (SIGINT ignored), the harder case for
    Ctrl-C. `demo_run_to_stop` stops it; this only stops a run that no test stopped."""
    directory = tmp_path_factory.mktemp("demo")
    recording = directory / "demo.mp4"
    demo = DemoProcess(
        [str(REPO_ROOT / "tools" / "demo.sh"), "--record", str(recording),
         "--record-seconds", "2"],
        directory / "demo.log",
        web_packages,
        sigint_ignored=True,
    )  # fmt: skip
    try:
        demo.wait_line("Ctrl-C stops everything", REAL_NODE_START_DEADLINE)
        yield DemoRun(demo, recording)
    finally:
        if demo.popen.poll() is None:
            demo.interrupt(timeout=120)


@pytest.fixture
def demo_run_to_stop(demo_run: DemoRun) -> DemoRun:
    """The shared run, for the test that stops it: it runs after every other test that uses
    `demo_run` (pytest_collection_modifyitems below)."""
    return demo_run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests that stop the shared demo run right after its last other user, so that
    neither file order nor a command line's order of paths stops it early, and it does not stay
    up through the rest of the suite."""

    def uses(item: pytest.Item, fixture: str) -> bool:
        return isinstance(item, pytest.Function) and fixture in item.fixturenames

    stoppers = [item for item in items if uses(item, "demo_run_to_stop")]
    if not stoppers:
        return
    rest = [item for item in items if not uses(item, "demo_run_to_stop")]
    users = [index for index, item in enumerate(rest) if uses(item, "demo_run")]
    if not users:
        return
    at = users[-1] + 1
    items[:] = rest[:at] + stoppers + rest[at:]
