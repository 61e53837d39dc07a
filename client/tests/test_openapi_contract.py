"""The client against the server's OpenAPI document, built in-process from the app: every /v1
operation has a client method, and the client's models have the fields (and required-ness)
the document gives, so neither side can change without this failing."""

from __future__ import annotations

import inspect
import operator
from typing import Any, Literal, get_args, get_origin

import pytest
from kubernetes import client
from pydantic import BaseModel

from api_shim.app import create_app
from api_shim.errors import ErrorType
from api_shim.kube import Kube
from api_shim.sessions import schemas, speech_schemas
from api_shim.settings import Settings
from facecast import AsyncFacecast, Facecast, FacecastError, models
from facecast.errors import ERROR_TYPES
from facecast.operations import OPERATIONS, Operation

BASE_URL = "http://api.invalid"  # never called
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch"})


def _document() -> dict[str, Any]:
    kube = Kube(client.Configuration(), "facecast", timeout=1.0)
    kube.close()  # never called: building the document touches no cluster
    document: dict[str, Any] = create_app(Settings(), kube).openapi()
    return document


DOCUMENT = _document()
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]


def _operation(op: Operation[Any]) -> dict[str, Any]:
    documented: dict[str, Any] = DOCUMENT["paths"][op.path][op.method.lower()]
    return documented


