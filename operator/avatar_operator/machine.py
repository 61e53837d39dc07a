"""The session state machine: a pure function from (phase, observed facts, now) to a decision.

No I/O. The handlers gather facts, call `step`, then carry out the actions and write the status
it returns. Every call recomputes from what is observed (level-triggered), so calling it twice
with the same facts gives the same decision, and a restart loses nothing: all the timers are
absolute deadlines kept in the status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import ClassVar

from avatar_crds.enums import CancelReason, EndReason, FailureReason, Phase, WebhookEvent
from avatar_crds.messages import fit_message
from avatar_crds.session import (
    PENDING_WEBHOOKS_MAX,
    AvatarSessionSpec,
    AvatarSessionStatus,
    Binding,
    Deadlines,
    EndingSoon,
    PendingWebhook,
    SessionReason,
    Usage,
)
from avatar_crds.speech import SpeakTaskReport
from avatar_operator import conditions, ending_soon, speech_events
from avatar_operator.observe import PodFacts

CREATED, QUEUED, STARTING, RUNNING = Phase.CREATED, Phase.QUEUED, Phase.STARTING, Phase.RUNNING
ENDING, ENDED, FAILED, CANCELED = Phase.ENDING, Phase.ENDED, Phase.FAILED, Phase.CANCELED

LEGAL_TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    # Straight to starting when a pool slot is free at once: queued and started in one write.
    CREATED: frozenset({QUEUED, STARTING, CANCELED}),
    QUEUED: frozenset({STARTING, CANCELED, FAILED}),
    STARTING: frozenset({RUNNING, CANCELED, FAILED}),
    RUNNING: frozenset({ENDING, FAILED}),
    ENDING: frozenset({ENDED}),
    ENDED: frozenset(),
    FAILED: frozenset(),
    CANCELED: frozenset(),
}


class IllegalTransitionError(ValueError):
    pass


def check_transition(old: Phase, new: Phase) -> None:
    if new != old and new not in LEGAL_TRANSITIONS[old]:
        raise IllegalTransitionError(f"{old} -> {new} is not a legal session transition")


@dataclass(frozen=True)
class Limits:
    start_timeout: timedelta
    heartbeat_timeout: timedelta
    finalize_timeout: timedelta
    terminal_ttl: timedelta
    ending_soon: timedelta = timedelta(0)
    """How long before an idle or max-duration cutoff to warn of it; 0: never."""


WebhookIdentity = tuple[WebhookEvent, str, str]
"""Which event a pending webhook is: its key in the status (event, speak task), and for a
warning the cutoff it warns of, since a newer warning replaces an undelivered one."""


def webhook_identity(pending: PendingWebhook) -> WebhookIdentity:
    warned = pending.ending_soon.at.isoformat() if pending.ending_soon is not None else ""
    return (pending.event, pending.task, warned)


@dataclass(frozen=True)
class Facts:
    """Everything the machine may look at. `pod` is None only when its absence was confirmed.

    A session runs on a slot of a pool worker (`status.binding`) and shares that worker's pod:
    `pod` is the worker's, and the session never creates or deletes it."""

    spec: AvatarSessionSpec
    status: AvatarSessionStatus
    limits: Limits
    deleting: bool = False
    pod: PodFacts | None = None
    node_present: bool = True
    minutes_exhausted: bool = False
    webhooks_enabled: bool = False
    """The tenant has a webhook endpoint: transitions queue events for it in the status."""
    webhooks_done: frozenset[WebhookIdentity] = frozenset()
    """Pending events delivered (or given up on) since: they leave the status."""
    generation: int | None = None
    """The spec's `metadata.generation` these facts were read with: the status reports it."""
    binding: Binding | None = None
    """The free pool slot chosen for this queued session (`pool_assignment.assign`): it starts
    on it. None while no slot is free: it stays queued."""


class Stage(Enum):
    """When an action runs relative to writing the decided status."""

    BEFORE_STATUS = "before_status"
    """Work the new status already counts on (minutes charged)."""
    AFTER_STATUS = "after_status"
    """Once the status (and the webhooks it lists) is out: the session may then disappear."""


