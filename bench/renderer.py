"""Renderer throughput per tier and resolution, and the CPU one whole session uses.

    uv run --frozen --no-sync python bench/renderer.py [--seconds 3] [--no-session]

Part 1 renders frames back to back on one thread (what the frame clock does, minus the
waiting) for `mock` and `lite` at every quality/aspect resolution plus 512x512 and 1280x720,
with the mouth moving and the head swaying, and prints frames per second and the share of one
core that 25 fps takes.

Part 2 runs `python -m avatar_worker` (lite, 640x480, VP8, synthetic speech so the face moves)
against a local livekit-server with one subscriber, and reads the worker process's CPU time
from /proc: cores used by one session including rendering, VP8 and Opus encoding, and
everything else. Not part of the test suite; the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for testbed and worker_image.tests

from avatar_crds.enums import AspectRatio, Quality  # noqa: E402
from avatar_worker.render.base import FrameRequest, Renderer  # noqa: E402
from avatar_worker.render.lite import LiteRenderer  # noqa: E402
from avatar_worker.render.mock import MockRenderer  # noqa: E402
from avatar_worker.render.portrait import FaceGeometry, Portrait  # noqa: E402
from avatar_worker.render.resolution import FPS, resolution  # noqa: E402
from avatar_worker.render.visemes import MouthShape  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def portrait() -> Portrait:
    from worker_image.tests.astronaut import ASTRONAUT_FACE, astronaut_rgb

    return Portrait(image=astronaut_rgb(), face=FaceGeometry.from_face(ASTRONAUT_FACE))


def make(tier: str, size: tuple[int, int]) -> Renderer:
    if tier == "mock":
        return MockRenderer(*size)
    return LiteRenderer(portrait(), size)


def fps_of(renderer: Renderer, seconds: float) -> float:
    requests = [
        FrameRequest(
            index=i,
            time_s=i / FPS,
            mouth=MouthShape(open=0.5 + 0.5 * np.sin(i / 3), width=float(np.sin(i / 7))),
            speaking=True,
        )
        for i in range(250)
    ]
    renderer.render(requests[:5])  # warm up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        renderer.render([requests[done % len(requests)]])
        done += 1
    return done / (time.perf_counter() - start)


def renderer(seconds: float) -> None:
    sizes: dict[tuple[int, int], list[str]] = {}
    for quality in Quality:
        for aspect in AspectRatio:
            sizes.setdefault(resolution(quality, aspect), []).append(f"{quality.value} {aspect}")
    sizes.setdefault((512, 512), []).append("512x512")
    sizes.setdefault((1280, 720), []).append("1280x720")
    print(
        f"{'renderer':<8} {'size':>10}  {'fps':>6}  {'core at 25 fps':>14}  session resolution of"
    )
    for tier in ("mock", "lite"):
        for size, labels in sizes.items():
            fps = fps_of(make(tier, size), seconds)
            print(
                f"{tier:<8} {size[0]:>4}x{size[1]:<5}  {fps:6.0f}  {FPS / fps:14.1%}  "
                + ", ".join(labels)
            )


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, all threads


def testenv_bin() -> Path:
    from testbed.binaries import BUILD_SCRIPT

    key = subprocess.run(
        [str(BUILD_SCRIPT), "--print-key"], check=True, capture_output=True, text=True
    ).stdout.strip()
    cache = Path(os.environ.get("FACECAST_CACHE") or Path.home() / ".cache" / "facecast")
    return Path(os.environ.get("FACECAST_TESTENV_BIN") or cache / "testenv" / key / "bin")


async def bench_session(bin_dir: Path, window: float) -> None:
    from testbed.livekit_server import running_livekit_server
    from worker_image.tests.support import (
        Subscriber,
        mint_token,
        session_resource,
        wait_until,
        write_worker_files,
    )

    with (
        tempfile.TemporaryDirectory() as tmp,
        running_livekit_server(bin_dir, Path(tmp) / "lk") as server,
    ):
        room = "bench"
        files = write_worker_files(
            Path(tmp) / "worker",
            session_resource(url=server.url, room=room, quality=Quality.LITE, synthetic=True),
            mint_token(server, "facecast-worker", room),
        )
        viewer = Subscriber(analyse=lambda frame: None)
        await viewer.join(server, room)
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "avatar_worker",
            *files.cli_args(),
            "--log-level",
            "WARNING",
            cwd=REPO_ROOT,
        )
        try:
            await wait_until(lambda: viewer.video, timeout=30, what="the first frame")
            # Synthetic speech starts 10 s after the start (nobody else speaks here).
            await asyncio.sleep(1.0)
            idle = await _measure(worker.pid, viewer, min(window, 7.0))
            await asyncio.sleep(max(0.0, 11.0 - 1.0 - min(window, 7.0)))
            speaking = await _measure(worker.pid, viewer, window)
            print(
                "\nwhole session (lite 640x480 VP8, worker process incl. encoding,"
                f" {os.cpu_count()} CPUs):"
            )
            for label, (cores, fps) in (("idle", idle), ("speaking", speaking)):
                print(f"  {label:<9} {cores:5.2f} cores   {fps:5.1f} fps received")
            statuses = [json.loads(line) for line in files.status.read_text().splitlines()]
            print(f"  frames reported: {statuses[-1]['status']['worker']['frames']}")
        finally:
            worker.terminate()
            await asyncio.wait_for(worker.wait(), timeout=30)
            await viewer.leave()


async def _measure(pid: int, viewer: object, seconds: float) -> tuple[float, float]:
    frames_before = len(viewer.video)  # type: ignore[attr-defined]
    cpu, wall = proc_cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = proc_cpu_seconds(pid) - cpu, time.monotonic() - wall
    frames = len(viewer.video) - frames_before  # type: ignore[attr-defined]
    return cpu / wall, frames / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per renderer and size")
    parser.add_argument("--no-session", action="store_true", help="skip the whole-session part")
    args = parser.parse_args()
    print(f"renderer throughput on one thread ({os.cpu_count()} CPUs, numpy {np.__version__})")
    renderer(args.seconds)
    if not args.no_session:
        asyncio.run(bench_session(testenv_bin(), window=8.0))


if __name__ == "__main__":
    main()