def _resolve(schema: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    ref = schema.get("$ref")
    if ref is None:
        return None, schema
    name = str(ref).rsplit("/", 1)[-1]
    return name, SCHEMAS[name]


def _object_schemas(schema: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """The object schemas a property's schema may hold (through refs, unions and arrays)."""
    found: list[tuple[str | None, dict[str, Any]]] = []
    for option in [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]:
        name, resolved = _resolve(option)
        if "properties" in resolved:
            found.append((name, resolved))
        if "items" in resolved:
            found.extend(_object_schemas(resolved["items"]))
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _pair(
    model_types: list[type[BaseModel]], schemas: list[tuple[str | None, dict[str, Any]]]
) -> list[tuple[type[BaseModel], dict[str, Any]]]:
    """Client model to server schema: the only one, or by name (the server's request and
    response models end in Request and View)."""
    assert len(model_types) == len(schemas), (model_types, [name for name, _ in schemas])
    if len(schemas) == 1:
        return [(model_types[0], schemas[0][1])]
    by_name = dict(schemas)
    pairs = []
    for model in model_types:
        names = [model.__name__ + suffix for suffix in ("", "Request", "View")]
        match = next((by_name[n] for n in names if n in by_name), None)
        assert match is not None, f"no schema for {model.__name__} among {list(by_name)}"
        pairs.append((model, match))
    return pairs


def check_model(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Same field names, same required-ness, all the way down."""
    properties: dict[str, Any] = schema.get("properties", {})
    assert set(model.model_fields) == set(properties), model.__name__
    # A union's tag has a default on the client but is always sent (`wire`), which serves the
    # server whether it requires the tag or defaults it (LiveKit's: the default transport).
    always_sent: frozenset[str] = getattr(model, "ALWAYS_SENT", frozenset())
    required = {n for n, f in model.model_fields.items() if f.is_required()} | always_sent
    assert required == set(schema.get("required", [])) | always_sent, model.__name__
    for name, field in model.model_fields.items():
        nested = _models_in(field.annotation)
        objects = _object_schemas(properties[name])
        if not nested and not objects:
            continue
        for nested_model, nested_schema in _pair(nested, objects):
            check_model(nested_model, nested_schema)


def _success_schema(documented: dict[str, Any]) -> dict[str, Any]:
    [status] = [code for code in documented["responses"] if code.startswith("2")]
    schema: dict[str, Any] = documented["responses"][status]["content"]["application/json"][
        "schema"
    ]
    return schema


def test_every_v1_operation_has_exactly_one_client_method() -> None:
    documented = {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        if path.startswith("/v1/")
        for method in item
        if method in HTTP_METHODS
    }
    table = [(op.method, op.path) for op in OPERATIONS]
    assert len(table) == len(set(table))
    assert set(table) == documented


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.client_method)
def test_the_method_exists_on_both_clients(op: Operation[Any]) -> None:
    sync_client = Facecast(api_key="fc_test", base_url=BASE_URL)
    async_client = AsyncFacecast(api_key="fc_test", base_url=BASE_URL)
    sync_method = operator.attrgetter(op.client_method)(sync_client)
    async_method = operator.attrgetter(op.client_method)(async_client)
    assert callable(sync_method)
    assert not inspect.iscoroutinefunction(sync_method)
    assert inspect.iscoroutinefunction(async_method)
    # Same parameters, so code moves between the two without surprises.
    assert inspect.signature(sync_method).parameters.keys() == (
        inspect.signature(async_method).parameters.keys()
    )
    sync_client.close()


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.client_method)
def test_parameters_match(op: Operation[Any]) -> None:
    documented = _operation(op)
    parameters = documented.get("parameters", [])
    assert {p["name"] for p in parameters if p["in"] == "query"} == set(op.query)
    method = operator.attrgetter(op.client_method)(Facecast(api_key="fc_test", base_url=BASE_URL))
    assert set(op.query) <= set(inspect.signature(method).parameters)
    headers = {p["name"] for p in parameters if p["in"] == "header"}
    if op.creates:
        assert op.method == "POST"
        assert "Idempotency-Key" in headers
        assert "idempotency_key" in inspect.signature(method).parameters


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.client_method)
def test_the_response_model_matches(op: Operation[Any]) -> None:
    name, schema = _resolve(_success_schema(_operation(op)))
    assert name is not None
    check_model(op.response, schema)


def test_the_create_session_request_matches() -> None:
    body = _operation(OPERATIONS[0])["requestBody"]["content"]["application/json"]["schema"]
    _, schema = _resolve(body)
    check_model(models.CreateSessionRequest, schema)


def test_the_create_avatar_requests_match() -> None:
    content = next(
        _operation(op)["requestBody"]["content"]
        for op in OPERATIONS
        if op.client_method == ("avatars.create")
    )
    check_model(models.CreateAvatarRequest, content["application/json"]["schema"])
    form = content["multipart/form-data"]["schema"]
    options = set(models.CreateAvatarRequest.model_fields) - {"image_url", "image_base64"}
    assert set(form["properties"]) == {models.AVATAR_FILE_FIELD, *options}
    assert form["required"] == [models.AVATAR_FILE_FIELD]


def test_the_speak_request_matches() -> None:
    speak = next(op for op in OPERATIONS if op.client_method == "sessions.speak")
    body = _operation(speak)["requestBody"]["content"]["application/json"]["schema"]
    _, schema = _resolve(body)
    assert speak.request is models.SpeakRequest
    check_model(models.SpeakRequest, schema)


def _literal_values(alias: Any) -> set[str]:
    assert get_origin(alias) is Literal
    return {str(v) for v in get_args(alias)}


@pytest.mark.parametrize(
    ("alias", "component"),
    [
        (models.Quality, "Quality"),
        (models.AspectRatio, "AspectRatio"),
        (models.VideoEncoding, "VideoEncoding"),
        (models.AudioSource, "AudioSource"),
        (models.SessionStatus, "Phase"),
        (models.SpeechState, "SpeechState"),
    ],
)
def test_enumerations_match(alias: Any, component: str) -> None:
    assert _literal_values(alias) == set(SCHEMAS[component]["enum"])


def test_visibility_matches() -> None:
    assert _literal_values(models.Visibility) == set(
        SCHEMAS["AvatarView"]["properties"]["visibility"]["enum"]
    )


def test_the_checker_sees_a_drift() -> None:
    """The check itself: a model with a field the document lacks, or missing one, fails."""

    class Drifted(models.Usage):
        extra_field: int = 0

    with pytest.raises(AssertionError):
        check_model(Drifted, SCHEMAS["Usage"])
    with pytest.raises(AssertionError):
        check_model(models.Minutes, SCHEMAS["Concurrency"])


def test_every_error_type_has_its_exception() -> None:
    assert set(ERROR_TYPES) == {str(t) for t in ErrorType}
    assert len(set(ERROR_TYPES.values())) == len(ERROR_TYPES)
    detail = SCHEMAS["ErrorDetail"]["properties"]
    error = FacecastError(status=400, type="invalid_request", code="c", message="m")
    assert set(detail) <= set(vars(error))


def test_a_full_create_is_what_the_server_accepts() -> None:
    """Every field set: the body the client sends passes the server's own request model, the
    worker token included (and only there: not in the client model's repr)."""
    request = models.CreateSessionRequest(
        avatar_id="av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
        quality="lite",
        aspect_ratio="1:1",
        video_encoding="H264",
        voice=models.Voice(id="alloy", speed=1.5),
        idle_timeout_seconds=None,
        max_duration_seconds=300,
        metadata={"ticket": "T-1"},
        transport=models.LiveKitTransport(
            url="wss://rtc.example.com",
            room_name="r",
            worker_token="secret-token-123",
            worker_identity="w",
            audio_source="track",
            subscribe_to_identity="agent",
            synthetic_audio_if_no_input=True,
        ),
    )
    body = request.wire()
    parsed = schemas.CreateSessionRequest.model_validate(body)
    assert parsed.idle_timeout_seconds is None  # set to null: sent as null
    transport = parsed.transport
    assert isinstance(transport, schemas.LiveKitTransportRequest)
    assert transport.worker_token.get_secret_value() == "secret-token-123"
    assert transport.subscribe_to_identity == "agent"
    assert "secret-token-123" not in repr(request)
    minimal = models.CreateSessionRequest(
        avatar_id="av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
        quality="lite",
        transport=models.LiveKitTransport(
            url="wss://rtc.example.com", room_name="r", worker_token="t"
        ),
    ).wire()
    # Only what was set: the server's defaults apply to the rest.
    assert set(minimal) == {"avatar_id", "quality", "transport"}
    assert set(minimal["transport"]) == {"type", "url", "room_name", "worker_token"}


def test_a_speak_is_what_the_server_accepts() -> None:
    request = models.SpeakRequest(
        text="Hello.", voice=models.Voice(id="espeak:de", speed=1.5), interrupt=True
    )
    parsed = speech_schemas.SpeakRequest.model_validate(request.wire())
    assert parsed.voice is not None
    assert (parsed.text, parsed.voice.id, parsed.voice.speed, parsed.interrupt) == (
        "Hello.",
        "espeak:de",
        1.5,
        True,
    )
    plain = models.SpeakRequest(text="Hi.", voice=None, interrupt=False).wire()
    assert speech_schemas.SpeakRequest.model_validate(plain).interrupt is False
