"""The images built once per test session with the real Docker engine; their sizes and build
times are printed at the end of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import images
from testbed.images import BuiltImage

COMPONENTS = ("operator", "api", "worker")
# Each component's first build in the session, then its rebuild (which the cache should answer).
BUILDS = pytest.StashKey[dict[str, list[BuiltImage]]]()


@pytest.fixture(scope="session")
def docker_engine() -> None:
    try:
        images.require_engine()
    except images.DockerUnavailableError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def build_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state of the checkout for every build in the session."""
    return images.snapshot_context(tmp_path_factory.mktemp("context"))


@pytest.fixture(scope="session")
def builds(docker_engine: None, pytestconfig: pytest.Config) -> dict[str, list[BuiltImage]]:
    return pytestconfig.stash.setdefault(BUILDS, {})


@pytest.fixture(params=COMPONENTS)
def component(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def image(component: str, builds: dict[str, list[BuiltImage]], build_context: Path) -> BuiltImage:
    """The component's image, built on first use in the session (cold or from Docker's cache)."""
    if component not in builds:
        builds[component] = [images.build(component, build_context)]
    return builds[component][0]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    built = config.stash.get(BUILDS, {})
    if not built:
        return
    terminalreporter.section("Facecast images (classic builder, local Debian base)")
    for runs in built.values():
        times = ", then ".join(
            f"{run.build_seconds:.1f} s ({len(run.steps_run)} steps run)" for run in runs
        )
        terminalreporter.write_line(
            f"{runs[0].tag}: {runs[0].size_bytes / 1e6:.0f} MB; built in {times}"
        )
