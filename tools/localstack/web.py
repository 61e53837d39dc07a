"""The demo page's small server (127.0.0.1 only): static files, the LiveKit JS client from the
npm cache, and a few /demo endpoints that keep the API key server-side.

- GET  /demo/config           LiveKit URL, the current session and a viewer token for its room
- POST /demo/sessions         creates a session through the public API (POST /v1/sessions),
                              starts the demo agent in its room, returns it with a viewer token
- GET  /demo/sessions/{id}    the session as the public API returns it (GET /v1/sessions/{id})
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

STATIC_DIR = Path(__file__).with_name("web")


@dataclass
class DemoState:
    livekit_url: str
    api_url: str
    api_key: str
    # Creates a session (POST /v1/sessions), mints the viewer token, starts the agent.
    create_session: Callable[[], Awaitable[dict[str, Any]]]
    mouth_box: Callable[[int, int], dict[str, float]]
    current: dict[str, Any] = field(default_factory=dict)


def build_app(state: DemoState, client_js: Path) -> web.Application:
    app = web.Application()

    async def index(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def app_js(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "app.js")

    async def livekit_js(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(client_js)

    async def config(_request: web.Request) -> web.Response:
        return web.json_response({"livekit_url": state.livekit_url, "session": state.current})

    async def create(_request: web.Request) -> web.Response:
        started = time.monotonic()
        try:
            created = await state.create_session()
        except httpx.HTTPStatusError as error:
            return web.json_response(
                {"error": error.response.json()}, status=error.response.status_code
            )
        created["server_ms"] = round((time.monotonic() - started) * 1000)
        state.current = created
        return web.json_response(created, status=201)

    async def get_session(request: web.Request) -> web.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(
                f"{state.api_url}/v1/sessions/{request.match_info['id']}",
                headers={"x-api-key": state.api_key},
            )
        return web.json_response(response.json(), status=response.status_code)

    async def mouth(request: web.Request) -> web.Response:
        width, height = int(request.query["width"]), int(request.query["height"])
        box = await asyncio.to_thread(state.mouth_box, width, height)
        return web.json_response(box)

    app.router.add_get("/", index)
    app.router.add_get("/demo/mouth", mouth)
    app.router.add_get("/app.js", app_js)
    app.router.add_get("/livekit-client.umd.js", livekit_js)
    app.router.add_get("/demo/config", config)
    app.router.add_post("/demo/sessions", create)
    app.router.add_get("/demo/sessions/{id}", get_session)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def wait_forever() -> None:
    await asyncio.Event().wait()
