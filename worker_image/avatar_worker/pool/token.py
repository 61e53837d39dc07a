"""A pool slot's room token: its session's token Secret (`<session>-token`, key `token`: the
name the grant allows, from the session's name), read through the API with the worker's own
account, where a per-session pod has it mounted.

Nothing from the Secret's reply goes into an error or a log: a refusal is reported by its
status code only.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from avatar_crds import contract
from avatar_crds.enums import FailureReason
from avatar_crds.token_secret import foreign_token_secret
from avatar_worker.errors import WorkerError
from avatar_worker.transport.livekit import checked_token


class SecretToken:
    """Reads the token on each call (blocking; the Worker calls it from a thread)."""

    def __init__(
        self, api_client: Any, namespace: str, session_name: str, session_uid: str | None
    ) -> None:
        from kubernetes import client as k8s

        self._api = api_client
        self._core = k8s.CoreV1Api(api_client)
        self._namespace = namespace
        self._session = session_name
        self._uid = session_uid
        self._name = contract.token_secret_name(session_name)
        self._key = contract.TOKEN_SECRET_KEY

    def __call__(self) -> str:
        from kubernetes.client.exceptions import ApiException

        where = f"in Secret {self._name}"
        try:
            secret = self._core.read_namespaced_secret(self._name, self._namespace)
        except ApiException as exc:
            raise WorkerError(
                FailureReason.TRANSPORT_AUTH_FAILED,
                f"cannot read the room token (Secret {self._name}): the API server"
                f" answered {exc.status} {exc.reason}",
            ) from None
        except Exception as exc:  # the API server not reached: no answer to quote
            raise WorkerError(
                FailureReason.TRANSPORT_AUTH_FAILED,
                f"cannot read the room token (Secret {self._name}): {type(exc).__name__}",
            ) from None
        # A Secret of that name someone else made, or another session's awaiting garbage
        # collection, is not this session's token (the operator checks the same for pods).
        metadata = self._api.sanitize_for_serialization(secret.metadata)
        foreign = foreign_token_secret(self._session, self._uid, metadata)
        if foreign is not None:
            raise WorkerError(FailureReason.TRANSPORT_AUTH_FAILED, foreign)
        encoded = (secret.data or {}).get(self._key)
        if encoded is None:
            raise WorkerError(
                FailureReason.TRANSPORT_AUTH_FAILED,
                f"Secret {self._name} has no key {self._key}",
            )
        try:
            text = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise WorkerError(
                FailureReason.TRANSPORT_AUTH_FAILED, f"the room token {where} is not valid text"
            ) from None
        return checked_token(text, where)