# Actions: what the handlers must do besides writing the returned status; each says when.
@dataclass(frozen=True)
class SyncGrant:
    """The session took or left a slot of this pool worker: rewrite the worker's grant (its Role
    lists the sessions it may read) and look at its pool again."""

    pool: str
    pod: str
    # After the status write: the worker is told of a session only once its binding is stored.
    stage: ClassVar[Stage] = Stage.AFTER_STATUS


@dataclass(frozen=True)
class RemoveFinalizer:
    stage: ClassVar[Stage] = Stage.AFTER_STATUS


@dataclass(frozen=True)
class DeleteSession:
    """The terminal session outlived its TTL."""

    stage: ClassVar[Stage] = Stage.AFTER_STATUS


@dataclass(frozen=True)
class ChargeTenant:
    """Add this session's billable seconds to its tenant's usage, once."""

    seconds: float
    # Before the status write: a crash in between charges on the retry (once, by
    # `charged_sessions`) instead of never.
    stage: ClassVar[Stage] = Stage.BEFORE_STATUS


Action = SyncGrant | RemoveFinalizer | DeleteSession | ChargeTenant


@dataclass(frozen=True)
class Decision:
    status: AvatarSessionStatus
    actions: tuple[Action, ...] = ()
    wake_at: datetime | None = None
    """When to look again even if nothing changes (a deadline); None: only on change."""
    event: tuple[str, str, str] | None = None
    """(type, reason, message) of the Kubernetes Event for a transition."""

    @property
    def phase(self) -> Phase:
        return self.status.phase or CREATED

    def actions_at(self, stage: Stage) -> tuple[Action, ...]:
        return tuple(action for action in self.actions if action.stage is stage)


@dataclass
class _Draft:
    """Mutable scratchpad for one step; frozen into a Decision at the end."""

    facts: Facts
    now: datetime
    status: AvatarSessionStatus
    actions: list[Action] = field(default_factory=list)
    wake: list[datetime] = field(default_factory=list)
    event: tuple[str, str, str] | None = None

    def move(self, phase: Phase, note: str, *, warning: bool = False, **changes: object) -> None:
        """Change phase; `note` becomes the Kubernetes Event's message."""
        self.status = self.status.model_copy(update={"phase": phase, **changes})
        kind = "Warning" if warning else "Normal"
        self.event = (kind, phase.value.capitalize(), note)

    def finish(self, phase: Phase, reason: SessionReason, message: str) -> None:
        billable = _billable(self.status)
        message = fit_message(message)
        self.move(
            phase,
            f"{reason}: {message}" if message else str(reason),
            warning=phase == FAILED,
            reason=reason,
            message=message or None,
            finished_at=self.now,
            usage=Usage(billable_seconds=billable),
        )
        self.notify(_TERMINAL_EVENTS[phase])
        self.actions.append(ChargeTenant(billable))
        binding = self.status.binding
        if binding is not None:
            self.actions.append(SyncGrant(binding.pool, binding.pod))  # frees the slot

    def notify(
        self,
        event: WebhookEvent,
        *,
        speak: SpeakTaskReport | None = None,
        warned: EndingSoon | None = None,
    ) -> None:
        """Queue the tenant's webhook for what just happened, in the status written with it;
        the handlers deliver what the status lists. It replaces an undelivered one of the same
        key (only a warning can have one: of a cutoff that has moved since)."""
        if not self.facts.webhooks_enabled:
            return
        phase = self.status.phase or CREATED
        pending = PendingWebhook(
            event=event,
            task=speak.id if speak is not None else "",
            phase=phase,
            occurred_at=self.now,
            speak=speak,
            ending_soon=warned,
        )
        key = (event, pending.task)
        kept = [p for p in self.status.pending_webhooks if (p.event, p.task) != key]
        queued = _within_bound([*kept, pending])
        self.status = self.status.model_copy(update={"pending_webhooks": queued})

    def decision(self) -> Decision:
        future = [moment for moment in self.wake if moment is not None]
        return Decision(
            status=self.status,
            actions=tuple(self.actions),
            wake_at=min(future) if future else None,
            event=self.event,
        )


