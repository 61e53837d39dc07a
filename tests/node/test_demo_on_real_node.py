"""The README's main job with worker pods on the real node: `tools/demo.sh --real-node` builds
the worker image, runs the real kubelet on containerd, and the demo session's lite avatar talks
from a container there (its portrait from the API's store through a PersistentVolume); its
recording holds decodable frames. Ctrl-C then stops everything, the node included."""

from __future__ import annotations

import os
import re
from pathlib import Path

import av
import pytest

from testbed import images
from tests.demo.stack_process import START_DEADLINE, DemoProcess, processes_mentioning

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="the real node needs root (containers, cgroups, mounts, a bridge)"
    ),
    pytest.mark.real_node,
    pytest.mark.images,
    pytest.mark.timeout(2 * images.BUILD_TIMEOUT),
]

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_sh_runs_its_workers_on_the_real_node_and_stops_it(tmp_path: Path) -> None:
    recording = tmp_path / "demo.mp4"
    demo = DemoProcess(
        [str(REPO_ROOT / "tools" / "demo.sh"), "--real-node", "--no-browser-page",
         "--record", str(recording), "--record-seconds", "2"],
        tmp_path / "demo.log",
        {},
    )  # fmt: skip
    try:
        demo.wait_line("Ctrl-C stops everything", START_DEADLINE + images.BUILD_TIMEOUT)
        print(demo.output[demo.seen("TIMING ")])
        assert re.search(r"session sess_\w+ is running", demo.output[demo.seen("is running")])
        # The workers are pods of the real node (kubectl's hint names it), not the local node's.
        assert re.search(r"their workers on node real-node-\w+", demo.output[demo.seen("-o wide")])
        with av.open(str(recording)) as container:
            assert sum(1 for _ in container.decode(video=0)) >= 10
        run_dir = demo.run_dir()
        assert any("kubelet" in p for p in processes_mentioning(run_dir)), "no kubelet running"
    finally:
        code = demo.interrupt(timeout=180)
    assert code == 130, demo.tail()
    assert processes_mentioning(run_dir) == [], "processes outlived Ctrl-C"
    assert not Path(run_dir).exists()
