"""The README's main-job command, end to end: tools/demo.sh brings up the whole stack, the demo
session's worker (a real pod run by the local node) reaches `running`, and the recording holds
decodable frames. Then the same stack under Ctrl-C: everything stops, nothing is left behind."""

from __future__ import annotations

import re
from pathlib import Path

import av

from tests.demo.stack_process import REPO_ROOT, DemoProcess, processes_mentioning

START_DEADLINE = 420.0


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_demo_sh_runs_to_first_frame_and_records(
    tmp_path: Path, web_packages: dict[str, str]
) -> None:
    recording = tmp_path / "demo.mp4"
    demo = DemoProcess(
        [str(REPO_ROOT / "tools" / "demo.sh"), "--exit-after-first-frame",
         "--record", str(recording), "--record-seconds", "2"],
        tmp_path / "demo.log",
        web_packages,
    )  # fmt: skip
    timing = demo.wait_line("TIMING ", START_DEADLINE)
    print(timing)  # the command's start to the first frame, and POST /v1/sessions to it
    running = demo.wait_line("is running; recorded", 60)
    assert re.search(r"session sess_\w+ is running", running)
    demo.wait_line("kubectl -n facecast get avs", 30)
    assert demo.popen.wait(timeout=120) == 0, demo.tail()
    assert _frames(recording) >= 10
    run_dir = demo.run_dir()
    assert not Path(run_dir).exists()
    assert processes_mentioning(run_dir) == []


def test_ctrl_c_stops_everything(tmp_path: Path, web_packages: dict[str, str]) -> None:
    import sys

    demo = DemoProcess(
        [sys.executable, "-m", "tools.localstack", "--record", str(tmp_path / "r.mp4"),
         "--record-seconds", "1"],
        tmp_path / "demo.log",
        web_packages,
        sigint_ignored=True,
    )  # fmt: skip
    demo.wait_line("Ctrl-C stops everything", START_DEADLINE)
    run_dir = demo.run_dir()
    assert any("avatar_worker" in p for p in processes_mentioning(run_dir)), "worker not running"
    assert demo.interrupt(timeout=120) == 130, demo.tail()
    assert processes_mentioning(run_dir) == [], "processes outlived Ctrl-C"
    assert "stopped" in demo.tail()
