"""Schemathesis against /openapi.json: the app in-process (ASGI) on the real kube-apiserver, as
an authenticated tenant, with every built-in check: no 5xx, and every response (status, content
type, headers, body) matches the document; schema-valid requests are accepted, invalid ones
refused, and a missing or wrong key is a 401.

Bounded and reproducible: derandomized generation with a fixed seed and no example database, at
most MAX_EXAMPLES generated cases per operation (plus the document's examples and schemathesis's
coverage cases), a deadline per case, and a time budget for the whole module.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from kubernetes import client
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api_shim import admin
from api_shim.app import create_app
from api_shim.avatars.blazeface import BlazeFaceDetector
from api_shim.avatars.fetch import Fetcher
from api_shim.avatars.pipeline import AvatarPipeline
from api_shim.kube import Kube
from api_shim.sessions import mapping
from api_shim.sessions.schemas import CreateSessionRequest
from api_shim.settings import Settings
from avatar_crds.enums import Quality
from avatar_crds.ids import SESSION_PREFIX, to_resource_name
from avatar_crds.kinds import AVATAR
from avatar_crds.meta import GROUP, VERSION
from testbed.objects import avatar_manifest

pytestmark = pytest.mark.controlplane

# The ids the document's examples use exist, so the examples reach the success paths.
EXAMPLE_AVATAR_ID = "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"
EXAMPLE_SESSION_ID = "sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"

MAX_EXAMPLES = 50  # generated cases per operation
SEED = 20_241_121
DEADLINE_MS = 5_000  # per case (a request and the checks' follow-up requests)
BUDGET_S = 50.0  # all operations together; the suite's control plane start is not counted
OPERATION_TIMEOUT_S = 60  # hard stop for one operation that hangs


def _document_app() -> FastAPI:
    """The app as far as /openapi.json goes: the document depends on no cluster, so it is loaded
    when pytest collects this module (one test per operation). Requests go to the fixture's
    app on the real control plane, which serves the same document."""
    kube = Kube(client.Configuration(), "facecast", timeout=1.0)
    kube.close()  # never called: serving the document touches no cluster
    return create_app(Settings(), kube)


DOCUMENT_APP = _document_app()
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
        "request-timeout": DEADLINE_MS / 1000,
    }
)
# The compatibility routes (/compat/...) are left out: their bodies hold values whose validity no
# schema can state (AgentHuman's LiveKit token must name its room; its `avatar` string is an id,
# a URL or an image), they translate onto the same service the /v1 routes fuzzed here reach, and
# test_compat_*.py checks their answers against each service's documented shapes.
schema = schemathesis.openapi.from_asgi("/openapi.json", DOCUMENT_APP, config=CONFIG).exclude(
    path_regex="^/compat/"
)


@dataclass(frozen=True)
class FuzzTarget:
    app: FastAPI
    headers: dict[str, str]
    deadline: float  # time.monotonic() past which no more requests are made


async def _no_network(host: str, port: int) -> list[str]:
    """Fuzzed image URLs are never resolved, let alone fetched: 400 image_fetch_failed."""
    raise OSError(f"the fuzz test resolves no names ({host})")


@pytest.fixture(scope="module")
def fuzz_target(
    control_plane: Any,
    api_client: client.ApiClient,
    crds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FuzzTarget]:
    """A namespace with a tenant that has room for every session the fuzzing makes, its key,
    the example avatar and session, and the app on it."""
    core: Any = client.CoreV1Api(api_client)
    namespace = f"fuzz-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": namespace}})
    kube = Kube(api_client.configuration, namespace, timeout=10.0)
    try:
        key = asyncio.run(_seed(kube, client.CustomObjectsApi(api_client)))
        app = create_app(
            Settings(
                namespace=namespace,
                # 503 at_capacity sheds a real cluster's queue; here nothing ever gets queued.
                max_queued=100_000,
                create_queue_wait_seconds=0.0,  # so no create waits for an operator
                avatar_store=str(tmp_path_factory.mktemp("fuzz-avatars")),
            ),
            kube,
            # Generated image URLs must not reach the network (public addresses pass the
            # fetcher's checks); a resolver that refuses every name keeps them on this machine.
            avatar_pipeline=AvatarPipeline(
                BlazeFaceDetector, fetcher=Fetcher(resolver=_no_network)
            ),
        )
        assert app.openapi() == DOCUMENT_APP.openapi()
        yield FuzzTarget(app=app, headers={"x-api-key": key}, deadline=time.monotonic() + BUDGET_S)
    finally:
        kube.close()
        core.delete_namespace(namespace)


async def _seed(kube: Kube, custom: client.CustomObjectsApi) -> str:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    await admin.create_tenant(
        kube,
        admin.build_tenant(
            tenant,
            max_concurrent=10_000,
            minutes=100_000,
            max_duration=3600,
            qualities=list(Quality),
            requests_per_minute=100_000,
        ),
    )
    key, _ = await admin.create_key(kube, tenant, "fuzz")
    custom.create_namespaced_custom_object(
        GROUP, VERSION, kube.namespace, AVATAR.plural, _example_avatar(tenant)
    )
    example = CreateSessionRequest.model_json_schema()["examples"][0]
    resource = mapping.build_session(
        CreateSessionRequest.model_validate(example),
        name=to_resource_name(EXAMPLE_SESSION_ID, SESSION_PREFIX),
        namespace=kube.namespace,
        tenant=tenant,
        max_duration_seconds=600,
    )
    await kube.create_session(mapping.session_body(resource))
    return key


def _example_avatar(tenant: str) -> dict[str, Any]:
    return avatar_manifest(EXAMPLE_AVATAR_ID, tenant, visibility="public")


# Refusals of POST /v1/sessions that depend on the installation, not on the request's shape:
# where the platform lets workers connect (its allow-list: a schema-valid room URL on a private
# address is refused, as are port and label sizes the URL pattern cannot say) and which
# transports this version runs. The field descriptions document them; any other refusal of a
# schema-valid session is still a failure.
INSTALLATION_REFUSALS = {
    (400, "transport_url_forbidden", "transport.url"),
    (400, "invalid_parameter", "transport.url"),
    (422, "transport_not_supported", "transport.type"),
    # The neural tiers need model weights the installation may not have (served qualities).
    (422, "quality_not_available", "quality"),
    # Managed rooms need the platform's own LiveKit server, configured or not.
    (400, "managed_rooms_not_configured", "transport.type"),
    # The installation's voices (GET /v1/voices), not a pattern, say which `voice` it speaks
    # (at create, and for one speak task).
    (400, "unknown_voice", "voice.id"),
    (400, "voice_speed_out_of_range", "voice.speed"),
}


def positive_session_acceptance(ctx: Any, response: Any, case: schemathesis.Case[Any]) -> None:
    if response.status_code in (400, 422):
        error = response.json().get("error", {})
        refusal = (response.status_code, error.get("code"), error.get("param"))
        if refusal in INSTALLATION_REFUSALS:
            return
        if error.get("code") == "invalid_parameter" and _ends_in_newline(case.body, error):
            return
    positive_data_acceptance(ctx, response, case)


def _ends_in_newline(body: Any, error: dict[str, Any]) -> bool:
    """Whether the refused field is a string that ends in a newline. The generator reads a
    schema's `pattern` with Python's `re`, whose `$` also matches before a final newline;
    JSON Schema's (ECMA-262) and the API's do not, so such a value was never schema-valid."""
    value = body
    for part in str(error.get("param") or "").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return isinstance(value, str) and value.endswith("\n")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=DEADLINE_MS,
    derandomize=True,
    database=None,
    # Generation is slow for the large request body; that is the schema's size, not a problem.
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.timeout(OPERATION_TIMEOUT_S)
def test_every_response_matches_the_document(
    case: schemathesis.Case[Any], fuzz_target: FuzzTarget
) -> None:
    assert time.monotonic() < fuzz_target.deadline, f"fuzzing took over {BUDGET_S:.0f}s"
    # An avatar upload is schema-valid whatever file it carries, but only a photo of one face
    # is accepted: refusing the rest with 400 (`not_an_image`, `no_face_detected`, ...) is the
    # documented behaviour, which the schema cannot express.
    operation = (case.method.upper(), case.operation.path)
    upload = operation == ("POST", "/v1/avatars")
    session = operation in (("POST", "/v1/sessions"), ("POST", "/v1/sessions/{session_id}/speak"))
    case.call_and_validate(
        app=fuzz_target.app,
        headers=fuzz_target.headers,
        excluded_checks=[positive_data_acceptance] if upload or session else None,
        additional_checks=[positive_session_acceptance] if session else None,
    )
