"""What each session endpoint does, between the plan rules (policy), the resource mapping
(mapping) and the cluster (kube). Routes only translate HTTP to these calls."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from api_shim import idempotency, managed_rooms, policy
from api_shim.auth import Principal
from api_shim.avatars.service import AvatarService
from api_shim.errors import ApiError, ErrorType, internal_error, invalid_request, not_found
from api_shim.kube import (
    Kube,
    KubeConflictError,
    KubeInvalidError,
)
from api_shim.locks import KeyedLocks
from api_shim.schemas import Usage
from api_shim.sessions import mapping
from api_shim.sessions.index import Check, Counts, SessionIndex
from api_shim.sessions.runnable import check_runnable
from api_shim.sessions.schemas import (
    CreateSessionRequest,
    LiveKitTransportRequest,
    ManagedTransportRequest,
    ManagedTransportView,
    Session,
    SessionList,
)
from api_shim.sessions.viewer_schemas import ViewerToken
from api_shim.settings import Settings
from api_shim.voices import check_voice
from avatar_crds import contract, phases
from avatar_crds.capabilities import default_quality
from avatar_crds.enums import Phase
from avatar_crds.ids import (
    AVATAR_PREFIX,
    SESSION_PREFIX,
    new_public_id,
    to_public_id,
    to_resource_name,
)
from avatar_crds.session import AvatarSession
from avatar_crds.tenant import Plan

log = structlog.get_logger("api_shim.sessions")

# How often a replica polls a claim another replica holds: its create takes a few round trips,
# and polling one small object is simpler than a watch for a wait this rare.
CLAIM_POLL_SECONDS = (0.02, 0.05, 0.1, 0.2, 0.5)


def utc_now() -> datetime:
    return datetime.now(UTC)


def k8s_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, what the API server's date-time format expects."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_cursor(name: str) -> str:
    """The public id of the last session on a page: pages continue after it."""
    return to_public_id(name)


def decode_cursor(cursor: str) -> str:
    """The session name to continue after. Any `sess_<ULID>` is a position in the newest-first
    order (the session need not exist any more), so every cursor the OpenAPI pattern allows is
    valid; anything else is 400 `invalid_cursor`."""
    try:
        return to_resource_name(cursor, SESSION_PREFIX)
    except ValueError:
        raise invalid_request("invalid_cursor", "cursor is not valid.", "cursor") from None


@dataclass(frozen=True)
class Created:
    session: Session
    replayed: bool


class _ClaimLostError(Exception):
    """Our claim on an Idempotency-Key ran out and was taken over while we worked; what we
    made is undone, and the new holder's session is the answer."""


def _claim_polls() -> Iterator[float]:
    """CLAIM_POLL_SECONDS, then its last value for ever."""
    yield from CLAIM_POLL_SECONDS
    yield from itertools.repeat(CLAIM_POLL_SECONDS[-1])


def new_session_name() -> str:
    return to_resource_name(new_public_id(SESSION_PREFIX), SESSION_PREFIX)


