"""POST /v1/sessions -> the first video frame at a subscriber, with warm worker pools, on the
whole local stack.

    uv run --frozen --no-sync python bench/pool_first_frame.py [--sessions 50 --quality lite]
        [--avatars 1] [--keep DIR]

Starts the local stack (tools/localstack: control plane, livekit-server, operator, API, the
local GPU node running the real pool workers as processes, one WorkerPool per tier with a ready
worker before the first session), then `--sessions` sessions of the demo avatar one after
another (after one warm-up session, not counted: a fresh worker's first session opens its
first LiveKit connection). Per session: a subscriber joins a new room, the session is created,
and the time from sending the POST to the first video frame the subscriber receives from the
worker is taken; then the session is ended and the next starts once it has (so each one finds
the pool as the last one left it). The path: the API creates the session, the operator binds
it to a free slot of a ready worker and writes that worker's grant Role, the worker's watch on
its grant brings it, it reads the session, its token and its avatar, joins the room and
publishes.

By default every session is of the demo avatar, so after the warm-up a worker draws it from the
avatar it prepared before (its rig cache); `--avatars N` takes turns over N avatars, and with
more than the cache keeps every session prepares its avatar afresh (a worker's first session of
an avatar). `--keep DIR` also writes each session's timings to DIR/first_frames.jsonl (its id,
when it was posted, POST -> 201, -> video track subscribed, -> first frame), to line up with
the stack's logs there.

Reported: p50/p99/max of POST -> 201 and of POST -> first frame. The issue's goal (#21): p50
under 0.5 s and p99 under 1 s (a cold per-session pod: 3.07 s, the demo's post_to_first_frame).
The whole stack shares this machine's cores with the subscriber; the numbers depend on the
machine and its load. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for testbed, tools and the test helpers

import facecast  # noqa: E402
from avatar_worker.render.rig_cache import DEFAULT_CAPACITY  # noqa: E402
from testbed.binaries import testenv_bin_dir  # noqa: E402
from tools.localstack.stack import WORKER_IDENTITY, Stack, new_room, running_stack  # noqa: E402
from worker_image.tests.support import Subscriber, wait_until  # noqa: E402

FIRST_FRAME_TIMEOUT_S = 60.0
ENDED_TIMEOUT_S = 60.0
TERMINAL = ("ended", "failed", "canceled")


@dataclass(frozen=True)
class Sample:
    session: str
    posted_at: float  # time.time() when the POST was sent: to line up with the stack's logs
    reply_s: float  # POST -> its 201
    track_s: float  # POST -> the worker's video track subscribed at the subscriber
    first_frame_s: float  # POST -> the first video frame at the subscriber


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def one_session(
    stack: Stack, client: facecast.AsyncFacecast, quality: str, index: int, avatar_id: str
) -> Sample:
    room = new_room()
    # No frame analysis: the subscriber only notes when each frame arrives.
    viewer = Subscriber(
        f"bench-viewer-{index}", analyse=lambda rgba: None, from_identity=WORKER_IDENTITY
    )
    await viewer.join(stack.livekit, room)
    request = facecast.CreateSessionRequest.model_validate(
        {**stack.session_request(room), "quality": quality, "avatar_id": avatar_id}
    )
    try:
        posted, posted_at = time.monotonic(), time.time()
        session = await client.sessions.create(request)
        replied = time.monotonic()
        try:
            await wait_until(
                lambda: viewer.video,
                timeout=FIRST_FRAME_TIMEOUT_S,
                what=f"the first frame of {session.id}",
                interval=0.002,
            )
            assert viewer.video_track_at is not None
            return Sample(
                session.id,
                posted_at,
                replied - posted,
                viewer.video_track_at - posted,
                viewer.video[0].at - posted,
            )
        finally:
            await client.sessions.end(session.id)
            deadline = time.monotonic() + ENDED_TIMEOUT_S
            while (await client.sessions.get(session.id)).status not in TERMINAL:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{session.id} not ended in {ENDED_TIMEOUT_S:.0f} s")
                await asyncio.sleep(0.1)
    finally:
        await viewer.leave()


async def more_avatars(client: facecast.AsyncFacecast, count: int) -> list[str]:
    """`count` more avatars, each the astronaut saved at another JPEG quality: other bytes, so
    another image to prepare."""
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(data.astronaut())  # type: ignore[no-untyped-call]
    ids = []
    for n in range(count):
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=90 - n)
        avatar = await client.avatars.create(file=buffer.getvalue(), display_name=f"bench {n}")
        ids.append(avatar.id)
    return ids


async def measure(
    stack: Stack, sessions: int, quality: str, avatars: int
) -> tuple[Sample, list[Sample]]:
    async with facecast.AsyncFacecast(stack.api_key, base_url=stack.api_url) as client:
        avatar_ids = [stack.avatar_id, *await more_avatars(client, avatars - 1)]
        warm_up = await one_session(stack, client, quality, 0, avatar_ids[0])
        samples = []
        for index in range(1, sessions + 1):
            avatar_id = avatar_ids[index % len(avatar_ids)]
            samples.append(await one_session(stack, client, quality, index, avatar_id))
            first_frame_ms = samples[-1].first_frame_s * 1000
            print(f"  session {index}/{sessions}: {first_frame_ms:.0f} ms", end="\r", flush=True)
        print()
        return warm_up, samples


def report(what: str, values: list[float]) -> None:
    p50, p99 = statistics.median(values) * 1000, percentile(values, 0.99) * 1000
    print(f"{what:<36} p50 {p50:6.0f} ms   p99 {p99:6.0f} ms   max {max(values) * 1000:6.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=50, help="sessions, one after another")
    parser.add_argument("--quality", default="lite", choices=["lite", "mock"])
    parser.add_argument(
        "--avatars",
        type=int,
        default=1,
        help="sessions take turns over this many avatars; with more than a pool worker keeps"
        f" prepared ({DEFAULT_CAPACITY}), every session prepares its avatar afresh",
    )
    parser.add_argument(
        "--keep", type=Path, help="run the stack in this directory and keep it (its logs)"
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as scope:
        directory = args.keep or Path(
            scope.enter_context(tempfile.TemporaryDirectory(prefix="pool-first-frame-"))
        )
        directory.mkdir(parents=True, exist_ok=True)
        stack = scope.enter_context(running_stack(testenv_bin_dir(), directory))
        warm_up, samples = asyncio.run(
            measure(stack, args.sessions, args.quality, max(1, args.avatars))
        )
    if args.keep:
        lines = (json.dumps(dataclasses.asdict(sample)) for sample in [warm_up, *samples])
        (args.keep / "first_frames.jsonl").write_text("\n".join(lines) + "\n")
    print(
        f"\n{args.sessions} sessions, quality {args.quality}, {args.avatars} avatar(s), warm pools:"
    )
    print(f"{'warm-up session: POST -> first frame':<36} {warm_up.first_frame_s * 1000:6.0f} ms")
    report("POST /v1/sessions -> 201", [s.reply_s for s in samples])
    report("POST /v1/sessions -> first frame", [s.first_frame_s for s in samples])


if __name__ == "__main__":
    main()
