"""The README's main job with `--local-node`, the way it runs without root: the demo session's
worker is a process of this checkout on the local node (runner.py, a kubelet stand-in), not a
container on the real kubelet; it reaches `running` and its recording holds decodable frames.
Ctrl-C then stops everything, the local node and its worker processes included."""

from __future__ import annotations

import re
from pathlib import Path

import av
import pytest

from tests.demo.stack_process import REPO_ROOT, START_DEADLINE, DemoProcess, processes_mentioning


@pytest.mark.timeout(START_DEADLINE + 180)
def test_demo_sh_with_local_node_runs_its_workers_as_processes_and_stops_them(
    tmp_path: Path,
) -> None:
    recording = tmp_path / "demo.mp4"
    demo = DemoProcess(
        [str(REPO_ROOT / "tools" / "demo.sh"), "--local-node", "--no-browser-page",
         "--record", str(recording), "--record-seconds", "2"],
        tmp_path / "demo.log",
        {},
    )  # fmt: skip
    try:
        demo.wait_line("Ctrl-C stops everything", START_DEADLINE)
        assert re.search(r"session sess_\w+ is running", demo.output[demo.seen("is running")])
        assert "their workers on node local-gpu-0" in demo.output[demo.seen("-o wide")]
        with av.open(str(recording)) as container:
            assert sum(1 for _ in container.decode(video=0)) >= 10
        run_dir = demo.run_dir()
        assert any("avatar_worker" in p for p in processes_mentioning(run_dir)), "no worker"
    finally:
        code = demo.interrupt(timeout=120)
    assert code == 130, demo.tail()
    assert processes_mentioning(run_dir) == [], "processes outlived Ctrl-C"
    assert not Path(run_dir).exists()
