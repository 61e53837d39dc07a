"""POST /v1/sessions through the API (uvicorn, its own process) next to creating the same
AvatarSession directly against the API server, on the real control plane, in the same run.

    uv run --frozen --no-sync python bench/api_create.py [--requests 1000 --concurrency 50]

Both sides use one httpx.AsyncClient with `--concurrency` workers and the same request count,
after a warm-up; each phase also stops after `--max-seconds`. Reported: p50/p99 latency,
throughput, errors, and the ratio of the API's cost to the API server's. Three baselines:
the AvatarSession alone (what the issue compares with), and the AvatarSession plus its token
Secret (the two objects every session is, created one after the other as the API must: the
Secret's owner reference needs the session's uid). Each side works in its own namespace, so
neither sees the other's objects. Not part of the test suite; numbers depend on the machine
(and, on a shared 2-core machine, on whatever else runs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client as k8s

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for tests.testenv and tests.integration

from api_shim import admin, mapping  # noqa: E402
from api_shim.kube import Kube  # noqa: E402
from api_shim.schemas import CreateSessionRequest  # noqa: E402
from avatar_crds.enums import Quality  # noqa: E402
from avatar_crds.ids import (  # noqa: E402
    AVATAR_PREFIX,
    SESSION_PREFIX,
    new_public_id,
    to_resource_name,
)
from avatar_crds.kinds import AVATAR, AVATAR_SESSION  # noqa: E402
from avatar_crds.meta import API_VERSION, GROUP, VERSION  # noqa: E402
from tests.integration.sessions import install_crds  # noqa: E402
from tests.testenv.binaries import testenv_bin_dir  # noqa: E402
from tests.testenv.controlplane import ControlPlane, running_control_plane  # noqa: E402
from tests.testenv.process import free_port  # noqa: E402

GOAL = 1.20  # the API may add at most 20% to the API server's own cost
WORKER_TOKEN = "bench-worker-token"
API_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Result:
    name: str
    latencies: list[float]  # seconds, successful requests only
    errors: dict[str, int]
    seconds: float

    @property
    def done(self) -> int:
        return len(self.latencies)

    def quantile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0

    @property
    def throughput(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        errors = sum(self.errors.values())
        detail = f"  errors {errors} {dict(self.errors)}" if errors else ""
        return (
            f"{self.name:<34} {self.done:>5} ok  p50 {self.quantile(0.5) * 1000:7.1f} ms"
            f"  p99 {self.quantile(0.99) * 1000:7.1f} ms  {self.throughput:7.1f}/s{detail}"
        )


async def run_phase(
    name: str,
    call: Callable[[int], Awaitable[httpx.Response]],
    *,
    requests: int,
    concurrency: int,
    max_seconds: float,
) -> Result:
    """`requests` calls by `concurrency` workers; no new call starts after `max_seconds`."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker() -> None:
        nonlocal issued
        while issued < requests and time.perf_counter() < deadline:
            index = issued
            issued += 1
            began = time.perf_counter()
            try:
                response = await call(index)
            except httpx.HTTPError as error:
                errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                continue
            if response.status_code == 201:
                latencies.append(time.perf_counter() - began)
            else:
                key = f"{response.status_code} {_error_code(response)}"
                errors[key] = errors.get(key, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, latencies, errors, time.perf_counter() - started)


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return response.text[:60]


# --- the API server directly ---------------------------------------------------------------------


def direct_client(plane: ControlPlane, concurrency: int) -> httpx.AsyncClient:
    """httpx with the admin kubeconfig's client certificate, as the API's own client uses."""
    config = yaml.safe_load(plane.kubeconfig.read_text())
    user = config["users"][0]["user"]
    context = ssl.create_default_context(cafile=config["clusters"][0]["cluster"][
        "certificate-authority"])  # fmt: skip
    context.load_cert_chain(user["client-certificate"], user["client-key"])
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(base_url=plane.server, verify=context, limits=limits, timeout=30.0)


def session_body(namespace: str, tenant: str, avatar_id: str) -> dict[str, Any]:
    """The AvatarSession the API makes for `api_request` (same mapping code, fresh name)."""
    request = CreateSessionRequest.model_validate(api_request(avatar_id))
    name = to_resource_name(new_public_id(SESSION_PREFIX), SESSION_PREFIX)
    resource = mapping.build_session(
        request, name=name, namespace=namespace, tenant=tenant, max_duration_seconds=600
    )
    return mapping.session_body(resource)


async def create_direct(
    http: httpx.AsyncClient, namespace: str, tenant: str, avatar_id: str, *, with_secret: bool
) -> httpx.Response:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{AVATAR_SESSION.plural}"
    response = await http.post(path, json=session_body(namespace, tenant, avatar_id))
    if not with_secret or response.status_code != 201:
        return response
    created = response.json()
    secret = mapping.token_secret_body(
        session_name=created["metadata"]["name"],
        session_uid=created["metadata"]["uid"],
        namespace=namespace,
        tenant=tenant,
        token=WORKER_TOKEN,
    )
    return await http.post(f"/api/v1/namespaces/{namespace}/secrets", json=secret)


# --- through the API -----------------------------------------------------------------------------


def api_request(avatar_id: str) -> dict[str, Any]:
    return {
        "avatar_id": avatar_id,
        "quality": "lite",
        "transport": {
            "type": "livekit",
            "url": "wss://rtc.example.com",
            "room_name": "bench",
            "worker_token": WORKER_TOKEN,
        },
        "metadata": {"bench": True},
    }


