"""`python -m tools.localstack` (run by tools/demo.sh): the whole of Facecast on 127.0.0.1 with a
demo session whose avatar talks, a page to watch it and a recording of its first seconds.
Ctrl-C stops everything, in reverse order."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from livekit import rtc

from avatar_worker.process_exit import exit_without_finalizing
from testbed.binaries import testenv_bin_dir
from testbed.process import LOOPBACK, free_port
from tools.localstack import agent, recorder, web
from tools.localstack.progress import progress
from tools.localstack.stack import WORKER_IDENTITY, Stack, new_room, running_stack

FIRST_FRAME_TIMEOUT = 180.0
RUNNING_TIMEOUT = 60.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tools/demo.sh", description=__doc__)
    parser.add_argument("--no-browser-page", action="store_true", help="do not serve the page")
    parser.add_argument(
        "--record",
        type=Path,
        default=Path(tempfile.gettempdir()) / "facecast-demo.mp4",
        help="where to write the recording (default: %(default)s)",
    )
    parser.add_argument("--record-seconds", type=float, default=5.0)
    parser.add_argument("--page-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--keep", action="store_true", help="keep the run directory on exit")
    parser.add_argument(
        "--local-node",
        action="store_true",
        help="run worker pods as processes of this checkout on the local node (runner.py, a"
        " kubelet stand-in) instead of as containers of the worker image on the real kubelet;"
        " the only choice without root",
    )
    return parser


class Demo:
    """The live part: agents in rooms, the recording, the page's server."""

    def __init__(self, stack: Stack, started: float) -> None:
        self.stack = stack
        self.started = started
        self.rooms: list[rtc.Room] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.speech = agent.synthesise()
        self.client = httpx.AsyncClient(base_url=stack.api_url, timeout=60)

    async def create_session(self) -> dict[str, Any]:
        """POST /v1/sessions, then the agent joins the room and waits for the avatar."""
        room_name = new_room()
        response = await self.client.post(
            "/v1/sessions",
            headers={**self.stack.headers(), "Idempotency-Key": room_name},
            json=self.stack.session_request(room_name),
        )
        response.raise_for_status()
        session: dict[str, Any] = response.json()
        await self.start_agent(room_name)
        session["room_name"] = room_name
        session["viewer_token"] = self.stack.participant_token(
            room_name, f"viewer-{room_name}-{os.urandom(2).hex()}", publish=False
        )
        return session

    async def connect(self, room_name: str, identity: str, *, publish: bool) -> rtc.Room:
        room = rtc.Room()
        token = self.stack.participant_token(room_name, identity, publish=publish)
        await room.connect(self.stack.livekit.url, token)
        self.rooms.append(room)
        return room

    async def start_agent(self, room_name: str) -> None:
        room = await self.connect(room_name, agent.AGENT_IDENTITY, publish=True)
        task = asyncio.create_task(agent.speak_forever(room, WORKER_IDENTITY, self.speech))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def session(self, session_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/sessions/{session_id}", headers=self.stack.headers())
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def wait_status(self, session_id: str, status: str, within_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + within_s
        while True:
            session = await self.session(session_id)
            if session["status"] == status:
                return session
            if session["status"] in ("failed", "ended", "canceled"):
                raise RuntimeError(f"session {session_id} is {session['status']}: {session}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"session {session_id} not {status} in {within_s}s: {session}")
            await asyncio.sleep(0.25)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for room in self.rooms:
            with contextlib.suppress(Exception):
                await room.disconnect()
        await self.client.aclose()


def _instructions(stack: Stack, session: dict[str, Any], page_url: str | None) -> str:
    kubectl = stack.plane.bin_dir / "kubectl"
    kubeconfig = stack.plane.kubeconfig
    lines = [
        "",
        "Facecast is running on 127.0.0.1.",
        f"  demo page:   {page_url}" if page_url else "  demo page:   (off: --no-browser-page)",
        f"  session:     {session['id']} in LiveKit room {session['room_name']}",
        f"  LiveKit:     {stack.livekit.url}",
        f"  API:         {stack.api_url}   (key: {stack.api_key})",
        f"  logs:        {stack.directory / 'logs'}  (worker logs: {stack.node.worker_logs})",
        "",
        "Try next:",
        f"  export KUBECONFIG={kubeconfig} FACECAST_API_KEY={stack.api_key}",
        f"  alias kubectl={kubectl}",
        "  kubectl -n facecast get avs              # phase, avatar, quality, first frame",
        f"  kubectl -n facecast describe avs {session['id'].replace('_', '-').lower()}",
        "  kubectl -n facecast get wp               # the warm worker pools, their free slots",
        f"  kubectl -n facecast get pods -o wide     # their workers on node {stack.node.name}",
        "  kubectl get nodes",
        f'  curl -s -H "x-api-key: $FACECAST_API_KEY" {stack.api_url}/v1/sessions/{session["id"]}',
        f'  curl -s -H "x-api-key: $FACECAST_API_KEY" {stack.api_url}/v1/usage',
        f'  curl -s -X POST -H "x-api-key: $FACECAST_API_KEY" -H "content-type: application/json"'
        f" {stack.api_url}/v1/sessions/{session['id']}/speak"
        """ -d '{"text": "Hello from the REST API."}'""",
        f'  curl -s -X POST -H "x-api-key: $FACECAST_API_KEY"'
        f" {stack.api_url}/v1/sessions/{session['id']}/end",
        "  # a HeyGen-style session in a managed room (answers a LiveKit URL and viewer token):",
        f'  curl -s -X POST -H "X-Api-Key: $FACECAST_API_KEY" -H "content-type: application/json"'
        f" {stack.api_url}/compat/heygen/v1/streaming.new"
        f""" -d '{{"quality": "low", "avatar_id": "{stack.avatar_id}"}}'""",
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


async def live(stack: Stack, args: argparse.Namespace, started: float) -> int:
    demo = Demo(stack, started)
    page_runner = None
    client_js = Path(os.environ.get("FACECAST_LIVEKIT_CLIENT_JS", ""))
    try:
        progress(f"demo speech: {demo.speech.source} ({demo.speech.seconds:.1f} s sentence)")
        progress("demo session: POST /v1/sessions (quality lite, LiveKit room on 127.0.0.1)")
        posted = time.monotonic()
        session = await demo.create_session()
        page_url = None
        if not args.no_browser_page:
            state = web.DemoState(
                livekit_url=stack.livekit.url,
                api_url=stack.api_url,
                api_key=stack.api_key,
                create_session=demo.create_session,
                mouth_box=stack.mouth_box,
                current=session,
            )
            port = args.page_port or free_port()
            page_runner = await web.serve(web.build_app(state, client_js), LOOPBACK, port)
            page_url = f"http://{LOOPBACK}:{port}/"
            print(f"DEMO_PAGE_URL={page_url}", flush=True)
        progress("waiting for the avatar's first frame (recording it)")
        room = await demo.connect(session["room_name"], recorder.RECORDER_IDENTITY, publish=False)
        recording_task = asyncio.create_task(
            recorder.record(
                room,
                WORKER_IDENTITY,
                args.record,
                seconds=args.record_seconds,
                deadline_s=FIRST_FRAME_TIMEOUT,
            )
        )
        running = await demo.wait_status(session["id"], "running", FIRST_FRAME_TIMEOUT)
        recording = await recording_task
        first = recording.first_frame_monotonic or time.monotonic()
        print(
            f"TIMING command_start_to_first_frame_s={first - started:.2f}"
            f" post_to_first_frame_s={first - posted:.2f}",
            flush=True,
        )
        progress(
            f"session {running['id']} is running; recorded {recording.frames} frames"
            f" ({recording.size[0]}x{recording.size[1]}) to {recording.path}"
        )
        print(f"RECORDING={recording.path} FRAMES={recording.frames}", flush=True)
        print(_instructions(stack, session, page_url), flush=True)
        await web.wait_forever()
        return 0
    finally:
        if page_runner is not None:
            await page_runner.cleanup()
        await demo.close()


def uses_real_node(args: argparse.Namespace) -> bool:
    """Worker pods run on the real kubelet unless asked not to, or not root (containers,
    cgroups, mounts and a bridge need it); tools/demo.sh starts Docker by the same rule."""
    return os.geteuid() == 0 and not args.local_node


def main(argv: list[str] | None = None) -> int:
    # tools/demo.sh passes its own start time, so the figure includes its bootstrap.
    launched = float(os.environ.get("FACECAST_DEMO_STARTED") or time.time())
    started = time.monotonic() - max(0.0, time.time() - launched)
    args = _parser().parse_args(argv)
    real_node = uses_real_node(args)
    if not real_node and not args.local_node:
        progress("not root: worker pods run as processes on the local node (runner.py)")
    if (
        not args.no_browser_page
        and not Path(os.environ.get("FACECAST_LIVEKIT_CLIENT_JS", "")).is_file()
    ):
        _parser().error(
            "FACECAST_LIVEKIT_CLIENT_JS does not name livekit-client.umd.js"
            " (tools/demo.sh installs it; or pass --no-browser-page)"
        )
    # Ctrl-C stops everything even where SIGINT came in ignored (a shell without job control
    # starts `cmd &` so, and its children inherit that); SIGTERM (e.g. from a test or a
    # supervisor) stops as cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    directory = Path(tempfile.mkdtemp(prefix="facecast-demo-"))
    progress(f"run directory {directory}")
    code = 1
    try:
        with running_stack(testenv_bin_dir(), directory, real_node=real_node) as stack:
            code = asyncio.run(live(stack, args, started))
            progress("stopping (reverse order)")
    except KeyboardInterrupt:
        progress("stopped")
        code = 130
    finally:
        if args.keep or code not in (0, 130):
            progress(f"kept {directory} (logs under logs/ and pods/)")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return code


if __name__ == "__main__":
    exit_without_finalizing(main())
