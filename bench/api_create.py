"""POST /v1/sessions through the API (uvicorn, its own process) next to creating the same
AvatarSession directly against the API server, on the real control plane, in the same run.

    uv run --frozen --no-sync python bench/api_create.py [--requests 4000 --concurrency 50]

Every path is driven by one aiohttp client session with `--concurrency` workers and the same
request count (aiohttp rather than httpx: at a fifth of the CPU per request, the client leaves
the machine's cores to the servers it measures), after a warm-up, and stops early after
`--max-seconds`. The paths take turns in `--rounds` rounds, in every order, so that load from
elsewhere on the machine falls on all of them alike; each round prints its p50 and throughput
per path. A path's turn ends once the control plane has settled: the work its creates cause
after they are answered is charged to it, and does not slow down the next path. Nothing is
measured before kube-controller-manager watches the new kinds: its garbage collector's first
look at them (every session listed, the owner of every Secret looked up) would otherwise fall
into one path's turn.

Two baselines: the AvatarSession alone (what the issue compares with), and the AvatarSession
plus its token Secret, created one after the other as the API must (the Secret's owner
reference needs the session's uid): the two objects every session is. Each path works in its
own namespace, so none sees the others' objects.

Reported per path: p50/p99 latency, throughput, the CPU time each process spent per create
(kube-apiserver, etcd, the API, this client), read from /proc, and the requests the API
server served per create, from its metrics; then the API's ratios to each baseline, over the
whole run and round by round (median and range of the ratios within each round, where the
paths ran moments apart: a shared machine's speed can drift by a third within minutes).
Not part of the test suite.

Two layouts. By default the machine is laid out as a cluster is: the control plane (API
server, etcd, controllers, kwok) on the first half of the cores, the API and this client on the
rest, as the API runs in its own pod on its own node. The control plane starts on its cores, so
that Go sizes its schedulers to them, as on a node. There the latency and throughput ratios
show what the API adds to a create, not what it takes from the API server's CPU.
`--shared-cores` lets every process share every core: the API's CPU is then taken from the API
server's, and the latency ratios count it twice.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes import client as k8s

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for testbed

from api_shim import admin  # noqa: E402
from api_shim.kube import Kube  # noqa: E402
from api_shim.sessions import mapping  # noqa: E402
from api_shim.sessions.schemas import CreateSessionRequest  # noqa: E402
from avatar_crds.enums import Quality  # noqa: E402
from avatar_crds.ids import (  # noqa: E402
    AVATAR_PREFIX,
    SESSION_PREFIX,
    new_public_id,
    to_resource_name,
)
from avatar_crds.kinds import AVATAR, AVATAR_SESSION  # noqa: E402
from avatar_crds.meta import GROUP, VERSION  # noqa: E402
from testbed.binaries import testenv_bin_dir  # noqa: E402
from testbed.controlplane import ControlPlane, running_control_plane  # noqa: E402
from testbed.crds import install_crds, wait_until_controllers_watch  # noqa: E402
from testbed.metrics import samples  # noqa: E402
from testbed.objects import avatar_manifest  # noqa: E402
from testbed.process import free_port  # noqa: E402

GOAL = 1.20  # the API may add at most 20% to the API server's own cost
WORKER_TOKEN = "bench-worker-token"
API_START_TIMEOUT = 60.0
# No operator runs, so every session the API makes holds one of its tenant's concurrency
# slots to the end; a plan allows at most this many.
MAX_SESSIONS = 10_000


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by process
    # What the API server served meanwhile, by verb and resource (from its own metrics).
    served: Counter[str] = field(default_factory=Counter)
    rounds: list[Result] = field(default_factory=list)  # the same, for each round alone

    def add_round(self, round_: Result) -> None:
        self.rounds.append(round_)
        self.latencies += round_.latencies
        for key, count in round_.errors.items():
            self.errors[key] = self.errors.get(key, 0) + count
        self.seconds += round_.seconds
        for name, seconds in round_.cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds
        self.served += round_.served

    @property
    def done(self) -> int:
        return len(self.latencies)

    def quantile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0

    @property
    def throughput(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def cpu_ms(self, *processes: str) -> float:
        """CPU milliseconds per successful create, summed over `processes`."""
        return sum(self.cpu.get(p, 0.0) for p in processes) * 1000 / max(1, self.done)

    def line(self) -> str:
        errors = sum(self.errors.values())
        detail = f"\n    errors: {errors} {dict(self.errors)}" if errors else ""
        cpu = "  ".join(f"{p} {self.cpu_ms(p):.1f}" for p in PROCESSES if p in self.cpu)
        return (
            f"{self.name:<29} {self.done:>5} ok  p50 {self.quantile(0.5) * 1000:7.1f} ms"
            f"  p99 {self.quantile(0.99) * 1000:7.1f} ms  {self.throughput:6.1f}/s"
            f"\n    CPU ms per create: {cpu}"
            f"\n    API server requests per create: {self.served_per_create()}{detail}"
        )

    def served_per_create(self) -> str:
        per_create = ((what, count / max(1, self.done)) for what, count in self.served.items())
        shown = [f"{what} {rate:.2f}" for what, rate in sorted(per_create) if rate >= 0.005]
        return "  ".join(shown) or "none"


PROCESSES = ("kube-apiserver", "etcd", "api", "client")
SERVER_SIDE = ("kube-apiserver", "etcd")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (and its reaped children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command: state is field 3; utime, stime, cutime, cstime are fields 14-17.
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def split_cores() -> tuple[set[int], set[int]]:
    """(control plane cores, API and client cores): the available cores in two halves."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("the cores cannot be split: run with --shared-cores")
    half = len(cores) // 2
    return set(cores[:half]), set(cores[half:])


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of `pid` onto `cores` (threads it starts later inherit them): the
    affinity call itself only moves the one thread it names."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cores)


