"""A create answers `queued` once the operator has admitted the session (as Protoface's does),
waiting for that on the session watch for at most `create_queue_wait_seconds`: with the real
operator, with the phase written as the operator writes it, and with nobody writing it
(`created` once the bound has passed). The harness's default bound is 0 (no operator runs in
it), so each test here sets its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from api_shim.sessions import mapping
from api_shim.sessions.index import SessionIndex
from api_shim.sessions.schemas import CreateSessionRequest
from api_shim.tests.control_plane import BASE_SETTINGS, Cluster, eventually
from avatar_crds.ids import SESSION_PREFIX, new_public_id, to_public_id, to_resource_name
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from testbed.operator_process import OperatorProcess
from testbed.wait import wait_for

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

V1 = "/v1/sessions"
PROTOFACE = "/compat/protoface/v1/sessions"
# Long enough never to pass on a busy machine before the phase is written: each test that
# expects `queued` would fail with `created` if the answer came from the bound, not the watch.
GENEROUS = replace(BASE_SETTINGS, create_queue_wait_seconds=30.0)


def protoface_body(avatar_id: str) -> dict[str, Any]:
    """Protoface's page example, without `quality` (Protoface's default is `standard`, which
    needs the model weights) and without `transport.type` (its default is `livekit`)."""
    return {
        "avatar_id": avatar_id,
        "metadata": {"customer_session_id": "abc123"},
        "quality": "lite",
        "transport": {
            "room_name": "demo-room",
            "url": "wss://my-app.livekit.cloud",
            "worker_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
        },
    }


async def test_nobody_queues_it_so_the_create_answers_created_after_the_bound(
    cluster: Cluster, make_request: Any
) -> None:
    acme = await cluster.tenant()
    bound = 0.5
    started = time.monotonic()
    async with cluster.api(replace(BASE_SETTINGS, create_queue_wait_seconds=bound)) as http:
        response = await http.post(
            V1, json=make_request(avatar_id=cluster.avatar(acme)), headers=acme.headers
        )
    took = time.monotonic() - started
    assert response.status_code == 201, response.text
    session = response.json()
    assert (session["status"], session["queued_at"]) == ("created", None)
    assert took >= bound  # it did wait for the operator, and then answered


async def test_the_create_answers_with_the_phase_the_operator_writes(
    cluster: Cluster, make_request: Any
) -> None:
    acme = await cluster.tenant()
    body = make_request(avatar_id=cluster.avatar(acme))
    async with cluster.api(GENEROUS) as http:
        create = asyncio.create_task(http.post(V1, json=body, headers=acme.headers))
        made = await eventually(
            lambda: cluster.sessions_of(acme), within=30.0, what="the session to be made"
        )
        session_id = to_public_id(made[0]["metadata"]["name"])
        assert not create.done()  # still waiting: nobody has queued it yet
        # What the operator writes when it admits a session (through the status subresource).
        queued_at = "2026-11-21T08:00:01Z"
        cluster.set_session_status(session_id, {"phase": "queued", "queuedAt": queued_at})
        response = await create
    assert response.status_code == 201, response.text
    session = response.json()
    assert session["id"] == session_id
    assert (session["status"], session["queued_at"]) == ("queued", queued_at)


async def test_a_session_deleted_while_the_create_waits_answers_created(
    cluster: Cluster, make_request: Any
) -> None:
    acme = await cluster.tenant()
    body = make_request(avatar_id=cluster.avatar(acme))
    async with cluster.api(GENEROUS) as http:
        create = asyncio.create_task(http.post(V1, json=body, headers=acme.headers))
        made = await eventually(
            lambda: cluster.sessions_of(acme), within=30.0, what="the session to be made"
        )
        name = made[0]["metadata"]["name"]
        # Deleted before the operator saw it (the API server deletes it at once: no finalizer
        # yet). The wait ends on the watch's DELETED event, not on the 30 s bound.
        cluster.custom.delete_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, AVATAR_SESSION.plural, name
        )
        response = await asyncio.wait_for(create, timeout=20.0)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "created"


@pytest.fixture
def operator(
    control_plane: Any, cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    """The real operator on this module's namespace, as the chart runs it. Its sessions go
    before it does: it holds a finalizer on each, which only it removes, and a namespace with a
    session left in it would stay Terminating (tests that count LISTs wait for none to be)."""
    process = OperatorProcess(control_plane.kubeconfig, cluster.namespace, tmp_path)
    process.start()
    yield process
    try:
        cluster.custom.delete_collection_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, AVATAR_SESSION.plural
        )

        def sessions_gone() -> bool:
            listed: Any = cluster.custom.list_namespaced_custom_object(
                GROUP, VERSION, cluster.namespace, AVATAR_SESSION.plural
            )
            return not listed["items"]

        wait_for(sessions_gone, timeout=60, description="the operator to let its sessions go")
    finally:
        process.stop()


async def test_with_the_real_operator_v1_and_protoface_answer_queued(
    cluster: Cluster, make_request: Any, operator: OperatorProcess
) -> None:
    acme = await cluster.tenant()
    avatar = cluster.avatar(acme)
    async with cluster.api(GENEROUS) as http:
        v1 = await http.post(V1, json=make_request(avatar_id=avatar), headers=acme.headers)
        protoface = await http.post(
            PROTOFACE,
            json=protoface_body(avatar),
            headers={"Authorization": f"Bearer {acme.key}"},
        )
    for response in (v1, protoface):
        assert response.status_code == 201, response.text
        # queued, or further should the operator have gone on before the watch reported it
        assert response.json()["status"] in ("queued", "starting", "running"), response.text
    assert v1.json()["queued_at"] is not None
    assert protoface.json()["transport"]["worker_identity"] == "protoface-worker"
    raw = cluster.session_object(v1.json()["id"])
    assert raw is not None
    assert raw["status"]["phase"] != "created"


# --- the index's wait, without a cluster ---------------------------------------------------------


async def test_the_index_wait_is_bounded_and_woken_by_the_phase(make_request: Any) -> None:
    index = SessionIndex(None)  # fed by hand, as its watch would
    index._replace([], time.monotonic())
    name = to_resource_name(new_public_id(SESSION_PREFIX), SESSION_PREFIX)
    resource = mapping.build_session(
        CreateSessionRequest.model_validate(make_request()),
        name=name,
        namespace="facecast",
        tenant="acme",
        max_duration_seconds=600,
    )
    raw = mapping.session_body(resource)
    index._apply("ADDED", raw)
    started = time.monotonic()
    assert await index.past_created(name, 0.2) is None  # still `created`: the bound ends it
    assert time.monotonic() - started >= 0.2
    assert await index.past_created(name, 0) is None  # a bound of 0 does not wait

    waiting = asyncio.create_task(index.past_created(name, 30.0))
    await eventually(lambda: name in index._phase_waits, within=5.0, what="the wait to start")
    assert not waiting.done()
    index._apply("MODIFIED", {**raw, "status": {"phase": "queued"}})
    seen = await asyncio.wait_for(waiting, timeout=5.0)
    assert seen is not None
    assert str(seen.status.phase) == "queued"
    # Already past `created`: answered at once.
    assert await asyncio.wait_for(index.past_created(name, 30.0), timeout=1.0) is not None
