"""The API as a process and its readiness, against the real kube-apiserver."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_shim.tests.control_plane import WAIT_TIMEOUT, Cluster, RequestFactory

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]


async def test_python_m_api_shim_serves_real_http_and_logs_json(
    cluster: Cluster,
    control_plane: Any,
    make_request: RequestFactory,
    worker_token: str,
    tmp_path: Path,
) -> None:
    """The production entry point: uvicorn, settings from FACECAST_*, JSON logs on stdout, and
    the startup objects frozen out of the garbage collector's way."""
    acme = await cluster.tenant()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "FACECAST_KUBECONFIG": str(control_plane.kubeconfig),
        "FACECAST_NAMESPACE": cluster.namespace,
        "FACECAST_HOST": "127.0.0.1",
        "FACECAST_PORT": str(port),
    }
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log_file:
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "api_shim", stdout=log_file, stderr=log_file, env=env
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + WAIT_TIMEOUT
            while True:
                assert server.returncode is None, log_path.read_text()
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.1)
            assert (await http.get("/readyz")).status_code == 200
            body = make_request(avatar_id=cluster.avatar(acme))
            created = await http.post("/v1/sessions", json=body, headers=acme.headers)
            assert created.status_code == 201, created.text
            fetched = await http.get(f"/v1/sessions/{created.json()['id']}", headers=acme.headers)
            assert fetched.json()["id"] == created.json()["id"]
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=WAIT_TIMEOUT)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    [starting] = [line for line in lines if line.get("event") == "api_starting"]
    # The startup objects are out of the garbage collector's way (see __main__).
    assert starting["objects_frozen"] > 10_000
    access = [line for line in lines if line.get("event") == "request"]
    assert {line["path"] for line in access} >= {"/healthz", "/readyz", "/v1/sessions"}
    assert all(line["request_id"].startswith("req_") for line in access)
    text = log_path.read_text()
    assert worker_token not in text
    assert acme.key not in text


async def test_ready_when_the_cluster_answers(cluster: Cluster) -> None:
    async with cluster.api() as http:
        response = await http.get("/readyz")
    assert response.status_code == 200