# The control plane at rest (leases, kwok's node heartbeats) stays well under this, in cores.
QUIET_CPU = 0.15
QUIET_WINDOW = 0.5  # seconds
SETTLE_TIMEOUT = 30.0


async def settle(pids: list[int]) -> None:
    """Until the control plane has caught up with the load just put on it: its CPU use over a
    window falls to what it uses at rest. The work a phase causes outlasts its requests (the
    controller-manager's garbage collector watching and looking up what was made, the API
    server's and etcd's garbage collection), and without this it fell on the next phase."""
    deadline = time.perf_counter() + SETTLE_TIMEOUT
    while time.perf_counter() < deadline:
        before = sum(cpu_seconds(pid) for pid in pids)
        await asyncio.sleep(QUIET_WINDOW)  # a measuring window
        if sum(cpu_seconds(pid) for pid in pids) - before < QUIET_CPU * QUIET_WINDOW:
            return
    print(f"the control plane did not quieten within {SETTLE_TIMEOUT:.0f} s", flush=True)


async def run_phase(
    result: Result,
    call: Call,
    *,
    requests: int,
    concurrency: int,
    max_seconds: float,
    pids: dict[str, int],
    control_plane: list[int],
) -> None:
    """`requests` calls by `concurrency` workers, added to `result`; no new call starts after
    `max_seconds`. The CPU counted is what the processes spent until the control plane had
    settled after the last call."""
    issued = 0
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
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
            except aiohttp.ClientError as error:
                key = type(error).__name__
                result.errors[key] = result.errors.get(key, 0) + 1
                continue
            if response.status == 201:
                result.latencies.append(time.perf_counter() - began)
            else:
                key = f"{response.status} {_error_code(response)}"
                result.errors[key] = result.errors.get(key, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds += time.perf_counter() - started
    await settle(control_plane)
    for name, pid in pids.items():
        result.cpu[name] = result.cpu.get(name, 0.0) + cpu_seconds(pid) - cpu_before[name]


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Call = Callable[[int], Awaitable[Reply]]


async def post(http: aiohttp.ClientSession, path: str, body: bytes) -> Reply:
    async with http.post(path, data=body, headers=JSON) as response:
        return Reply(response.status, await response.read())


def _error_code(response: Reply) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return response.body[:60].decode(errors="replace")


async def served_requests(http: aiohttp.ClientSession) -> Counter[str]:
    """The API server's count of the resource requests it has served, by verb and resource
    (from every client: the path's own and the controllers' reactions to it)."""
    served: Counter[str] = Counter()
    for labels, count in samples(await metrics_text(http), "apiserver_request_total"):
        if labels.get("resource"):
            served[f"{labels['verb']} {labels['resource']}"] += int(count)
    return served


async def api_server_gomaxprocs(http: aiohttp.ClientSession) -> str:
    """How many threads the API server's Go scheduler runs at once (its metrics)."""
    found = samples(await metrics_text(http), "go_sched_gomaxprocs_threads")
    return f"{found[0][1]:g}" if found else "unknown"


async def metrics_text(http: aiohttp.ClientSession) -> str:
    async with http.get("/metrics") as response:
        return await response.text()


# --- the API server directly ---------------------------------------------------------------------


def direct_client(plane: ControlPlane, connections: int) -> aiohttp.ClientSession:
    """With the admin kubeconfig's client certificate, as the API's own client uses."""
    config = yaml.safe_load(plane.kubeconfig.read_text())
    user = config["users"][0]["user"]
    context = ssl.create_default_context(cafile=config["clusters"][0]["cluster"][
        "certificate-authority"])  # fmt: skip
    context.load_cert_chain(user["client-certificate"], user["client-key"])
    return client_session(plane.server, connections, ssl=context)


def client_session(
    base_url: str, connections: int, *, ssl: ssl.SSLContext | bool = False, **options: Any
) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=base_url,
        # Idle while the other paths take their turn: drop a connection before uvicorn does
        # (after 5 s), rather than reuse one it is closing.
        connector=aiohttp.TCPConnector(ssl=ssl, limit=connections, keepalive_timeout=4.0),
        timeout=aiohttp.ClientTimeout(total=30.0),
        **options,
    )


