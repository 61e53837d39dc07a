"""Where the worker learns what to do: its environment (set by the operator on the pod, names in
`avatar_crds.contract`), its AvatarSession and Avatar (read from the API server, or for local
runs and tests from JSON files), the token file and the avatar image store; a pool worker's
grant, pod name and slots (`PoolConfig`)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from pydantic import ValidationError

from avatar_crds import contract
from avatar_crds.addresses import AddressAllowList
from avatar_crds.avatar import Avatar, AvatarSpec
from avatar_crds.capabilities import SERVED_WITHOUT_WEIGHTS, parse_served_qualities
from avatar_crds.enums import FailureReason, Quality
from avatar_crds.kinds import AVATAR, AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.session import (
    MAX_SLOTS_PER_WORKER,
    AvatarSession,
    AvatarSessionSpec,
    AvatarSessionStatus,
)
from avatar_worker.errors import WorkerError
from avatar_worker.session_watch import SessionWatch
from avatar_worker.tts.settings import TtsSettings


@dataclass(frozen=True)
class WorkerConfig:
    session_name: str | None = None
    namespace: str | None = None
    token_file: str = contract.token_file()
    avatar_store: str = contract.AVATAR_STORE_DIR
    session_file: str | None = None  # local runs/tests: the AvatarSession as JSON
    avatar_file: str | None = None  # local runs/tests: the Avatar as JSON
    status_file: str | None = None  # local runs/tests: JSON lines of status.worker ("-": stdout)
    log_level: str = "INFO"
    heartbeat_s: float = float(contract.WORKER_HEARTBEAT_SECONDS)
    synthetic_after_s: float = 10.0
    join_deadline_s: float = 30.0
    rejoin_deadline_s: float = 60.0
    drain_deadline_s: float = 20.0
    # Where the room may be besides public addresses (the platform's own LiveKit).
    transport_allow: AddressAllowList = field(default_factory=AddressAllowList)
    # The TTS engines speak tasks may use (the OpenAI-compatible server, its voices).
    tts: TtsSettings = field(default_factory=TtsSettings)

    @property
    def uses_kubernetes(self) -> bool:
        return self.session_file is None

    @classmethod
    def from_env(
        cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> WorkerConfig:
        env = os.environ if environ is None else environ
        parser = argparse.ArgumentParser(
            prog="python -m avatar_worker",
            description="Facecast worker: one avatar session in one room.",
        )
        parser.add_argument("--session-file", help="AvatarSession JSON instead of the API server")
        parser.add_argument("--avatar-file", help="Avatar JSON instead of the API server")
        parser.add_argument(
            "--status-file", help="append status.worker reports here as JSON lines ('-': stdout)"
        )
        parser.add_argument("--token-file", help=f"overrides ${contract.ENV_TOKEN_FILE}")
        _add_session_arguments(parser, env)
        args = parser.parse_args(list(argv) if argv is not None else None)
        return cls(
            session_name=env.get(contract.ENV_SESSION_NAME) or None,
            token_file=args.token_file or env.get(contract.ENV_TOKEN_FILE) or contract.token_file(),
            session_file=args.session_file,
            avatar_file=args.avatar_file,
            status_file=args.status_file,
            **_session_settings(parser, args, env),
        )


def _add_session_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """What serving a session takes, alone in its pod or in a pool slot."""
    parser.add_argument("--avatar-store", help=f"overrides ${contract.ENV_AVATAR_STORE}")
    parser.add_argument("--log-level", default=env.get("FACECAST_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--join-deadline-seconds",
        type=float,
        default=WorkerConfig.join_deadline_s,
        help="give up joining an unreachable room after this long (room_unreachable)",
    )
    parser.add_argument(
        "--drain-deadline-seconds",
        type=float,
        default=WorkerConfig.drain_deadline_s,
        help="on SIGTERM, wait at most this long for the current segment to finish",
    )
    parser.add_argument(
        "--transport-allowed-hosts",
        default=env.get(contract.ENV_TRANSPORT_ALLOWED_HOSTS, ""),
        help="host names the room may be on besides public ones (comma-separated)",
    )
    parser.add_argument(
        "--transport-allowed-cidrs",
        default=env.get(contract.ENV_TRANSPORT_ALLOWED_CIDRS, ""),
        help="non-public address ranges the room may be in (comma-separated CIDRs)",
    )


def _session_settings(
    parser: argparse.ArgumentParser, args: argparse.Namespace, env: Mapping[str, str]
) -> dict[str, Any]:
    """The WorkerConfig fields `_add_session_arguments` and the environment give."""
    try:
        allow = AddressAllowList.parse(args.transport_allowed_hosts, args.transport_allowed_cidrs)
    except ValueError as error:
        parser.error(f"{contract.ENV_TRANSPORT_ALLOWED_CIDRS}: {error}")
    try:
        tts = TtsSettings.from_env(env)
    except ValueError as error:
        parser.error(str(error))
    return {
        "namespace": env.get(contract.ENV_SESSION_NAMESPACE) or None,
        "avatar_store": args.avatar_store
        or env.get(contract.ENV_AVATAR_STORE)
        or contract.AVATAR_STORE_DIR,
        "log_level": args.log_level,
        "join_deadline_s": args.join_deadline_seconds,
        "drain_deadline_s": args.drain_deadline_seconds,
        "transport_allow": allow,
        "tts": tts,
    }


@dataclass(frozen=True)
class PoolConfig:
    """A pool worker (`python -m avatar_worker pool`): which grant it watches, as which pod,
    how many slots it has, the tiers it loads before it says ready; `worker` is what every
    slot's session is served with."""

    namespace: str
    pod_name: str
    grant: str
    slots: int
    worker: WorkerConfig
    pool: str | None = None
    qualities: frozenset[Quality] = SERVED_WITHOUT_WEIGHTS
    ready_file: str = contract.WORKER_READY_FILE
    grant_settle_s: float = 5.0
    """How long a newly granted session may still be refused: the API server's authorizer
    learns of a Role's change a moment after the watch brings it."""

    @classmethod
    def from_env(
        cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> PoolConfig:
        env = os.environ if environ is None else environ
        parser = argparse.ArgumentParser(
            prog="python -m avatar_worker pool",
            description="Facecast pool worker: the sessions its grant names, one slot each.",
        )
        parser.add_argument(
            "--ready-file",
            default=contract.WORKER_READY_FILE,
            help="written once the renderer is loaded, removed on shutdown (readiness probe)",
        )
        _add_session_arguments(parser, env)
        args = parser.parse_args(list(argv) if argv is not None else None)
        settings = _session_settings(parser, args, env)
        required = {
            name: env.get(name, "").strip()
            for name in (
                contract.ENV_SESSION_NAMESPACE,
                contract.ENV_POD_NAME,
                contract.ENV_WORKER_GRANT,
                contract.ENV_WORKER_SLOTS,
            )
        }
        missing = [name for name, value in required.items() if not value]
        if missing:
            parser.error(f"{', '.join(missing)} must be set")
        slots_text = required[contract.ENV_WORKER_SLOTS]
        if not slots_text.isdigit() or not 1 <= int(slots_text) <= MAX_SLOTS_PER_WORKER:
            parser.error(
                f"{contract.ENV_WORKER_SLOTS} must be a number from 1 to {MAX_SLOTS_PER_WORKER}"
            )
        try:
            qualities = parse_served_qualities(env.get(contract.ENV_SERVED_QUALITIES, ""))
        except ValueError as error:
            parser.error(f"{contract.ENV_SERVED_QUALITIES}: {error}")
        return cls(
            namespace=required[contract.ENV_SESSION_NAMESPACE],
            pod_name=required[contract.ENV_POD_NAME],
            grant=required[contract.ENV_WORKER_GRANT],
            slots=int(slots_text),
            worker=WorkerConfig(**settings),
            pool=env.get(contract.ENV_POOL_NAME) or None,
            qualities=qualities,
            ready_file=args.ready_file,
        )


class SessionSource(Protocol):
    """The worker's view of its own resources."""

    def session(self) -> AvatarSession: ...

    def avatar(self, name: str) -> AvatarSpec: ...

    def current_status(self) -> AvatarSessionStatus | None:
        """The session's status now (read again at drain time), None if unknown."""
        ...

    def updates(self, after: AvatarSession) -> AsyncIterator[AvatarSession]:
        """Every later version of the session (new speech, an interrupt, a warning), until the
        caller stops iterating; a source that cannot follow the session yields nothing."""
        ...


async def no_updates() -> AsyncIterator[AvatarSession]:
    """The updates of a source that reads its session once."""
    nothing: tuple[AvatarSession, ...] = ()
    for session in nothing:
        yield session


def _read_json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def parse_session(data: Mapping[str, Any]) -> AvatarSession:
    """A whole AvatarSession resource, or just its spec."""
    if "spec" in data:
        return AvatarSession.model_validate(data)
    return AvatarSession(spec=AvatarSessionSpec.model_validate(data))


def parse_avatar(data: Mapping[str, Any]) -> AvatarSpec:
    """A whole Avatar resource, or just its spec."""
    if "spec" in data:
        return Avatar.model_validate(data).spec
    return AvatarSpec.model_validate(data)


class FileSessionSource:
    def __init__(self, session_file: str, avatar_file: str | None) -> None:
        self._session_file = session_file
        self._avatar_file = avatar_file

    def session(self) -> AvatarSession:
        return parse_session(_read_json(self._session_file))

    def avatar(self, name: str) -> AvatarSpec:
        if self._avatar_file is None:
            raise WorkerError(FailureReason.AVATAR_NOT_FOUND, f"no avatar file given for {name}")
        try:
            return parse_avatar(_read_json(self._avatar_file))
        except FileNotFoundError as exc:
            raise WorkerError(FailureReason.AVATAR_NOT_FOUND, f"avatar {name} not found") from exc
        except (ValueError, ValidationError) as exc:
            raise WorkerError(
                FailureReason.AVATAR_UNREADABLE, f"avatar {name} is not a valid Avatar"
            ) from exc

    def current_status(self) -> AvatarSessionStatus | None:
        try:
            return self.session().status
        except (OSError, ValueError, ValidationError):
            return None

    def updates(self, after: AvatarSession) -> AsyncIterator[AvatarSession]:
        return no_updates()


class KubernetesSessionSource:
    def __init__(self, api_client: Any, namespace: str, name: str) -> None:
        from kubernetes import client as k8s

        self._api = k8s.CustomObjectsApi(api_client)
        self._namespace = namespace
        self._name = name
        self.watch = SessionWatch(api_client, namespace, name)

    def session(self) -> AvatarSession:
        raw = self._api.get_namespaced_custom_object(
            GROUP, VERSION, self._namespace, AVATAR_SESSION.plural, self._name
        )
        return AvatarSession.model_validate(raw)

    def avatar(self, name: str) -> AvatarSpec:
        from kubernetes.client.exceptions import ApiException

        try:
            raw = self._api.get_namespaced_custom_object(
                GROUP, VERSION, self._namespace, AVATAR.plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                raise WorkerError(
                    FailureReason.AVATAR_NOT_FOUND, f"avatar {name} not found"
                ) from exc
            if exc.status == 403:
                # A pool worker reads only what its grant names: not yet, or not any more.
                raise WorkerError(
                    FailureReason.AVATAR_UNREADABLE,
                    f"avatar {name} may not be read by this worker (403 Forbidden)",
                ) from None
            raise
        try:
            return Avatar.model_validate(raw).spec
        except ValidationError as exc:
            raise WorkerError(
                FailureReason.AVATAR_UNREADABLE, f"avatar {name} is not a valid Avatar"
            ) from exc

    def current_status(self) -> AvatarSessionStatus | None:
        try:
            return self.session().status
        except Exception:
            return None

    def updates(self, after: AvatarSession) -> AsyncIterator[AvatarSession]:
        return self.watch.follow(after)


def kubernetes_api_client(connections: int | None = None) -> Any:
    """In-cluster credentials (the pod's service account), else $KUBECONFIG for local runs;
    keeping up to `connections` open (a pool worker holds a watch per slot)."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    try:
        k8s_config.load_incluster_config()
        api = k8s.ApiClient()
    except k8s_config.ConfigException:
        api = k8s_config.new_client_from_config()
    if connections is not None and api.configuration.connection_pool_maxsize < connections:
        api.configuration.connection_pool_maxsize = connections
        api.rest_client = k8s.rest.RESTClientObject(api.configuration)
    return api


def image_path(uri: str, store: str) -> Path:
    """Where an Avatar's image lives: `file:///abs/path`, or a key relative to the store."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme:
        raise WorkerError(
            FailureReason.AVATAR_UNREADABLE,
            f"avatar image scheme {parsed.scheme!r} is not supported",
        )
    root = Path(store).resolve()
    path = (root / uri).resolve()
    if root != path and root not in path.parents:
        raise WorkerError(FailureReason.AVATAR_UNREADABLE, "avatar image key leaves the store")
    return path


def read_avatar_image(avatar: AvatarSpec, store: str) -> bytes:
    """The image bytes, checked against the sha256 recorded in the Avatar."""
    path = image_path(avatar.image.uri, store)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise WorkerError(
            FailureReason.AVATAR_UNREADABLE, "avatar image is missing from the store"
        ) from exc
    except OSError as exc:
        raise WorkerError(
            FailureReason.AVATAR_UNREADABLE,
            f"avatar image cannot be read: {exc.strerror or type(exc).__name__}",
        ) from exc
    if hashlib.sha256(data).hexdigest() != avatar.image.sha256:
        raise WorkerError(
            FailureReason.AVATAR_UNREADABLE, "avatar image does not match its recorded sha256"
        )
    return data
