"""The compatibility routes in /openapi.json: each under its service's tag, with its service's
error body on every error status, and only the statuses that service answers."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from api_shim.app import create_app
from api_shim.kube import Kube
from api_shim.settings import Settings

AGENTHUMAN = ("post", "/compat/agenthuman/v1/sessions")
PROTOFACE_CREATE = ("post", "/compat/protoface/v1/sessions")
PROTOFACE_GET = ("get", "/compat/protoface/v1/sessions/{session_id}")
HEYGEN = [
    ("get" if op == "list" else "post", f"/compat/heygen/v1/streaming.{op}")
    for op in ("new", "start", "stop", "keep_alive", "list", "task", "interrupt")
]
KALTURA_CREATE = ("post", "/compat/kaltura/v1/avatar-session")
KALTURA_SESSION = [
    ("post", f"/compat/kaltura/v1/avatar-session/{{sessionId}}/{op}")
    for op in ("init-client", "say-text", "keep-alive", "end-session")
]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    kube = Kube(client.Configuration(), "facecast", timeout=1.0)
    kube.close()  # serving the document touches no cluster
    openapi: dict[str, Any] = create_app(Settings(), kube).openapi()
    return openapi


def operation(document: dict[str, Any], route: tuple[str, str]) -> dict[str, Any]:
    method, path = route
    found: dict[str, Any] = document["paths"][path][method]
    return found


def test_every_compat_route_has_its_services_tag(document: dict[str, Any]) -> None:
    compat = {
        (method, path): op["tags"]
        for path, item in document["paths"].items()
        if path.startswith("/compat/")
        for method, op in item.items()
    }
    assert compat == {
        AGENTHUMAN: ["compat: AgentHuman"],
        PROTOFACE_CREATE: ["compat: Protoface"],
        PROTOFACE_GET: ["compat: Protoface"],
        **{route: ["compat: HeyGen Streaming"] for route in HEYGEN},
        **{route: ["compat: Kaltura Avatar"] for route in [KALTURA_CREATE, *KALTURA_SESSION]},
    }
    tags = {tag["name"] for tag in document["tags"]}
    assert {
        "compat: AgentHuman",
        "compat: Protoface",
        "compat: HeyGen Streaming",
        "compat: Kaltura Avatar",
    } <= tags


def test_kaltura_documents_its_two_credentials(document: dict[str, Any]) -> None:
    """The create takes the KS header; the session's calls the session token, never a key."""
    assert operation(document, KALTURA_CREATE)["security"] == [{"KalturaKS": []}]
    for route in KALTURA_SESSION:
        assert operation(document, route)["security"] == [{"KalturaSessionToken": []}], route
    schemes = document["components"]["securitySchemes"]
    assert schemes["KalturaKS"]["name"] == "Authorization"
    assert schemes["KalturaSessionToken"]["scheme"] == "bearer"


@pytest.mark.parametrize(
    ("route", "body", "success"),
    [
        (AGENTHUMAN, "AgentHumanErrorBody", ("201", "AgentHumanCreated")),
        (PROTOFACE_CREATE, "ErrorEnvelope", ("201", "ProtofaceSessionView")),
        (PROTOFACE_GET, "ErrorEnvelope", ("200", "ProtofaceSessionView")),
        (KALTURA_CREATE, "KalturaError", ("200", "KalturaSessionCreated")),
        (KALTURA_SESSION[0], "KalturaError", ("200", "KalturaClientConfig")),
        (KALTURA_SESSION[1], "KalturaError", ("200", "KalturaTextQueued")),
    ],
)
def test_compat_responses_are_the_services(
    document: dict[str, Any], route: tuple[str, str], body: str, success: tuple[str, str]
) -> None:
    responses = operation(document, route)["responses"]
    status, model = success
    ok_schema = responses[status]["content"]["application/json"]["schema"]
    assert ok_schema == {"$ref": f"#/components/schemas/{model}"}
    for code, response in responses.items():
        if code.startswith(("4", "5")) or code == "default":
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{body}"}, (route, code)
    assert "Retry-After" in responses["429"]["headers"]
    assert "Retry-After" in responses["503"]["headers"]


def test_agenthuman_documents_400_where_protoface_documents_422(document: dict[str, Any]) -> None:
    assert "422" not in operation(document, AGENTHUMAN)["responses"]
    assert "422" in operation(document, PROTOFACE_CREATE)["responses"]
    assert "422" not in operation(document, PROTOFACE_GET)["responses"]
    for route in [KALTURA_CREATE, *KALTURA_SESSION]:
        assert "422" not in operation(document, route)["responses"], route


def test_compat_models_do_not_rename_facecasts(document: dict[str, Any]) -> None:
    """Both services have a `CreateSession`: names clashing would rename /v1's models too."""
    assert not [name for name in document["components"]["schemas"] if "__" in name]