_SPEAK_EVENTS = frozenset({WebhookEvent.SPEAK_STARTED, WebhookEvent.SPEAK_FINISHED})


def _within_bound(pending: list[PendingWebhook]) -> list[PendingWebhook]:
    """At most PENDING_WEBHOOKS_MAX, or the CRD refuses the whole status write and the session
    can never move on. Only speak events can pile up (an endpoint down while many short tasks
    are spoken): the oldest of those are let go first."""
    excess = len(pending) - PENDING_WEBHOOKS_MAX
    kept: list[PendingWebhook] = []
    for entry in pending:
        if excess > 0 and entry.event in _SPEAK_EVENTS:
            excess -= 1
            continue
        kept.append(entry)
    return kept


_TERMINAL_EVENTS = {
    ENDED: WebhookEvent.ENDED,
    FAILED: WebhookEvent.FAILED,
    CANCELED: WebhookEvent.ENDED,
}


def step(phase: Phase | None, facts: Facts, now: datetime) -> Decision:
    current = phase or CREATED
    done = facts.webhooks_done
    pending = [w for w in facts.status.pending_webhooks if webhook_identity(w) not in done]
    status = facts.status.model_copy(update={"phase": current, "pending_webhooks": pending})
    draft = _Draft(facts=facts, now=now, status=status)
    if current in _SPEAKING_PHASES:
        _announce_speech(draft)
    _STEPS[current](draft)
    check_transition(current, draft.status.phase or CREATED)
    _observe(draft)
    return draft.decision()


def _observe(d: _Draft) -> None:
    """Conditions and observedGeneration follow from the status just decided, in the same
    write: they cost no API call of their own, and are unchanged (no write) when it is."""
    observed = conditions.observe(d.status)
    generation = d.facts.generation
    if generation is None:  # not read from the API server (a test): keep what was there
        generation = d.status.observed_generation
    merged = conditions.merge(d.status.conditions, observed, now=d.now, generation=generation)
    update = {"conditions": merged, "observed_generation": generation}
    d.status = d.status.model_copy(update=update)


_SPEAKING_PHASES = frozenset({STARTING, RUNNING, ENDING})
"""Where a worker may report speech (an ending one reports the task it cut)."""


def _announce_speech(d: _Draft) -> None:
    """Queue speak.started / speak.finished for the worker's new speech reports, once each."""
    reports = d.status.worker.speech if d.status.worker is not None else []
    decided = speech_events.announce(reports, d.status.announced_speech)
    if decided.announced != d.status.announced_speech:
        d.status = d.status.model_copy(update={"announced_speech": decided.announced})
    for event, report in decided.events:
        d.notify(event, speak=report)


def _created(d: _Draft) -> None:
    if _cancel_requested(d.facts):
        d.finish(CANCELED, CancelReason.USER_CANCELED, "canceled before it was queued")
        return
    d.move(QUEUED, "waiting for a free worker slot", queued_at=d.now)
    d.notify(WebhookEvent.QUEUED)
    if d.facts.binding is not None:
        _queued(d)  # a pool slot is free already


def _queued(d: _Draft) -> None:
    if _cancel_requested(d.facts):
        d.finish(CANCELED, CancelReason.USER_CANCELED, "canceled while queued")
        return
    binding = d.facts.binding
    if binding is None:
        return  # no free slot yet: the pool grows, and the next admission pass binds it
    start_by = d.now + d.facts.limits.start_timeout
    # One conditional write takes the slot; the worker learns of it from its grant.
    d.move(
        STARTING,
        f"bound to worker {binding.pod}, slot {binding.slot}",
        starting_at=d.now,
        deadlines=Deadlines(start_by=start_by),
        pod_name=binding.pod,
        binding=binding,
    )
    d.actions.append(SyncGrant(binding.pool, binding.pod))
    d.notify(WebhookEvent.STARTED)
    d.wake.append(start_by)