class SessionService:
    def __init__(
        self,
        kube: Kube,
        index: SessionIndex,
        settings: Settings,
        avatars: AvatarService,
        *,
        now: Callable[[], datetime] = utc_now,
        managed: managed_rooms.ManagedRooms | None = None,
    ) -> None:
        self._kube = kube
        self._managed = managed  # the platform's LiveKit server, if it configured one
        self._index = index  # told of this process's own creates and deletes at once
        self._settings = settings
        self._transport_allow = settings.transport_allow_list()
        self.served_qualities = settings.served()
        self._voices = settings.voice_catalogue()
        self._now = now
        self._avatars = avatars  # makes the avatars of sessions that bring their image inline
        self._key_locks = KeyedLocks()

    # --- create --------------------------------------------------------------------------------

    async def create(
        self, principal: Principal, request: CreateSessionRequest, idempotency_key: str | None
    ) -> Created:
        if idempotency_key is None:
            made = await self._create_new(principal, request, new_session_name(), None)
            created = Created(mapping.to_public_session(await self._queued(made)), replayed=False)
        else:
            created = await self._create_with_key(principal, request, idempotency_key)
        return self._with_client_token(request, created)

    def _with_client_token(self, request: CreateSessionRequest, created: Created) -> Created:
        """A managed room's session with a fresh token for the viewer (a replay gets one too:
        the token is never stored, so the create response is the only place to get it)."""
        wanted, view = request.transport, created.session.transport
        if (
            self._managed is None
            or not isinstance(wanted, ManagedTransportRequest)
            or not isinstance(view, ManagedTransportView)
        ):
            return created
        grant = managed_rooms.client_grant(
            view.room_name,
            wanted.client_identity,
            can_publish=wanted.client_can_publish,
            ttl_seconds=self._managed.config.client_token_ttl_seconds,
        )
        view = view.model_copy(update={"client_token": self._managed.token(grant)})
        return Created(created.session.model_copy(update={"transport": view}), created.replayed)

    def _in_managed_room(
        self, request: CreateSessionRequest, name: str
    ) -> tuple[CreateSessionRequest, str]:
        """The request as an ordinary LiveKit session in a room of its own on the platform's
        server, with a worker token minted here; and that room's name."""
        wanted = request.transport
        if self._managed is None or not isinstance(wanted, ManagedTransportRequest):
            raise _managed_not_configured()
        room = managed_rooms.room_name(name)
        identity = managed_rooms.WORKER_IDENTITY
        livekit = LiveKitTransportRequest(
            type="livekit",
            url=self._managed.config.url,
            room_name=room,
            worker_token=self._managed.token(managed_rooms.worker_grant(room, identity)),
            worker_identity=identity,
            audio_source=wanted.audio_source,
            subscribe_to_identity=wanted.subscribe_to_identity,
            synthetic_audio_if_no_input=wanted.synthetic_audio_if_no_input,
        )
        return request.model_copy(update={"transport": livekit}), room

    async def _create_with_key(
        self, principal: Principal, request: CreateSessionRequest, idempotency_key: str
    ) -> Created:
        """Claim the key (idempotency.py) and make the session, or answer with the session
        made for whoever holds the claim."""
        key_hash = idempotency.key_hash(principal.tenant, idempotency_key)
        fingerprint = idempotency.fingerprint(request)
        # Concurrent retries with one key in this process wait here rather than poll the API
        # server; across replicas the API server arbitrates (idempotency.py).
        async with self._key_locks.hold(key_hash):
            while True:
                name = new_session_name()
                body = idempotency.claim_body(
                    tenant=principal.tenant,
                    key_hash=key_hash,
                    session_name=name,
                    fingerprint=fingerprint,
                    namespace=self._kube.namespace,
                    now=self._now(),
                )
                try:
                    claim = idempotency.Claim.of(await self._kube.create_lease(body))
                except KubeConflictError:
                    existing = await self._claimed_session(key_hash, fingerprint)
                    if existing is None:
                        continue  # the claim was released: claim it ourselves
                    log.info("idempotent_replay", session_id=existing.metadata.name)
                    return Created(mapping.to_public_session(existing), replayed=True)
                try:
                    created = await self._create_new(principal, request, name, claim)
                except _ClaimLostError:
                    continue
                except BaseException:
                    # Refused requests are not remembered. (Should the claim have been
                    # committed meanwhile, its resourceVersion moved and this does nothing.)
                    await asyncio.shield(self._release(claim))
                    raise
                return Created(mapping.to_public_session(await self._queued(created)), False)

    async def _queued(self, made: AvatarSession) -> AvatarSession:
        """The session as the operator first wrote it (`queued`, or further if it went on), if
        the watch reports that within `create_queue_wait_seconds`; else as made (`created`)."""
        seen = await self._index.past_created(
            made.metadata.name or "", self._settings.create_queue_wait_seconds
        )
        return made if seen is None else seen

    async def _claimed_session(self, key_hash: str, fingerprint: str) -> AvatarSession | None:
        """The session made for a claim someone else holds, once made; None when the claim
        is (or has been made) free."""
        name = idempotency.claim_name(key_hash)
        for delay in _claim_polls():
            raw = await self._kube.get_lease(name)
            if raw is None:
                return None
            claim = idempotency.Claim.of(raw)
            idempotency.check_replay(claim, fingerprint)
            if claim.committed:
                session = await self._kube.get_session(claim.session_name)
                if session is not None:
                    return session  # the claim's name is the tenant's: so is its session
                # The session was deleted; the garbage collector has not yet deleted its claim.
                await self._release(claim)
                return None
            if claim.expired(self._now()):
                log.warning("idempotency_claim_taken_over", session_id=claim.session_name)
                await self._release(claim)
                return None
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the polls never end")

    async def _release(self, claim: idempotency.Claim) -> None:
        """Delete this very claim; one that changed meanwhile is someone else's to handle."""
        with contextlib.suppress(KubeConflictError):
            await self._kube.delete_lease(
                claim.name, uid=claim.uid, resource_version=claim.resource_version
            )

    async def _create_new(
        self,
        principal: Principal,
        request: CreateSessionRequest,
        name: str,
        claim: idempotency.Claim | None,
        managed_room: str | None = None,
        viewer: managed_rooms.Viewer | None = None,
    ) -> AvatarSession:
        """Session `name`; with `claim`, the one its Idempotency-Key claim names; with
        `managed_room`, in that room of the platform's LiveKit server, for `viewer`."""
        if isinstance(request.transport, ManagedTransportRequest):
            viewer = managed_rooms.Viewer(
                request.transport.client_identity, request.transport.client_can_publish
            )
            request, managed_room = self._in_managed_room(request, name)
        if request.quality is None:
            quality = default_quality(self.served_qualities)
            request = request.model_copy(update={"quality": quality})
        plan = principal.plan
        policy.check_quality(plan, mapping.quality_of(request))
        check_runnable(request, self._transport_allow, self.served_qualities)
        check_voice(request.voice, self._voices)
        max_duration = policy.resolve_max_duration(
            plan,
            request.max_duration_seconds,
            explicit="max_duration_seconds" in request.model_fields_set,
        )
        policy.check_minutes(plan, principal.usage, utc_now())
        if request.avatar is not None:
            return await self._create_with_inline_avatar(
                principal, request, name, claim, managed_room, viewer
            )
        avatar_id = request.avatar_id or ""
        avatar = await self._avatars.find(to_resource_name(avatar_id, AVATAR_PREFIX))
        policy.check_avatar(avatar, tenant=principal.tenant, avatar_id=avatar_id)

        check = self._admission_check(plan)
        # Checked and reserved in one step, so that this replica never lets two concurrent
        # requests both take the last slot; the index only lists the sessions when it is not
        # in sync. (Across replicas the operator's admission control holds the line.)
        admission = self._index.admit(
            principal.tenant,
            name,
            check,
            lambda: self._kube.list_sessions(contract.MANAGED_SELECTOR),
        )
        labels, annotations = ({}, {}) if claim is None else claim.session_marks()
        if managed_room is not None and self._managed is not None:
            room_labels, room_annotations = managed_rooms.session_marks(
                self._managed.config.client_url, viewer or managed_rooms.Viewer()
            )
            labels, annotations = {**labels, **room_labels}, {**annotations, **room_annotations}
        async with admission:
            resource = mapping.build_session(
                request,
                name=name,
                namespace=self._kube.namespace,
                tenant=principal.tenant,
                max_duration_seconds=max_duration,
                extra_labels=labels,
                annotations=annotations,
            )
            if isinstance(request.transport, ManagedTransportRequest):
                raise internal_error()  # made a LiveKit room above
            token = request.transport.worker_token.get_secret_value()
            # Shielded: a client that hangs up mid-way must not leave a session without its
            # Secret (or its claim uncommitted) behind; it is made or rolled back regardless.
            created = await asyncio.shield(self._create_pair(resource, token, claim, managed_room))
        structlog.contextvars.bind_contextvars(session_id=name)
        log.info("session_created", quality=str(mapping.quality_of(request)))
        return created

    async def _create_with_inline_avatar(
        self,
        principal: Principal,
        request: CreateSessionRequest,
        name: str,
        claim: idempotency.Claim | None,
        managed_room: str | None,
        viewer: managed_rooms.Viewer | None,
    ) -> AvatarSession:
        """The image goes through the avatar pipeline (plan permitting) and becomes one of the
        tenant's avatars; the session is then created with its id. If the session cannot be
        made, the avatar is removed again."""
        if request.avatar is None:
            raise internal_error()
        await self._precheck_admission(principal)
        avatar_id = await self._avatars.create_inline(principal, request.avatar)
        resolved = request.model_copy(update={"avatar_id": avatar_id, "avatar": None})
        try:
            return await self._create_new(principal, resolved, name, claim, managed_room, viewer)
        except BaseException:
            try:
                await asyncio.shield(self._avatars.discard(avatar_id))
            except Exception:
                log.exception("inline_avatar_rollback_failed", avatar_id=avatar_id)
            raise

    def _admission_check(self, plan: Plan) -> Check:
        def check(counts: Counts) -> None:
            policy.check_concurrency(
                plan, counts.active, retry_after=self._settings.concurrency_retry_after_seconds
            )
            policy.check_capacity(
                counts.waiting,
                max_queued=self._settings.max_queued,
                retry_after=self._settings.at_capacity_retry_after_seconds,
            )

        return check

    async def _precheck_admission(self, principal: Principal) -> None:
        """The concurrency and capacity checks before an inline image is fetched and decoded
        (seconds of work and up to 128 MB) for a session that would be refused anyway. Only a
        check: the admission after the image takes the place."""
        counts = await self._index.counts_now(
            principal.tenant, lambda: self._kube.list_sessions(contract.MANAGED_SELECTOR)
        )
        self._admission_check(principal.plan)(counts)

    async def _create_pair(
        self,
        resource: AvatarSession,
        token: str,
        claim: idempotency.Claim | None,
        managed_room: str | None = None,
    ) -> AvatarSession:
        """The CR first (the Secret needs its uid as owner), then the Secret, then (with a
        claim) the commit that makes the session its claim's answer; if a step fails the CR
        is deleted again, so nothing is ever half-made. A managed room is made before all
        of them, and deleted again if the session cannot be made."""
        if managed_room is None:
            return await self._create_session_and_secret(resource, token, claim)
        await self._create_room(managed_room)
        try:
            return await self._create_session_and_secret(resource, token, claim)
        except BaseException:
            try:
                await self._delete_room(managed_room)
            except Exception:
                # Left for the sweep (sessions/managed.py), which deletes rooms without one.
                log.warning("managed_room_rollback_failed", room=managed_room)
            raise

    async def _create_room(self, room: str) -> None:
        if self._managed is None:
            raise internal_error()
        try:
            await self._managed.create_room(room)
        except Exception as error:
            log.warning("managed_room_create_failed", room=room, error=type(error).__name__)
            raise ApiError(
                ErrorType.SERVICE_UNAVAILABLE,
                "managed_room_unavailable",
                "The platform's LiveKit server did not create the room; retry shortly.",
                retry_after=self._settings.at_capacity_retry_after_seconds,
            ) from None

    async def _delete_room(self, room: str) -> None:
        if self._managed is not None:
            await self._managed.delete_room(room)

    async def _create_session_and_secret(
        self, resource: AvatarSession, token: str, claim: idempotency.Claim | None
    ) -> AvatarSession:
        created = await self._kube.create_session(mapping.session_body(resource))
        self._index.created(created)  # read-your-writes before the watch reports it
        name, uid = created.metadata.name or "", created.metadata.uid or ""
        secret = mapping.token_secret_body(
            session_name=name,
            session_uid=uid,
            namespace=self._kube.namespace,
            tenant=created.spec.tenant,
            token=token,
        )
        try:
            await self._kube.create_token_secret(secret)
            if claim is not None:
                await self._commit(claim, created)
        except BaseException:
            log.warning("session_create_failed_rolling_back", session_id=name)
            try:
                await self._delete(name)
            except Exception:
                # Left for the operator, which fails a session whose Secret never appears.
                log.exception("rollback_failed", session_id=name)
            raise
        return created

    async def _commit(self, claim: idempotency.Claim, session: AvatarSession) -> None:
        """Make `session` the owner of `claim` (and so the answer to its key), unless the
        claim is no longer ours."""
        try:
            committed = await self._kube.patch_lease(
                claim.name, idempotency.commit_patch(claim, session)
            )
        except KubeConflictError:
            committed = None
        if committed is None:
            log.warning("idempotency_claim_lost", session_id=session.metadata.name)
            raise _ClaimLostError()

    # --- read ----------------------------------------------------------------------------------

    async def get(self, principal: Principal, session_id: str) -> Session:
        return mapping.to_public_session(await self.owned(principal, session_id))

    async def list_sessions(
        self, principal: Principal, *, status: Phase | None, limit: int, cursor: str | None
    ) -> SessionList:
        """Newest first. The cursor is the last name returned: sessions created meanwhile sort
        before it and never shift later pages, so a walk sees each session at most once."""
        after = None if cursor is None else decode_cursor(cursor)
        sessions = await self._tenant_sessions(principal.tenant)
        matching = sorted(
            (
                s
                for s in sessions
                if (status is None or phases.phase_of(s) is status)
                and (after is None or (s.metadata.name or "") < after)
            ),
            key=lambda s: s.metadata.name or "",
            reverse=True,
        )
        page = matching[:limit]
        has_more = len(matching) > limit
        return SessionList(
            data=[mapping.to_public_session(s) for s in page],
            has_more=has_more,
            next_cursor=encode_cursor(page[-1].metadata.name or "") if has_more else None,
        )

    async def usage(self, principal: Principal) -> Usage:
        counts = self._index.counts(principal.tenant)
        if counts is None:
            active = policy.active_count(await self._tenant_sessions(principal.tenant))
        else:
            active = counts.active
        return policy.usage_snapshot(principal.plan, principal.usage, active, utc_now())

    async def _tenant_sessions(self, tenant: str) -> list[AvatarSession]:
        """From the watched index; while it is not in sync, from a LIST instead of waiting
        for it (see sessions/index.py)."""
        indexed = self._index.sessions(tenant)
        if indexed is not None:
            return indexed
        listed = await self._kube.list_sessions(contract.tenant_selector(tenant))
        return [session for session in listed if session.spec.tenant == tenant]

    # --- change --------------------------------------------------------------------------------

    async def end(self, principal: Principal, session_id: str) -> Session:
        """Sets spec.endRequestedAt once; ending an ending or finished session changes nothing."""
        session = await self.owned(principal, session_id)
        if finished_or_ending(session):
            return mapping.to_public_session(session)
        name = session.metadata.name or ""
        patch = {"spec": {"endRequestedAt": k8s_time(self._now())}}
        try:
            # No resourceVersion precondition: status heartbeats would make it fail all the time.
            updated = await self._kube.patch_session(name, patch)
        except KubeInvalidError:
            # The CRD keeps the first endRequestedAt: a concurrent end won, which is success.
            updated = await self._kube.get_session(name)
            if updated is None or updated.spec.end_requested_at is None:
                raise
        if updated is None:
            raise session_not_found(session_id)
        log.info("session_end_requested")
        return mapping.to_public_session(updated)

    async def keep_alive(self, principal: Principal, session_id: str) -> Session:
        session = await self.owned(principal, session_id)
        if finished_or_ending(session):
            raise ApiError(
                ErrorType.CONFLICT,
                "session_not_active",
                f"Session {session_id} is {phases.phase_of(session)!s}"
                " or ending; there is nothing to keep alive.",
            )
        patch = {"spec": {"keepAliveAt": k8s_time(self._now())}}
        updated = await self._kube.patch_session(session.metadata.name or "", patch)
        if updated is None:
            raise session_not_found(session_id)
        return mapping.to_public_session(updated)

    async def viewer_token(
        self, principal: Principal, session_id: str, identity: str | None
    ) -> ViewerToken:
        """A fresh, short-lived token for the viewer of a managed room's session, with the
        rights its creator asked for (subscribe-only unless `client_can_publish`). 400
        `session_not_managed` for a session in the customer's own room (its owner mints
        those), 409 `session_not_active` once it is ending or finished (its room goes)."""
        session = await self.owned(principal, session_id)
        public = mapping.to_public_session(session)
        view = public.transport
        if not isinstance(view, ManagedTransportView):
            raise invalid_request(
                "session_not_managed",
                f"Session {session_id} runs in your own LiveKit room: mint its viewers' tokens"
                " with your LiveKit API key.",
                "id",
            )
        if finished_or_ending(session):
            raise _not_active(session_id, session)
        if self._managed is None:
            raise _managed_not_configured()
        viewer = managed_rooms.viewer_of(session.metadata.annotations)
        ttl = self._managed.config.client_token_ttl_seconds
        grant = managed_rooms.client_grant(
            view.room_name,
            identity or viewer.identity,
            can_publish=viewer.can_publish,
            ttl_seconds=ttl,
        )
        return ViewerToken(
            session_id=public.id,
            url=view.url,
            room_name=view.room_name,
            identity=grant.identity,
            token=self._managed.token(grant),
            can_publish=grant.can_publish,
            expires_at=self._now() + timedelta(seconds=ttl),
        )

    async def cancel(self, principal: Principal, session_id: str) -> Session:
        """Deletes the resource; the operator's finalizer records `canceled` (before running)
        or ends the worker. The reply is the session as it was just before the delete."""
        session = await self.owned(principal, session_id)
        if phases.is_terminal(session) or phases.is_being_deleted(session):
            return mapping.to_public_session(session)
        await self._delete(session.metadata.name or "")
        log.info("session_cancel_requested")
        return mapping.to_public_session(session)

    async def _delete(self, name: str) -> None:
        await self._kube.delete_session(name)
        self._index.deleted(name)  # its slot is free for this process's next create

    async def owned(self, principal: Principal, session_id: str) -> AvatarSession:
        """The tenant's session, or 404 whether it is missing or someone else's."""
        try:
            name = to_resource_name(session_id, SESSION_PREFIX)
        except ValueError:
            raise session_not_found(session_id) from None
        structlog.contextvars.bind_contextvars(session_id=name)
        session = await self._kube.get_session(name)
        if session is None or session.spec.tenant != principal.tenant:
            raise session_not_found(session_id)
        return session


def finished_or_ending(session: AvatarSession) -> bool:
    return (
        phases.is_terminal(session)
        or phases.is_being_deleted(session)
        or session.spec.end_requested_at is not None
    )


def session_not_found(session_id: str) -> ApiError:
    return not_found("session_not_found", f"No session {session_id}.", param="id")


def _managed_not_configured() -> ApiError:
    return invalid_request(
        "managed_rooms_not_configured",
        "transport.type=managed needs a LiveKit server that the platform configures"
        " for Facecast, and this installation has none; use transport.type=livekit"
        " with your own room.",
        "transport.type",
    )


def _not_active(session_id: str, session: AvatarSession) -> ApiError:
    return ApiError(
        ErrorType.CONFLICT,
        "session_not_active",
        f"Session {session_id} is {phases.phase_of(session)!s} or ending; its room is closing.",
    )
