"""The README's main-job command, end to end: tools/demo.sh brings up the whole stack, the demo
session's worker (a real pod run by the local node) reaches `running`, and the recording holds
decodable frames. Then Ctrl-C on that same run: everything stops, nothing is left behind."""

from __future__ import annotations

import re
from pathlib import Path

import av

from tests.demo.stack_process import DemoRun, processes_mentioning


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
    assert any("avatar_worker" in p for p in processes_mentioning(run_dir)), "worker not running"
    assert demo.interrupt(timeout=120) == 130, demo.tail()
    assert processes_mentioning(run_dir) == [], "processes outlived Ctrl-C"
    assert "stopped" in demo.tail()
    assert not Path(run_dir).exists()