class DirectPath:
    """Creates what the API creates for `api_request`, made by the same mapping code once; each
    request only puts a fresh name in (cheaply, so the client costs little)."""

    def __init__(
        self, http: aiohttp.ClientSession, namespace: str, tenant: str, avatar_id: str
    ) -> None:
        self.http = http
        self.namespace = namespace
        self.tenant = tenant
        self.placeholder = new_session_name()
        request = CreateSessionRequest.model_validate(api_request(avatar_id))
        resource = mapping.build_session(
            request,
            name=self.placeholder,
            namespace=namespace,
            tenant=tenant,
            max_duration_seconds=600,
        )
        self.template = json.dumps(mapping.session_body(resource))
        self.sessions = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{AVATAR_SESSION.plural}"
        self.secrets = f"/api/v1/namespaces/{namespace}/secrets"

    async def create(self, *, with_secret: bool) -> Reply:
        body = self.template.replace(self.placeholder, new_session_name())
        response = await post(self.http, self.sessions, body.encode())
        if not with_secret or response.status != 201:
            return response
        created = response.json()
        secret = mapping.token_secret_body(
            session_name=created["metadata"]["name"],
            session_uid=created["metadata"]["uid"],
            namespace=self.namespace,
            tenant=self.tenant,
            token=WORKER_TOKEN,
        )
        return await post(self.http, self.secrets, json.dumps(secret).encode())


JSON = {"content-type": "application/json"}


