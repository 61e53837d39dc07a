"""The README's main-job command, end to end: tools/demo.sh brings up the whole stack, the demo
session's worker (a pod on the real node as root, as the suite runs; test_demo_on_local_node.py
has the stand-in) reaches `running`, and the recording holds decodable frames. Then Ctrl-C on
that same run: everything stops, the node included, nothing is left behind."""

from __future__ import annotations

import os
import re
from pathlib import Path

import av
import pytest

from tests.demo.stack_process import REAL_NODE_START_DEADLINE, DemoRun, processes_mentioning

# The shared demo run starts in the first of these tests: minutes on a cold machine.
pytestmark = pytest.mark.timeout(REAL_NODE_START_DEADLINE + 300)


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_demo_sh_runs_to_first_frame_and_records(demo_run: DemoRun) -> None:
    demo = demo_run.process
    timing = demo.seen("TIMING ")
    # The command's start to the first frame, and POST /v1/sessions to it.
    print(demo.output[timing])
    running = demo.seen("is running; recorded")
    assert re.search(r"session sess_\w+ is running", demo.output[running])
    assert timing < running < demo.seen("kubectl -n facecast get avs")
    assert _frames(demo_run.recording) >= 10


def test_ctrl_c_stops_everything(demo_run_to_stop: DemoRun) -> None:
    demo = demo_run_to_stop.process
    run_dir = demo.run_dir()
    # Its worker is a container of the real node's (whose kubelet runs from the run directory),
    # or without root a process of the local node's.
    on_real_node = "their workers on node real-node-" in demo.output[demo.seen("-o wide")]
    assert on_real_node is (os.geteuid() == 0)
    worker = "kubelet" if on_real_node else "avatar_worker"
    assert any(worker in p for p in processes_mentioning(run_dir)), f"no {worker} running"
    assert demo.interrupt(timeout=120) == 130, demo.tail()
    assert processes_mentioning(run_dir) == [], "processes outlived Ctrl-C"
    assert "stopped" in demo.tail()
    assert not Path(run_dir).exists()