def _starting(d: _Draft) -> None:
    facts, status = d.facts, d.status
    if _cancel_requested(facts):
        d.finish(CANCELED, CancelReason.USER_CANCELED, "canceled before the first frame")
        return
    if _worker_broke(d):
        return
    if status.worker is not None and status.worker.first_frame_at is not None:
        deadlines = Deadlines(
            start_by=_deadline(status).start_by,
            max_duration_at=d.now + timedelta(seconds=facts.spec.max_duration_seconds),
        )
        d.move(RUNNING, "first frame published", running_at=d.now, deadlines=deadlines)
        d.status = d.status.model_copy(update={"deadlines": _with_idle(d.status, facts.spec)})
        d.notify(WebhookEvent.FIRST_FRAME)
        _warn_of_cutoff(d)
        _arm_running_timers(d)
        return
    start_by = _deadline(status).start_by
    if start_by is not None and d.now >= start_by:
        message = f"no first frame in time from worker {status.pod_name}"
        d.finish(FAILED, FailureReason.START_TIMEOUT, message)
        return
    if start_by is not None:
        d.wake.append(start_by)


def _running(d: _Draft) -> None:
    facts, status = d.facts, d.status
    if _worker_broke(d):
        return
    heartbeat = (status.worker.heartbeat_at if status.worker else None) or status.running_at
    if heartbeat is not None and d.now >= heartbeat + facts.limits.heartbeat_timeout:
        d.finish(FAILED, FailureReason.WORKER_LOST, f"no heartbeat since {heartbeat.isoformat()}")
        return
    deadlines = _with_idle(status, facts.spec)
    usage = Usage(billable_seconds=_billable(status))
    if deadlines != status.deadlines or usage != status.usage:
        d.status = status.model_copy(update={"deadlines": deadlines, "usage": usage})
    reason = _end_reason(facts, deadlines, d.now)
    if reason is not None:
        # The worker leaves the room on seeing `ending`; its pod stays for the next session.
        d.move(ENDING, f"{reason}: the worker leaves the room", reason=reason, ending_at=d.now)
        d.wake.append(d.now + facts.limits.finalize_timeout)
        return
    _warn_of_cutoff(d)
    _arm_running_timers(d)


def _ending(d: _Draft) -> None:
    """A session ends once its worker says it left the room (`status.worker.leftAt`), its worker
    is gone, or the finalize timeout has passed: then its slot is free again."""
    facts, status = d.facts, d.status
    reason = status.reason if isinstance(status.reason, EndReason) else EndReason.USER_ENDED
    left = status.worker is not None and status.worker.left_at is not None
    if left or facts.pod is None or facts.pod.finished:
        d.finish(ENDED, reason, "")
        return
    give_up_at = (status.ending_at or d.now) + facts.limits.finalize_timeout
    if d.now >= give_up_at:
        d.finish(ENDED, reason, f"worker {facts.pod.name} did not confirm leaving the room")
    else:
        d.wake.append(give_up_at)


def _terminal(d: _Draft) -> None:
    facts, status = d.facts, d.status
    finished = status.finished_at or d.now
    if status.finished_at is None:  # recorded by an older operator, or by hand
        d.status = status.model_copy(update={"finished_at": finished})
    # A session's last events go out before it does (within the finalize timeout): its status
    # is what brings them back after a restart.
    delivering = bool(d.status.pending_webhooks)
    # The worker's pod is the pool's, not the session's: nothing to delete but the session.
    if facts.deleting:
        force_at = finished + facts.limits.finalize_timeout
        if not delivering or d.now >= force_at:
            d.actions.append(RemoveFinalizer())
        else:
            d.wake.append(force_at)
        return
    _expire(d, finished, delivering)


def _expire(d: _Draft, finished: datetime, delivering: bool) -> None:
    expires = finished + d.facts.limits.terminal_ttl
    if d.now < expires:
        d.wake.append(expires)
    elif not delivering:  # else the end of the delivery brings the session back here
        d.actions.append(DeleteSession())


