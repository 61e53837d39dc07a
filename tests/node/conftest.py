"""The real node (testbed/real_node.py: the real kubelet on containerd) for these tests, with
the images built by testbed/images.py imported into it. Needs root and a Docker engine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import images
from testbed.controlplane import ControlPlane
from testbed.real_node import RealNode, running_real_node

# Only an unprivileged run is skipped; anything that goes wrong on a root run fails.
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the real node needs root (containers, cgroups, mounts, a bridge)"
)


@pytest.fixture(scope="session")
def node_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, images.BuiltImage]:
    """The three images, by component (Docker's layer cache answers when tests/images built
    them already)."""
    try:
        images.require_engine()
    except images.DockerUnavailableError as error:
        pytest.fail(str(error))
    context = images.snapshot_context(tmp_path_factory.mktemp("node-context"))
    return {component: images.build(component, context) for component in images.BASE_ARGUMENTS}


@pytest.fixture(scope="module")
def real_node(
    control_plane: ControlPlane,
    node_images: dict[str, images.BuiltImage],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RealNode]:
    """A node with every image imported (containerd's root is kept: a warm run imports none)."""
    directory: Path = tmp_path_factory.mktemp("real-node")
    tags = tuple(built.tag for built in node_images.values())
    with running_real_node(control_plane, directory, gpus=1, images=tags) as node:
        yield node