def new_session_name() -> str:
    return to_resource_name(new_public_id(SESSION_PREFIX), SESSION_PREFIX)


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
        "FACECAST_CREATE_QUEUE_WAIT_SECONDS": "0",  # so no create waits for one to queue it
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "api_shim"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def wait_for_api(http: aiohttp.ClientSession, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + API_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with {process.returncode}")
        try:
            async with http.get("/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the API did not become ready in {API_START_TIMEOUT}s")


# --- set-up --------------------------------------------------------------------------------------


async def prepare_namespace(
    plane: ControlPlane, api: k8s.ApiClient, namespace: str
) -> tuple[str, str, str]:
    """The namespace, a tenant with room for every session and no rate limit to speak of,
    its key, and a public avatar: (tenant, key, avatar id)."""
    core: Any = k8s.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    avatar_id = new_public_id(AVATAR_PREFIX)
    k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        AVATAR.plural,
        avatar_manifest(avatar_id, tenant, visibility="public", detector="bench"),
    )
    kube = Kube(api.configuration, namespace, timeout=30.0)
    try:
        await admin.create_tenant(
            kube,
            admin.build_tenant(
                tenant,
                max_concurrent=MAX_SESSIONS,
                minutes=1_000_000,
                max_duration=3600,
                qualities=[Quality.LITE],
                requests_per_minute=100_000,
            ),
        )
        key, _ = await admin.create_key(kube, tenant, "bench")
    finally:
        await kube.aclose()
    return tenant, key, avatar_id


async def bench(plane: ControlPlane, api: k8s.ApiClient, args: argparse.Namespace) -> None:
    pids = {p.name: p.popen.pid for p in plane.processes if p.name in SERVER_SIDE}
    pids["client"] = os.getpid()
    if args.api_cores:
        # The control plane was started on its own cores (see main); the API, started
        # below, inherits these.
        pin(os.getpid(), args.api_cores)
    namespace = f"api-{uuid.uuid4().hex[:6]}"
    _, key, api_avatar = await prepare_namespace(plane, api, namespace)
    port = free_port()
    process = start_api(plane, namespace, port, Path(args.work) / "api.log")
    pids["api"] = process.pid
    try:
        async with (
            direct_client(plane, args.concurrency) as direct_http,
            client_session(
                f"http://127.0.0.1:{port}", args.concurrency, headers={"x-api-key": key}
            ) as api_http,
        ):
            await wait_for_api(api_http, process)
            print(f"API server GOMAXPROCS {await api_server_gomaxprocs(direct_http)}", flush=True)
            paths: list[tuple[Result, Call]] = []
            for with_secret in (False, True):
                direct_ns = f"direct-{uuid.uuid4().hex[:6]}"
                tenant, _, avatar_id = await prepare_namespace(plane, api, direct_ns)

                path = DirectPath(direct_http, direct_ns, tenant, avatar_id)

                async def direct(
                    _: int, path: DirectPath = path, with_secret: bool = with_secret
                ) -> Reply:
                    return await path.create(with_secret=with_secret)

                name = "API server: session + Secret" if with_secret else "API server: session"
                paths.append((Result(name), direct))
            body = json.dumps(api_request(api_avatar)).encode()

            async def through_api(_: int) -> Reply:
                return await post(api_http, "/v1/sessions", body)

            paths.append((Result("API: POST /v1/sessions"), through_api))

            phase = {
                "concurrency": args.concurrency,
                "max_seconds": args.max_seconds / args.rounds,
                "pids": pids,
                "control_plane": [p.popen.pid for p in plane.processes],
            }
            for _, call in paths:
                await run_phase(Result("warm-up"), call, requests=args.warmup, **phase)
            started = time.perf_counter()
            for round_ in range(args.rounds):
                share = args.requests // args.rounds + (round_ < args.requests % args.rounds)
                this_round = [Result(result.name) for result, _ in paths]
                # Every order of the paths in turn, so that each runs first, between and last
                # equally often, after each of the others (with the default rounds).
                orders = list(itertools.permutations(zip(paths, this_round, strict=True)))
                for (result, call), part in orders[round_ % len(orders)]:
                    served_before = await served_requests(direct_http)
                    await run_phase(part, call, requests=share, **phase)
                    part.served = await served_requests(direct_http) - served_before
                    result.add_round(part)
                p50 = " / ".join(f"{part.quantile(0.5) * 1000:.0f}" for part in this_round)
                rate = " / ".join(f"{part.throughput:.0f}" for part in this_round)
                print(
                    f"round {round_ + 1}/{args.rounds} ({time.perf_counter() - started:.0f} s):"
                    f" p50 {p50} ms, {rate} per s",
                    flush=True,
                )
    finally:
        process.terminate()
        process.wait(timeout=30)
    report([result for result, _ in paths])


