"""WorkerStandIn: plays the worker's part in operator tests.

kwok pods run no process, so nothing would ever report a first frame or a heartbeat. This
stand-in patches `status.worker` through the status subresource with exactly the fields and
the merge-patch the real worker (avatar_worker.reporting) sends. It is a named stand-in,
not a mock of anything that could run here: the worker itself is tested against LiveKit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s

from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.session import WorkerFailure, WorkerStatus
from avatar_crds.speech import SpeakTaskReport


class WorkerStandIn:
    def __init__(self, api_client: k8s.ApiClient, namespace: str, session: str) -> None:
        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.session = session
        self.state = WorkerStatus()

    def _send(self, **changes: Any) -> None:
        self.state = self.state.model_copy(update=changes)
        body = {"status": {"worker": self.state.to_k8s()}}
        self.api.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, AVATAR_SESSION.plural, self.session, body
        )

    def first_frame(self) -> None:
        now = datetime.now(UTC)
        self._send(first_frame_at=now, heartbeat_at=now, frames=1)

    def heartbeat(self, frames: int = 25, billable_seconds: float = 1.0) -> None:
        self._send(heartbeat_at=datetime.now(UTC), frames=frames, billable_seconds=billable_seconds)

    def heard_audio(self) -> None:
        now = datetime.now(UTC)
        self._send(last_audio_at=now, heartbeat_at=now)

    def speech(self, *reports: SpeakTaskReport) -> None:
        """How far each speak task got, as the worker lists them (the whole list each time)."""
        self._send(speech=list(reports), heartbeat_at=datetime.now(UTC))

    def left(self) -> None:
        """A pool worker has left the room and freed the session's slot."""
        now = datetime.now(UTC)
        self._send(left_at=now, heartbeat_at=now)

    def give_up(self, reason: str, message: str) -> None:
        failure = WorkerFailure.model_validate({"reason": reason, "message": message})
        self._send(failure=failure, heartbeat_at=datetime.now(UTC))
