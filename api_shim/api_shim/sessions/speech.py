"""What the speech endpoints do (#23): append a speak task to the session's `spec.speech`, read
one back with the worker's report, interrupt. The writes are conditional on the version read,
so concurrent speaks never lose a task or reuse a seq; the worker does the speaking. Routes
(routes/speech.py) and the compatibility layers only translate to these calls."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from api_shim.auth import Principal
from api_shim.errors import ApiError, ErrorType, not_found
from api_shim.kube import Kube, KubeConflictError
from api_shim.locks import KeyedLocks
from api_shim.sessions import speech_mapping
from api_shim.sessions.service import (
    SessionService,
    finished_or_ending,
    session_not_found,
    utc_now,
)
from api_shim.sessions.speech_schemas import InterruptResult, SpeakRequest, SpeakTaskView
from api_shim.voices import check_voice
from avatar_crds import phases
from avatar_crds.ids import new_public_id
from avatar_crds.session import AvatarSession
from avatar_crds.speech import SPEAK_TASK_PREFIX
from avatar_crds.voices import VoiceCatalogue

log = structlog.get_logger("api_shim.speech")

# Conditional writes lost to another write in between (a concurrent speak, a worker heartbeat
# moving the resourceVersion) before giving up with 409 `concurrent_update`.
WRITE_ATTEMPTS = 5
# A sentence takes a few seconds to say: by then the queue has room again.
QUEUE_FULL_RETRY_AFTER_SECONDS = 2


class SpeechService:
    def __init__(
        self,
        kube: Kube,
        sessions: SessionService,
        voices: VoiceCatalogue,
        *,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._kube = kube
        self._sessions = sessions  # the tenant's session, or 404
        self._voices = voices
        self._now = now
        # One write at a time per session in this process, so that concurrent speaks queue
        # here instead of failing each other's conditional writes; what other replicas and the
        # worker's status writes change meanwhile is retried (WRITE_ATTEMPTS).
        self._writes = KeyedLocks()

    async def speak(
        self, principal: Principal, session_id: str, request: SpeakRequest
    ) -> SpeakTaskView:
        """Queue `request.text` (after every earlier task, or, with `interrupt`, in place of
        them). Refused: 400 for a voice the installation lacks, 409 once the session is ending
        or finished, 429 `speech_queue_full`."""
        check_voice(request.voice, self._voices)
        task_id = new_public_id(SPEAK_TASK_PREFIX)
        async with self._writes.hold(session_id):
            for _ in range(WRITE_ATTEMPTS):
                session = await self._active(principal, session_id)
                write = speech_mapping.speak_write(
                    session,
                    request,
                    task_id=task_id,
                    now=self._now(),
                    retry_after=QUEUE_FULL_RETRY_AFTER_SECONDS,
                )
                updated = await self._try_patch(session_id, session, write.patch)
                if updated is not None:
                    log.info("speak_queued", task_id=task_id, seq=write.task.seq)
                    return speech_mapping.to_task_view(updated, write.task)
        raise KubeConflictError("speak: the session kept changing")

    async def get_task(self, principal: Principal, session_id: str, task_id: str) -> SpeakTaskView:
        """404 `speak_task_not_found` for an id the session does not hold: never one of its
        tasks, or a finished one dropped to make room for newer ones."""
        session = await self._sessions.owned(principal, session_id)
        task = speech_mapping.find_task(session, task_id)
        if task is None:
            raise not_found(
                "speak_task_not_found",
                f"Session {session_id} has no speak task {task_id}.",
                param="task_id",
            )
        return speech_mapping.to_task_view(session, task)

    async def interrupt(self, principal: Principal, session_id: str) -> InterruptResult:
        """Cut what is being said and clear what is queued; safe to repeat (a second interrupt
        finds nothing left and writes nothing)."""
        async with self._writes.hold(session_id):
            for _ in range(WRITE_ATTEMPTS):
                session = await self._active(principal, session_id)
                write = speech_mapping.interrupt_write(session)
                if write.patch is None:
                    return write.result
                if await self._try_patch(session_id, session, write.patch) is not None:
                    log.info("speech_interrupted", tasks=len(write.result.interrupted_task_ids))
                    return write.result
        raise KubeConflictError("interrupt: the session kept changing")

    async def _active(self, principal: Principal, session_id: str) -> AvatarSession:
        """The tenant's session as the API server has it now, if it may still speak: one that
        has not started yet may (it speaks once its worker joins)."""
        session = await self._sessions.owned(principal, session_id)
        if finished_or_ending(session):
            raise ApiError(
                ErrorType.CONFLICT,
                "session_not_active",
                f"Session {session_id} is {phases.phase_of(session)!s} or ending; it says"
                " nothing more.",
            )
        return session

    async def _try_patch(
        self, session_id: str, session: AvatarSession, patch: dict[str, Any]
    ) -> AvatarSession | None:
        """The session after the conditional patch; None when it changed since it was read."""
        try:
            updated = await self._kube.patch_session(session.metadata.name or "", patch)
        except KubeConflictError:
            log.info("speech_write_conflict_retrying")
            return None
        if updated is None:
            raise session_not_found(session_id)
        return updated