def report(results: list[Result]) -> None:
    session, pair, shim = results
    print()
    for result in results:
        print(result.line())
    print(f"\nThe API's cost relative to the API server's (goal: at most x{GOAL:.2f})")
    for baseline in (session, pair):
        if not (baseline.done and shim.done):
            continue
        own = baseline.cpu_ms(*SERVER_SIDE)
        with_api = shim.cpu_ms(*SERVER_SIDE, "api")
        print(
            f"  vs {baseline.name.removeprefix('API server: '):<17}"
            f" latency p50 x{shim.quantile(0.5) / baseline.quantile(0.5):.2f}"
            f"  p99 x{shim.quantile(0.99) / baseline.quantile(0.99):.2f}"
            f"  throughput x{shim.throughput / baseline.throughput:.2f}"
            f"  server CPU per create x{with_api / own:.2f}"
            f" ({with_api:.1f} ms = API {shim.cpu_ms('api'):.1f}"
            f" + cluster {shim.cpu_ms(*SERVER_SIDE):.1f}, vs {own:.1f})"
        )
        print(f"    {round_by_round(shim, baseline)}")


def round_by_round(shim: Result, baseline: Result) -> str:
    """The ratios within each round, where both paths ran moments apart, so that the
    machine's drift between rounds cancels out."""
    pairs = list(zip(shim.rounds, baseline.rounds, strict=True))
    p50 = [s.quantile(0.5) / b.quantile(0.5) for s, b in pairs if s.done and b.done]
    throughput = [s.throughput / b.throughput for s, b in pairs if s.done and b.done]
    if not p50:
        return "round by round: no round with results on both paths"
    under = sum(ratio <= GOAL for ratio in p50)
    return (
        f"round by round ({len(p50)}): latency p50 {spread(p50)}"
        f"  throughput {spread(throughput)}  p50 within the goal in {under} of {len(p50)}"
    )


def spread(ratios: list[float]) -> str:
    """Median and range."""
    return f"x{statistics.median(ratios):.2f} (x{min(ratios):.2f}-x{max(ratios):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="per path, after warm-up")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=100, help="requests before each phase")
    parser.add_argument("--rounds", type=int, default=6, help="turns each path takes")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per path, all rounds")
    parser.add_argument(
        "--shared-cores",
        action="store_true",
        help="every process on every core (default: the control plane on half the cores, the"
        " API and this client on the other half)",
    )
    args = parser.parse_args()
    if args.warmup + args.requests > MAX_SESSIONS:
        parser.error(f"--warmup plus --requests may be at most {MAX_SESSIONS} (a plan's limit)")
    args.api_cores = None
    if not args.shared_cores:
        cluster_cores, args.api_cores = split_cores()
        # Before the control plane starts, so that its processes inherit the cores: Go sizes
        # its scheduler (GOMAXPROCS) from them at start. Pinned afterwards, the API server and
        # etcd ran one scheduler thread per core of the machine on a single core, and their
        # CPU per request rose and varied with how requests arrived.
        pin(os.getpid(), cluster_cores)
        print(
            f"control plane on cores {sorted(cluster_cores)}, API and client on"
            f" {sorted(args.api_cores)}",
            flush=True,
        )
    with tempfile.TemporaryDirectory(prefix="facecast-bench-api-") as work:
        args.work = work
        with (
            running_control_plane(testenv_bin_dir(), Path(work) / "cp") as plane,
            plane.api_client() as api,
        ):
            install_crds(plane.bin_dir / "kubectl", plane.kubeconfig)
            wait_until_controllers_watch(
                plane.bin_dir / "kubectl", plane.kubeconfig, log=partial(print, flush=True)
            )
            print(
                f"{args.requests} creates per path at concurrency {args.concurrency}, in"
                f" {args.rounds} rounds (after {args.warmup} to warm up)",
                flush=True,
            )
            asyncio.run(bench(plane, api, args))


if __name__ == "__main__":
    main()