def start_api(plane: ControlPlane, namespace: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FACECAST_NAMESPACE": namespace,
        "FACECAST_KUBECONFIG": str(plane.kubeconfig),
        "FACECAST_HOST": "127.0.0.1",
        "FACECAST_PORT": str(port),
        "FACECAST_MAX_QUEUED": "1000000",  # nothing gets queued here: no operator runs
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "api_shim"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def wait_for_api(http: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + API_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with {process.returncode}")
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the API did not become ready in {API_START_TIMEOUT}s")


# --- set-up --------------------------------------------------------------------------------------


def avatar_body(avatar_id: str, tenant: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Avatar",
        "metadata": {"name": to_resource_name(avatar_id, AVATAR_PREFIX)},
        "spec": {
            "tenant": tenant,
            "visibility": "public",
            "image": {
                "uri": f"file:///var/lib/facecast/avatars/{avatar_id}.jpg",
                "width": 600,
                "height": 800,
                "sha256": "0" * 64,
                "sizeBytes": 51234,
            },
            "face": {
                "box": {"x": 150, "y": 200, "width": 300, "height": 360},
                "landmarks": [{"x": 250 + i, "y": 330 + i} for i in range(5)],
                "score": 0.93,
                "detector": "bench",
            },
        },
    }


async def prepare_namespace(
    plane: ControlPlane, api: k8s.ApiClient, namespace: str, sessions: int
) -> tuple[str, str, str]:
    """The namespace, a tenant with room for every session and no rate limit to speak of,
    its key, and a public avatar: (tenant, key, avatar id)."""
    core: Any = k8s.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    avatar_id = new_public_id(AVATAR_PREFIX)
    k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, AVATAR.plural, avatar_body(avatar_id, tenant)
    )
    kube = Kube(plane.api_client(), namespace, threads=2, timeout=30.0)
    try:
        await admin.create_tenant(
            kube,
            admin.build_tenant(
                tenant,
                max_concurrent=sessions + 1000,
                minutes=1_000_000,
                max_duration=3600,
                qualities=[Quality.LITE],
                requests_per_minute=100_000,
            ),
        )
        key, _ = await admin.create_key(kube, tenant, "bench")
    finally:
        kube.close()
    return tenant, key, avatar_id


async def bench(plane: ControlPlane, api: k8s.ApiClient, args: argparse.Namespace) -> None:
    total = args.warmup + args.requests
    phases: list[Result] = []
    phase = {"concurrency": args.concurrency, "max_seconds": args.max_seconds}

    # Baselines: the API server alone, one namespace each.
    async with direct_client(plane, args.concurrency) as http:
        for with_secret in (False, True):
            namespace = f"direct-{uuid.uuid4().hex[:6]}"
            tenant, _, avatar_id = await prepare_namespace(plane, api, namespace, total)

            async def direct(
                _: int,
                ns: str = namespace,
                t: str = tenant,
                a: str = avatar_id,
                s: bool = with_secret,
            ) -> httpx.Response:
                return await create_direct(http, ns, t, a, with_secret=s)

            await run_phase("warm-up", direct, requests=args.warmup, **phase)
            label = "API server: session + Secret" if with_secret else "API server: session"
            phases.append(await run_phase(label, direct, requests=args.requests, **phase))
            print(phases[-1].line(), flush=True)

    # The API, in its own process under uvicorn.
    namespace = f"api-{uuid.uuid4().hex[:6]}"
    _, key, avatar_id = await prepare_namespace(plane, api, namespace, total)
    port = free_port()
    process = start_api(plane, namespace, port, Path(args.work) / "api.log")
    try:
        limits = httpx.Limits(
            max_connections=args.concurrency, max_keepalive_connections=args.concurrency
        )
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"x-api-key": key},
            limits=limits,
            timeout=30.0,
        ) as http:
            await wait_for_api(http, process)
            body = api_request(avatar_id)

            async def through_api(_: int) -> httpx.Response:
                return await http.post("/v1/sessions", json=body)

            await run_phase("warm-up", through_api, requests=args.warmup, **phase)
            phases.append(
                await run_phase(
                    "API: POST /v1/sessions", through_api, requests=args.requests, **phase
                )
            )
            print(phases[-1].line(), flush=True)
    finally:
        process.terminate()
        process.wait(timeout=30)

    report(phases)


def report(phases: list[Result]) -> None:
    session, pair, shim = phases
    print()
    for baseline in (session, pair):
        p50 = shim.quantile(0.5) / baseline.quantile(0.5) if baseline.done else float("nan")
        p99 = shim.quantile(0.99) / baseline.quantile(0.99) if baseline.done else float("nan")
        rate = baseline.throughput / shim.throughput if shim.done else float("nan")
        print(
            f"API vs {baseline.name[12:]:<17}: p50 x{p50:.2f}  p99 x{p99:.2f}"
            f"  per-request cost (1/throughput) x{rate:.2f}"
            f"  (goal x{GOAL:.2f}: {'met' if max(p50, rate) <= GOAL else 'missed'})"
        )
    print(
        f"\n{shim.done} sessions via the API; mean {statistics.fmean(shim.latencies) * 1000:.1f} ms"
        if shim.latencies
        else ""
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="per phase, after warm-up")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=100, help="requests before each phase")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facecast-bench-api-") as work:
        args.work = work
        with (
            running_control_plane(testenv_bin_dir(), Path(work) / "cp") as plane,
            plane.api_client() as api,
        ):
            install_crds(plane.bin_dir / "kubectl", plane.kubeconfig)
            print(
                f"{args.requests} creates per phase at concurrency {args.concurrency}"
                f" (after {args.warmup} to warm up)\n",
                flush=True,
            )
            asyncio.run(bench(plane, api, args))


if __name__ == "__main__":
    main()
