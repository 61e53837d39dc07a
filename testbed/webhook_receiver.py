"""A tenant's webhook endpoint on loopback, for tests that check what the operator delivers:
records every delivery it accepts (body, signature header, raw bytes), and can refuse the very
first one (to prove the retry) or every one while `down`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from avatar_operator.webhooks import SIGNATURE_HEADER


class WebhookReceiver(ThreadingHTTPServer):
    def __init__(self, *, refuse_first: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[dict[str, Any], str, bytes]] = []
        self.refuse_first = refuse_first
        self.refused = 0
        self.down = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/facecast"

    def bodies(self) -> list[dict[str, Any]]:
        return [body for body, _, _ in list(self.received)]

    def types(self) -> list[str]:
        return [body["type"] for body in self.bodies()]

    def events(self, session_id: str) -> list[dict[str, Any]]:
        return [body for body in self.bodies() if body["data"]["session_id"] == session_id]

    def speak_events(self, task_id: str) -> list[tuple[str, str]]:
        """(event type, task state) of each speak.* delivery about this task, in order."""
        return [
            (body["type"], body["data"]["speak"]["state"])
            for body in self.bodies()
            if body["type"].startswith("speak.") and body["data"]["speak"]["id"] == task_id
        ]

    def _refuses(self) -> bool:
        return self.down or (self.refuse_first and self.refused == 0)


class _Handler(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.server._refuses():
            self.server.refused += 1
            self.send_response(500)
        else:
            self.server.received.append((json.loads(raw), self.headers[SIGNATURE_HEADER], raw))
            self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def running_webhook_receiver(*, refuse_first: bool = False) -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(refuse_first=refuse_first)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