_STEPS = {
    CREATED: _created,
    QUEUED: _queued,
    STARTING: _starting,
    RUNNING: _running,
    ENDING: _ending,
    ENDED: _terminal,
    FAILED: _terminal,
    CANCELED: _terminal,
}


def _cancel_requested(facts: Facts) -> bool:
    return facts.deleting or facts.spec.end_requested_at is not None


def _worker_broke(d: _Draft) -> bool:
    """Fail the session if its worker's node or pod is gone, the pod failed, or the worker gave
    up. A pool worker serves several sessions: whatever took it, each of them lost it."""
    facts, worker = d.facts, d.status.worker
    pod = facts.pod
    if worker is not None and worker.failure is not None:
        d.finish(FAILED, worker.failure.reason, worker.failure.message)
    elif pod is not None and not facts.node_present:
        d.finish(FAILED, FailureReason.NODE_LOST, f"node {pod.node_name} is gone")
    elif pod is None or pod.deleting:
        name = pod.name if pod is not None else d.status.pod_name
        d.finish(FAILED, FailureReason.WORKER_LOST, f"worker {name} is gone")
    elif pod.finished:
        detail = pod.exit_message or f"pod {pod.phase.lower()}"
        d.finish(FAILED, FailureReason.WORKER_LOST, f"worker {pod.name} exited: {detail}")
    elif worker is not None and worker.left_at is not None:
        # Its worker left the room (the room closed on it) while nobody asked it to.
        d.finish(FAILED, FailureReason.WORKER_LOST, f"worker {pod.name} left the room")
    else:
        return False
    return True


def _end_reason(facts: Facts, deadlines: Deadlines, now: datetime) -> EndReason | None:
    if facts.deleting or facts.spec.end_requested_at is not None:
        return EndReason.USER_ENDED
    if deadlines.max_duration_at is not None and now >= deadlines.max_duration_at:
        return EndReason.MAX_DURATION_REACHED
    if deadlines.idle_at is not None and now >= deadlines.idle_at:
        return EndReason.IDLE_TIMEOUT
    if facts.minutes_exhausted:
        return EndReason.MINUTES_EXHAUSTED
    return None


def _warn_of_cutoff(d: _Draft) -> None:
    """`status.endingSoon` and its webhook, once per cutoff warned of (`ending_soon.py`)."""
    lead = d.facts.limits.ending_soon
    decided = ending_soon.warning(d.facts.spec, _deadline(d.status), d.now, lead)
    if decided.ending_soon != d.status.ending_soon:
        d.status = d.status.model_copy(update={"ending_soon": decided.ending_soon})
        if decided.ending_soon is not None:
            d.notify(WebhookEvent.ENDING_SOON, warned=decided.ending_soon)
    if decided.look_again_at is not None:
        d.wake.append(decided.look_again_at)


def _arm_running_timers(d: _Draft) -> None:
    deadlines = _deadline(d.status)
    heartbeat = (d.status.worker.heartbeat_at if d.status.worker else None) or d.status.running_at
    d.wake += [m for m in (deadlines.max_duration_at, deadlines.idle_at) if m is not None]
    if heartbeat is not None:
        d.wake.append(heartbeat + d.facts.limits.heartbeat_timeout)


def _with_idle(status: AvatarSessionStatus, spec: AvatarSessionSpec) -> Deadlines:
    """The idle deadline moves with the last audio the worker heard and the last keep-alive."""
    deadlines = _deadline(status)
    if spec.idle_timeout_seconds is None:
        return deadlines.model_copy(update={"idle_at": None})
    worker = status.worker
    activity = [
        status.running_at,
        worker.last_audio_at if worker else None,
        spec.keep_alive_at,
    ]
    known = [moment for moment in activity if moment is not None]
    if not known:
        return deadlines
    latest = max(known)
    idle_at = latest + timedelta(seconds=spec.idle_timeout_seconds)
    return deadlines.model_copy(update={"idle_at": idle_at})


def _deadline(status: AvatarSessionStatus) -> Deadlines:
    return status.deadlines or Deadlines()


def _billable(status: AvatarSessionStatus) -> float:
    return status.worker.billable_seconds if status.worker else 0.0
