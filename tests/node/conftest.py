"""The real node (testbed/real_node.py: the real kubelet on containerd) for these tests, with
the worker image built by testbed/images.py imported into it. Needs root and a Docker engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import images
from testbed.controlplane import ControlPlane
from testbed.real_node import RealNode, running_real_node


@pytest.fixture(scope="session")
def worker_image(tmp_path_factory: pytest.TempPathFactory) -> images.BuiltImage:
    try:
        images.require_engine()
    except images.DockerUnavailableError as error:
        pytest.fail(str(error))
    context = images.snapshot_context(tmp_path_factory.mktemp("node-context"))
    return images.build("worker", context)


@pytest.fixture(scope="module")
def real_node(
    control_plane: ControlPlane,
    worker_image: images.BuiltImage,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RealNode]:
    directory: Path = tmp_path_factory.mktemp("real-node")
    with running_real_node(control_plane, directory, gpus=1, images=(worker_image.tag,)) as node:
        yield node
