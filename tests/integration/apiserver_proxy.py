"""A plain-HTTP reverse proxy in front of the test API server that can stall watch streams.

The operator is pointed at it with a kubeconfig of its own; the proxy forwards every request
upstream over TLS as the admin identity. `stall(resource)` stops forwarding the watch streams
of that resource, open or new, without closing them: the half-dead connection a liveness
probe has to notice. Plain HTTP so the proxy can see which request is which watch.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from testbed.process import LOOPBACK, free_port

# Hop-by-hop or recomputed by aiohttp; the rest is passed through unchanged.
_DROPPED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}


class StallingProxy:
    def __init__(self, admin_kubeconfig: Path) -> None:
        cfg = k8s.Configuration()
        k8s_config.load_kube_config(config_file=str(admin_kubeconfig), client_configuration=cfg)
        self.upstream = cfg.host
        self.tls = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        assert cfg.cert_file, "the admin kubeconfig authenticates with a client certificate"
        self.tls.load_cert_chain(cfg.cert_file, cfg.key_file)
        self.port = free_port()
        self.stalled: set[str] = set()
        self.loop = asyncio.new_event_loop()
        self.flowing = asyncio.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig that reaches the API server through this proxy (no credentials: the
        proxy holds them)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def stall(self, resource: str) -> None:
        """Stop forwarding watch streams of `resource` (a plural, e.g. "avatarsessions")."""
        self.stalled.add(resource)
        self.loop.call_soon_threadsafe(self.flowing.clear)

    def resume(self) -> None:
        self.stalled.clear()
        self.loop.call_soon_threadsafe(self.flowing.set)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(timeout=10)

    def stop(self) -> None:
        self.resume()
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    async def _serve(self) -> None:
        self.flowing.set()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self.runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, LOOPBACK, self.port).start()

    async def _close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.session is not None:
            await self.session.close()

    def _stalls(self, request: web.Request) -> bool:
        watch = request.query.get("watch") in ("1", "true")
        return watch and request.path.rsplit("/", 1)[-1] in self.stalled

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        if self._stalls(request):
            await self.flowing.wait()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED_HEADERS}
        body = await request.read()
        async with self.session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body or None,  # an empty body would get a Content-Type: 415 on a GET
            ssl=self.tls,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for name in ("Content-Type", "Audit-Id"):
                if name in upstream.headers:
                    response.headers[name] = upstream.headers[name]
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                while self._stalls(request):  # held here: the stream stays open, silent
                    await self.flowing.wait()
                await response.write(chunk)
            await response.write_eof()
            return response


@contextmanager
def stalling_proxy(admin_kubeconfig: Path) -> Iterator[StallingProxy]:
    proxy = StallingProxy(admin_kubeconfig)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
