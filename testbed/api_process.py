"""The API as a process of its own (`python -m api_shim`, uvicorn) on 127.0.0.1, against a test
control plane: for tests that measure the process itself or talk real HTTP to it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from testbed.process import ManagedProcess, free_port, wait_until_serving

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ApiProcess:
    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def running_api(
    kubeconfig: Path, namespace: str, workdir: Path, **settings: str
) -> Iterator[ApiProcess]:
    """The API serving `namespace`, with these extra `FACECAST_*` settings, until the block
    ends. Its log is `workdir/api.log`."""
    port = free_port()
    env = {
        **os.environ,
        "FACECAST_KUBECONFIG": str(kubeconfig),
        "FACECAST_NAMESPACE": namespace,
        "FACECAST_HOST": "127.0.0.1",
        "FACECAST_PORT": str(port),
        "FACECAST_AVATAR_STORE": str(workdir / "avatars"),
        "FACECAST_AUTH_MISS_RELOAD_SECONDS": "0",
        # No operator admits sessions here, so a create would wait its whole bound for `queued`;
        # a test that runs one and wants that answer passes CREATE_QUEUE_WAIT_SECONDS.
        "FACECAST_CREATE_QUEUE_WAIT_SECONDS": "0",
        **{f"FACECAST_{name}": value for name, value in settings.items()},
    }
    api = ApiProcess(
        ManagedProcess("api", [sys.executable, "-m", "api_shim"], workdir / "api.log", env), port
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{api.url}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until_serving(api.process, healthy, timeout=START_TIMEOUT, what="serving")
        yield api
    finally:
        api.process.stop(timeout=START_TIMEOUT)
