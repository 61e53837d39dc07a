"""Property: every status the machine can produce is one the API server accepts.

A status the CRD refuses is never written, so the session never moves on: it cannot end, be
deleted, or stop being charged. Hypothesis drives `step` with arbitrary phases, pod facts,
worker reports and timings, including messages far over the CRD's limits and messages that
quote secrets, and each produced status is checked against the pydantic model and against the
generated CRD's openAPIV3Schema itself (its CEL rules are mirrored by the model's validators).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avatar_crds.enums import REASONS_BY_PHASE, EndReason, FailureReason, Phase, WebhookEvent
from avatar_crds.generate import REPO_ROOT
from avatar_crds.session import MESSAGE_MAX_LENGTH, AvatarSessionStatus, Binding
from avatar_crds.speech import SPEECH_TASKS_MAX, SpeechState
from avatar_operator.machine import Facts, step
from avatar_operator.observe import PodFacts
from testbed.objects import LIMITS, SAMPLE_TOKEN, SPEC, T0

API_KEY = "fc_" + "Z9-_" * 10 + "abc"
SECRETS = (SAMPLE_TOKEN, API_KEY)
# Which webhook events a session in each phase can still have pending: those of the phases
# it went through. (Two pending entries for one event is a state no step can reach.)
_EVENTS_SO_FAR = {
    Phase.CREATED: (),
    Phase.QUEUED: (WebhookEvent.QUEUED,),
    Phase.STARTING: (WebhookEvent.QUEUED, WebhookEvent.STARTED),
    Phase.RUNNING: (WebhookEvent.QUEUED, WebhookEvent.STARTED, WebhookEvent.FIRST_FRAME),
}
_EVENTS_SO_FAR[Phase.ENDING] = _EVENTS_SO_FAR[Phase.RUNNING]
_EVENTS_SO_FAR[Phase.ENDED] = (*_EVENTS_SO_FAR[Phase.RUNNING], WebhookEvent.ENDED)
_EVENTS_SO_FAR[Phase.CANCELED] = (*_EVENTS_SO_FAR[Phase.STARTING], WebhookEvent.ENDED)
_EVENTS_SO_FAR[Phase.FAILED] = (*_EVENTS_SO_FAR[Phase.RUNNING], WebhookEvent.FAILED)


def _session_status_schema() -> dict[str, Any]:
    path = REPO_ROOT / "crds/manifests/avatarsessions.facecast.io.yaml"
    crd = yaml.safe_load(path.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["status"]  # type: ignore[no-any-return]


STATUS_SCHEMA = _session_status_schema()


# --- what goes in -------------------------------------------------------------------------

# Short text most of the time, and now and then a log tail far over any limit, with secrets
# somewhere in it.
_piece = st.one_of(st.text(max_size=40), st.sampled_from(SECRETS), st.just("x" * 1500))
messages = st.lists(_piece, max_size=4).map("".join)
offsets = st.integers(min_value=-4000, max_value=4000).map(lambda s: T0 + timedelta(seconds=s))
moments = st.none() | offsets


def sometimes(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """None three times in four: a request to end, a deletion or a lost node short-cuts most
    steps, and the paths worth exploring are the ones where the worker breaks."""
    return st.integers(min_value=0, max_value=3).flatmap(
        lambda n: strategy if n == 0 else st.none()
    )


rarely = sometimes(st.just(True)).map(bool)


@st.composite
def pods(draw: st.DrawFn) -> PodFacts:
    return PodFacts(
        name="sess-1-worker",
        uid="u1",
        phase=draw(st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Failed"])),
        node_name=draw(st.none() | st.sampled_from(["gpu-0", "n" * 253])),
        deleting=draw(rarely),
        exit_message=draw(messages),
    )


@st.composite
def workers(draw: st.DrawFn) -> dict[str, Any]:
    worker: dict[str, Any] = {
        "heartbeatAt": draw(moments),
        "firstFrameAt": draw(moments),
        "lastAudioAt": draw(moments),
        "frames": draw(st.integers(min_value=0, max_value=10**6)),
        "billableSeconds": draw(st.floats(min_value=0, max_value=1e6)),
    }
    # Speech reports up to the limit, every task started or finished (the most webhooks).
    count = draw(st.sampled_from([0, 1, SPEECH_TASKS_MAX]))
    states = st.sampled_from([state for state in SpeechState if state is not SpeechState.QUEUED])
    worker["speech"] = [
        {"id": f"spk_01JCZ3V7M4Q8R2T6W9X0Y1{i:04d}", "state": draw(states), "startedAt": T0}
        for i in range(count)
    ]
    if draw(rarely):
        # The worker's own report is limited by the CRD too: at most the limit, as written.
        message = draw(messages)[:MESSAGE_MAX_LENGTH]
        worker["failure"] = {"reason": draw(st.sampled_from(FailureReason)), "message": message}
    return {key: value for key, value in worker.items() if value is not None}


@st.composite
def statuses(draw: st.DrawFn, phase: Phase) -> AvatarSessionStatus:
    status: dict[str, Any] = {
        "phase": phase.value,
        "queuedAt": draw(moments),
        "startingAt": draw(moments),
        "runningAt": draw(moments),
        "endingAt": draw(moments),
        "finishedAt": draw(moments),
        "deadlines": {
            "startBy": draw(moments),
            "idleAt": draw(moments),
            "maxDurationAt": draw(moments),
        },
        "worker": draw(st.none() | workers()),
    }
    if phase in REASONS_BY_PHASE:
        status["reason"] = draw(st.sampled_from(sorted(REASONS_BY_PHASE[phase])))
    elif phase is Phase.ENDING:
        status["reason"] = draw(st.sampled_from(EndReason))
    events = draw(st.sets(st.sampled_from(_EVENTS_SO_FAR[phase]))) if _EVENTS_SO_FAR[phase] else ()
    status["pendingWebhooks"] = [
        {"event": event, "phase": phase.value, "occurredAt": draw(offsets)} for event in events
    ]
    return AvatarSessionStatus.model_validate(status)


@st.composite
def situations(draw: st.DrawFn) -> tuple[Phase | None, Facts, datetime]:
    phase = draw(st.sampled_from([None, *Phase, *[Phase.STARTING, Phase.RUNNING] * 3]))
    spec = SPEC.model_copy(
        update={
            "end_requested_at": draw(sometimes(offsets)),
            "keep_alive_at": draw(moments),
            "idle_timeout_seconds": draw(st.none() | st.integers(min_value=1, max_value=600)),
        }
    )
    facts = Facts(
        spec=spec,
        status=draw(statuses(phase or Phase.CREATED)),
        limits=replace(LIMITS, ending_soon=timedelta(seconds=draw(st.sampled_from([0, 10, 700])))),
        deleting=draw(rarely),
        pod=draw(st.one_of(st.none(), pods(), pods(), pods())),
        node_present=not draw(rarely),
        binding=draw(st.none() | st.just(Binding(pool="p", pod="s-worker", slot=0))),
        minutes_exhausted=draw(st.booleans()),
        webhooks_enabled=draw(st.booleans()),
        webhooks_done=frozenset(
            (event, "", "") for event in draw(st.lists(st.sampled_from(WebhookEvent)))
        ),
    )
    return phase, facts, draw(offsets)


# --- the property -------------------------------------------------------------------------


@settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(situations())
def test_every_produced_status_validates_against_the_crd(
    situation: tuple[Phase | None, Facts, datetime],
) -> None:
    phase, facts, now = situation
    decision = step(phase, facts, now)
    body = decision.status.to_k8s()
    AvatarSessionStatus.model_validate(body)
    assert schema_errors(body, STATUS_SCHEMA) == []
    shown = [decision.status.message or "", decision.event[2] if decision.event else ""]
    for secret in SECRETS:
        assert not any(secret in text for text in shown)


@st.composite
def broken_workers(draw: st.DrawFn) -> tuple[Phase, Facts, datetime]:
    """A worker whose pod failed, or which reported a failure, with arbitrary text in what its
    pod or report says."""
    how = draw(st.sampled_from(["exited", "reported"]))
    running = how in ("exited", "reported") and draw(st.booleans())
    text = draw(messages)
    status: dict[str, Any] = {
        "phase": "running" if running else "starting",
        "startingAt": T0,
        "deadlines": {"startBy": T0},
        "worker": {"heartbeatAt": T0},
    }
    if running:
        status |= {"runningAt": T0, "worker": {"heartbeatAt": T0, "firstFrameAt": T0}}
    if how == "reported":
        failure = {
            "reason": draw(st.sampled_from(FailureReason)),
            "message": text[:MESSAGE_MAX_LENGTH],
        }
        status["worker"] = {**status["worker"], "failure": failure}
    pod = PodFacts(
        name="sess-1-worker",
        uid="u1",
        phase="Failed" if how == "exited" else "Pending",
        node_name="gpu-0",
        deleting=False,
        exit_message=text if how == "exited" else None,
    )
    facts = Facts(
        spec=SPEC,
        status=AvatarSessionStatus.model_validate(status),
        limits=LIMITS,
        pod=pod,
        webhooks_enabled=draw(st.booleans()),
    )
    return Phase.RUNNING if running else Phase.STARTING, facts, T0 + timedelta(seconds=1)


@settings(max_examples=200, deadline=None, database=None)
@given(broken_workers())
def test_a_broken_worker_fails_with_a_message_that_fits_and_hides_secrets(
    situation: tuple[Phase, Facts, datetime],
) -> None:
    """The paths that copy the pod's or the worker's own words into the status, each time."""
    phase, facts, now = situation
    decision = step(phase, facts, now)
    assert decision.phase is Phase.FAILED
    body = decision.status.to_k8s()
    AvatarSessionStatus.model_validate(body)
    assert schema_errors(body, STATUS_SCHEMA) == []
    assert decision.event is not None
    for secret in SECRETS:
        assert secret not in (decision.status.message or "")
        assert secret not in decision.event[2]


def test_the_schema_check_catches_what_the_api_server_refuses() -> None:
    """The checker itself: a message over the limit, an unknown reason, a duplicate map key."""
    too_long = {"phase": "failed", "reason": "pod_failed", "message": "m" * 1025}
    assert schema_errors(too_long, STATUS_SCHEMA) == [".message: longer than 1024"]
    fits = {**too_long, "message": "m" * MESSAGE_MAX_LENGTH}
    assert schema_errors(fits, STATUS_SCHEMA) == []
    assert schema_errors({"reason": "bored"}, STATUS_SCHEMA) == [".reason: 'bored' not in enum"]
    pending = {"event": "session.failed", "phase": "failed", "occurredAt": "2026-11-21T12:00:00Z"}
    twice = {"pendingWebhooks": [pending, pending]}
    assert schema_errors(twice, STATUS_SCHEMA) == [".pendingWebhooks: duplicate key"]
    assert schema_errors({"surprise": 1}, STATUS_SCHEMA) == [".surprise: not in the schema"]


# --- a checker for the subset of OpenAPI v3 that the generated CRD uses ----------------------

_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


def schema_errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """What the API server's schema validation would refuse in `value` (CEL rules aside)."""
    if value is None:
        return [] if schema.get("nullable") else [f"{path}: null"]
    expected = _TYPES[schema["type"]]
    if not isinstance(value, expected) or (isinstance(value, bool) and schema["type"] != "boolean"):
        return [f"{path}: not {schema['type']}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in enum")
    if isinstance(value, str):
        errors += _string_errors(value, schema, path)
    if isinstance(value, int | float) and value < schema.get("minimum", value):
        errors.append(f"{path}: below minimum")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{path}.{key}: not in the schema" for key in value if key not in properties]
        errors += [
            f"{path}.{key}: required" for key in schema.get("required", ()) if key not in value
        ]
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{path}.{key}")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{path}: more than {schema['maxItems']} items")
        keys = schema.get("x-kubernetes-list-map-keys")
        if keys and len({tuple(item.get(k) for k in keys) for item in value}) < len(value):
            errors.append(f"{path}: duplicate key")
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{index}]")
    return errors


def _string_errors(value: str, schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    # The API server counts characters (runes), as Python's len does.
    if len(value) > schema.get("maxLength", len(value)):
        errors.append(f"{path}: longer than {schema['maxLength']}")
    if len(value) < schema.get("minLength", 0):
        errors.append(f"{path}: shorter than {schema['minLength']}")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        errors.append(f"{path}: does not match {schema['pattern']}")
    if schema.get("format") == "date-time":
        try:
            datetime.fromisoformat(value)
        except ValueError:
            errors.append(f"{path}: not a date-time")
    return errors
