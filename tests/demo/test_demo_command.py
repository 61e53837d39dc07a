"""The README's main-job command, end to end: tools/demo.sh brings up the whole stack, the demo
session's worker (a real pod run by the local node) reaches `running`, and the recording holds
decodable frames. Then Ctrl-C on that same run: everything stops, nothing is left behind. The
test-only `--exit-after-first-frame` gets a smaller run of its own (no page, one frame)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import av

from tests.demo.stack_process import START_DEADLINE, DemoProcess, DemoRun, processes_mentioning


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_exit_after_first_frame_exits_0_and_leaves_nothing(tmp_path: Path) -> None:
    # First in the file: its stack starts before the shared run's, not beside it.
    recording = tmp_path / "first.mp4"
    demo = DemoProcess(
        [sys.executable, "-m", "tools.localstack", "--exit-after-first-frame",
         "--no-browser-page", "--record", str(recording), "--record-seconds", "0"],
        tmp_path / "demo.log",
        {},
    )  # fmt: skip
    demo.wait_line("is running; recorded", START_DEADLINE)
    assert demo.popen.wait(timeout=120) == 0, demo.tail()
    assert _frames(recording) >= 1
    run_dir = demo.run_dir()
    assert not Path(run_dir).exists()
    assert processes_mentioning(run_dir) == []


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
