"""The operator's REST client sends the service-account token the way the official client
stores it (kubernetes>=37 keeps it under "BearerToken"), re-read on every request."""

from __future__ import annotations

import httpx
from kubernetes import client

from avatar_operator.kube import _TokenAuth


def test_bearer_token_is_sent_and_rotation_is_picked_up() -> None:
    cfg = client.Configuration()
    cfg.api_key = {"BearerToken": "first"}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    auth = _TokenAuth(cfg)
    request = next(auth.auth_flow(httpx.Request("GET", "https://k8s.test/api")))
    assert request.headers["Authorization"] == "Bearer first"
    cfg.api_key = {"BearerToken": "rotated"}
    request = next(auth.auth_flow(httpx.Request("GET", "https://k8s.test/api")))
    assert request.headers["Authorization"] == "Bearer rotated"
