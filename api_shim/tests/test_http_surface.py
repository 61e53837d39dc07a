"""The HTTP surface that needs no cluster: request ids, the error envelope for auth, routing,
size and server errors, readiness without a cluster, and the OpenAPI document.

The app here talks to an address where nothing listens: a real client failing for real."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from kubernetes import client

from api_shim import idempotency
from api_shim.app import create_app
from api_shim.kube import Kube
from api_shim.sessions.schemas import SESSION_ID_PATTERN
from api_shim.settings import Settings

MAX_BODY = 4096


@pytest.fixture
def offline_app() -> Iterator[FastAPI]:
    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:1"  # nothing listens on port 1
    kube = Kube(configuration, "facecast", timeout=2.0)
    # POST /v1/sessions may carry an inline image, so it has the image limit: the same here.
    app = create_app(Settings(max_body_bytes=MAX_BODY, max_image_body_bytes=MAX_BODY), kube)

    async def boom() -> None:
        raise RuntimeError("secret detail that must not leak")

    app.add_api_route("/boom", boom)
    yield app
    kube.close()


@pytest.fixture
async def http(offline_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=offline_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as session:
        yield session


def _error(response: httpx.Response) -> dict[str, Any]:
    """The envelope, checked: five fields, and the request id matching the header."""
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"type", "code", "message", "param", "request_id"}
    assert error["request_id"] == response.headers["x-request-id"]
    return error


@pytest.mark.anyio
async def test_every_response_gets_a_generated_request_id(http: httpx.AsyncClient) -> None:
    first = await http.get("/healthz")
    second = await http.get("/healthz")
    assert first.status_code == 200
    assert first.json() == {"status": "ok"}
    assert first.headers["x-request-id"].startswith("req_")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.anyio
async def test_a_valid_incoming_request_id_is_echoed(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz", headers={"X-Request-Id": "trace-42.a:b"})
    assert response.headers["x-request-id"] == "trace-42.a:b"


@pytest.mark.anyio
@pytest.mark.parametrize("incoming", ["has space", "x" * 200, "<script>", "-leading-dash"])
async def test_an_invalid_incoming_request_id_is_replaced(
    http: httpx.AsyncClient, incoming: str
) -> None:
    response = await http.get("/healthz", headers={"X-Request-Id": incoming})
    assert response.headers["x-request-id"].startswith("req_")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "not-a-key"},
        {"Authorization": "Bearer fc_tooshort"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
async def test_missing_or_malformed_keys_are_401(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for response in (
        await http.get("/v1/sessions", headers=headers),
        await http.get("/v1/usage", headers=headers),
        await http.post("/v1/sessions/sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3/end", headers=headers),
    ):
        assert response.status_code == 401
        error = _error(response)
        assert (error["type"], error["code"]) == ("authentication", "invalid_api_key")


@pytest.mark.anyio
async def test_unknown_routes_and_methods_use_the_envelope(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v2/nothing")
    assert missing.status_code == 404
    assert _error(missing)["code"] == "route_not_found"
    wrong = await http.put("/v1/sessions")
    assert wrong.status_code == 405
    assert (_error(wrong)["type"], _error(wrong)["code"]) == (
        "invalid_request",
        "method_not_allowed",
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/sessions", "GET, POST"),
        ("OPTIONS", "/v1/sessions/sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3", "DELETE, GET"),
        ("PATCH", "/v1/sessions/sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3", "DELETE, GET"),
        ("GET", "/v1/sessions/sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3/end", "POST"),
    ],
)
async def test_a_405_allows_every_method_served_at_the_path(
    http: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    """Not only those of the first route that matched (Starlette's own answer)."""
    response = await http.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert _error(response)["code"] == "method_not_allowed"


@pytest.mark.anyio
async def test_a_declared_oversized_body_is_413_before_anything_else(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/v1/sessions", content=b"{" + b" " * MAX_BODY + b"}")
    assert response.status_code == 413
    assert _error(response)["code"] == "request_too_large"


@pytest.mark.anyio
async def test_a_streamed_body_without_a_key_is_401_and_never_read(
    http: httpx.AsyncClient,
) -> None:
    """The key is checked before the body is read (a streamed one past its limit is 413 once
    authenticated: test_body_limits.py)."""
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(8):
            sent += 1
            yield b" " * 1024

    response = await http.post(
        "/v1/sessions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 401
    assert _error(response)["code"] == "invalid_api_key"
    assert sent == 0


@pytest.mark.anyio
async def test_an_unhandled_error_is_a_500_envelope_without_details(
    http: httpx.AsyncClient, captured_logs: Any
) -> None:
    response = await http.get("/boom")
    assert response.status_code == 500
    error = _error(response)
    assert (error["type"], error["code"]) == ("internal", "internal_error")
    assert "secret detail" not in response.text
    logged = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert any(
        line["event"] == "unhandled_error" and line["request_id"] == error["request_id"]
        for line in logged
    )


@pytest.mark.anyio
async def test_not_ready_without_a_cluster(http: httpx.AsyncClient) -> None:
    response = await http.get("/readyz")
    assert response.status_code == 503
    error = _error(response)
    assert (error["type"], error["code"]) == ("service_unavailable", "kubernetes_unavailable")
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.anyio
async def test_every_request_gets_one_access_log_line(
    http: httpx.AsyncClient, captured_logs: Any
) -> None:
    response = await http.get("/v1/sessions", headers={"x-api-key": "fc_bad"})
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    access = [line for line in lines if line["event"] == "request"]
    assert len(access) == 1
    assert access[0]["status"] == 401
    assert access[0]["method"] == "GET"
    assert access[0]["request_id"] == response.headers["x-request-id"]
    assert "fc_bad" not in captured_logs.getvalue()


# --- OpenAPI ------------------------------------------------------------------------------------


@pytest.fixture
def openapi(offline_app: FastAPI) -> dict[str, Any]:
    return offline_app.openapi()


EXPECTED_OPERATIONS = {
    ("post", "/v1/sessions"),
    ("get", "/v1/sessions"),
    ("get", "/v1/sessions/{session_id}"),
    ("delete", "/v1/sessions/{session_id}"),
    ("post", "/v1/sessions/{session_id}/end"),
    ("post", "/v1/sessions/{session_id}/keep-alive"),
    ("post", "/v1/sessions/{session_id}/viewer-token"),
    ("post", "/v1/sessions/{session_id}/speak"),
    ("get", "/v1/sessions/{session_id}/speak/{task_id}"),
    ("post", "/v1/sessions/{session_id}/interrupt"),
    ("get", "/v1/usage"),
    ("get", "/v1/voices"),
    ("post", "/v1/avatars"),
    ("get", "/v1/avatars"),
    ("get", "/v1/avatars/{avatar_id}"),
    ("delete", "/v1/avatars/{avatar_id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("post", "/compat/agenthuman/v1/sessions"),
    ("post", "/compat/protoface/v1/sessions"),
    ("get", "/compat/protoface/v1/sessions/{session_id}"),
    ("get", "/compat/heygen/v1/streaming.list"),
    *(
        ("post", f"/compat/heygen/v1/streaming.{op}")
        for op in ("new", "start", "stop", "keep_alive", "task", "interrupt")
    ),
    ("post", "/compat/kaltura/v1/avatar-session"),
    *(
        ("post", f"/compat/kaltura/v1/avatar-session/{{sessionId}}/{op}")
        for op in ("init-client", "say-text", "keep-alive", "end-session")
    ),
}
# Compatibility routes answer in their service's error body (Protoface's is Facecast's own).
COMPAT_ERROR_BODIES = {
    "/compat/agenthuman/": "#/components/schemas/AgentHumanErrorBody",
    "/compat/heygen/": "#/components/schemas/HeyGenError",
    "/compat/kaltura/": "#/components/schemas/KalturaError",
}


def _operations(openapi: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if path != "/boom"
    }


def test_openapi_describes_every_route(openapi: dict[str, Any]) -> None:
    assert set(_operations(openapi)) == EXPECTED_OPERATIONS


def test_every_error_response_is_the_envelope_and_has_a_request_id(
    openapi: dict[str, Any],
) -> None:
    envelope = "#/components/schemas/ErrorEnvelope"
    for (method, path), operation in _operations(openapi).items():
        responses = operation["responses"]
        assert "default" in responses, (method, path)
        assert "500" in responses, (method, path)
        assert "422" not in responses or path.endswith("/v1/sessions"), (method, path)
        expected = next(
            (body for prefix, body in COMPAT_ERROR_BODIES.items() if path.startswith(prefix)),
            envelope,
        )
        for status, response in responses.items():
            assert "X-Request-Id" in response["headers"], (method, path, status)
            if status.startswith(("4", "5")) or status == "default":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": expected}, (method, path, status)
            if status in ("429", "503"):
                assert "Retry-After" in response["headers"], (method, path, status)


def test_openapi_declares_both_auth_schemes_and_the_idempotency_header(
    openapi: dict[str, Any],
) -> None:
    schemes = openapi["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"]["name"] == "x-api-key"
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    create = _operations(openapi)[("post", "/v1/sessions")]
    assert {"name": "Idempotency-Key", "in": "header"}.items() <= create["parameters"][0].items()
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Session"
    }


def test_openapi_publishes_the_patterns_the_api_enforces(openapi: dict[str, Any]) -> None:
    """What the document calls valid is accepted: the header and the cursor are checked by
    code with their own error codes, against these same patterns."""
    operations = _operations(openapi)
    for method, path in [
        ("post", "/v1/sessions"),
        ("post", "/v1/sessions/{session_id}/end"),
        ("post", "/v1/sessions/{session_id}/keep-alive"),
        ("post", "/v1/sessions/{session_id}/interrupt"),
    ]:
        (header,) = [p for p in operations[(method, path)]["parameters"] if p["in"] == "header"]
        assert header["name"] == "Idempotency-Key"
        assert header["schema"]["pattern"] == idempotency.KEY_PATTERN
    (cursor,) = [
        p for p in operations[("get", "/v1/sessions")]["parameters"] if p["name"] == "cursor"
    ]
    assert cursor["schema"]["pattern"] == SESSION_ID_PATTERN
    next_cursor = openapi["components"]["schemas"]["SessionList"]["properties"]["next_cursor"]
    assert next_cursor["anyOf"][0]["pattern"] == SESSION_ID_PATTERN


def test_openapi_models_have_examples_and_a_write_only_token(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert schemas["CreateSessionRequest"]["examples"]
    assert schemas["Session"]["examples"]
    assert schemas["ErrorEnvelope"]["examples"]
    token = schemas["LiveKitTransportRequest"]["properties"]["worker_token"]
    assert token["writeOnly"] is True
    assert schemas["LiveKitTransportView"]["properties"]["worker_token"]["const"] == "[redacted]"
    assert "HTTPValidationError" not in schemas
    assert set(schemas["ErrorType"]["enum"]) == {
        "invalid_request",
        "authentication",
        "permission",
        "not_found",
        "conflict",
        "unprocessable",
        "rate_limit",
        "quota_exceeded",
        "internal",
        "service_unavailable",
    }
