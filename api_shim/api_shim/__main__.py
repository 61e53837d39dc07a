"""`python -m api_shim`: serve the API with uvicorn, configured from FACECAST_* variables.

uvloop and httptools (uvicorn's C event loop and HTTP parser) instead of asyncio's loop and
h11: together they halve what serving a request costs (bench/api_create.py)."""

from __future__ import annotations

import asyncio
import gc

import structlog
import uvicorn
import uvloop

from api_shim.app import create_app
from api_shim.kube import Kube
from api_shim.logging import configure_logging
from api_shim.settings import Settings

log = structlog.get_logger("api_shim")


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    kube = Kube.from_settings(settings)
    config = uvicorn.Config(
        create_app(settings, kube),
        host=settings.host,
        port=settings.port,
        loop="none",  # the loop is ours (below), so that the Kubernetes client closes in it
        http="httptools",
        log_config=None,  # keep the JSON handler configure_logging installed
        access_log=False,  # RequestContextMiddleware writes the access log
        server_header=False,
    )
    # What exists by now (modules, the app, its validators) lives as long as the process.
    # Frozen, it is no longer walked by every full garbage collection: under load those came
    # every few seconds and each stalled every request in flight for about 100 ms. (Garbage
    # is collected first: frozen, it would never be.)
    gc.collect()
    gc.freeze()
    log.info(
        "api_starting",
        namespace=settings.namespace,
        port=settings.port,
        objects_frozen=gc.get_freeze_count(),
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(uvicorn.Server(config), kube))


async def _serve(server: uvicorn.Server, kube: Kube) -> None:
    try:
        await server.serve()
    finally:
        await kube.aclose()


if __name__ == "__main__":
    main()
