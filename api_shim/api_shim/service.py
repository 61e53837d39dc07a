"""What each endpoint does, between the plan rules (policy), the resource mapping (mapping) and
the cluster (kube). Routes only translate HTTP to these calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from api_shim import idempotency, mapping, policy
from api_shim.auth import Principal
from api_shim.avatars.service import AvatarService
from api_shim.errors import ApiError, ErrorType, internal_error, invalid_request, not_found
from api_shim.kube import SESSION_SELECTOR, Kube, KubeInvalidError, tenant_selector
from api_shim.locks import KeyedLocks
from api_shim.schemas import CreateSessionRequest, Session, SessionList, Usage
from api_shim.session_index import Counts
from api_shim.settings import Settings
from avatar_crds.enums import Phase
from avatar_crds.ids import (
    AVATAR_PREFIX,
    SESSION_PREFIX,
    new_public_id,
    to_public_id,
    to_resource_name,
)
from avatar_crds.session import AvatarSession

log = structlog.get_logger("api_shim.sessions")


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


class SessionService:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        *,
        now: Callable[[], datetime] = utc_now,
        avatars: AvatarService | None = None,
    ) -> None:
        self._kube = kube
        self._settings = settings
        self._now = now
        self._avatars = avatars  # makes the avatars of sessions that bring their image inline
        self._key_locks = KeyedLocks()

    # --- create --------------------------------------------------------------------------------

    async def create(
        self, principal: Principal, request: CreateSessionRequest, idempotency_key: str | None
    ) -> Created:
        if idempotency_key is None:
            return Created(await self._create_new(principal, request, {}, {}), replayed=False)
        key_hash = idempotency.key_hash(principal.tenant, idempotency_key)
        fingerprint = idempotency.fingerprint(request)
        # Concurrent retries with one key wait here, and the second one finds the first's result.
        async with self._key_locks.hold(key_hash):
            existing = await self._find_by_key_hash(principal.tenant, key_hash)
            if existing is not None:
                idempotency.check_replay(existing, fingerprint)
                log.info("idempotent_replay", session_id=existing.metadata.name)
                return Created(mapping.to_public_session(existing), replayed=True)
            labels = {idempotency.LABEL_KEY_HASH: key_hash}
            annotations = {idempotency.ANNOTATION_FINGERPRINT: fingerprint}
            session = await self._create_new(principal, request, labels, annotations)
            return Created(session, replayed=False)

    async def _find_by_key_hash(self, tenant: str, key_hash: str) -> AvatarSession | None:
        selector = f"{tenant_selector(tenant)},{idempotency.LABEL_KEY_HASH}={key_hash}"
        found = [s for s in await self._kube.list_sessions(selector) if s.spec.tenant == tenant]
        # Two replicas racing on one key could both create; the oldest is the answer for both.
        return min(found, key=lambda s: s.metadata.name or "", default=None)

    async def _create_new(
        self,
        principal: Principal,
        request: CreateSessionRequest,
        labels: dict[str, str],
        annotations: dict[str, str],
    ) -> Session:
        plan = principal.plan
        policy.check_quality(plan, request.quality)
        max_duration = policy.resolve_max_duration(
            plan,
            request.max_duration_seconds,
            explicit="max_duration_seconds" in request.model_fields_set,
        )
        policy.check_minutes(plan, principal.usage)
        if request.avatar is not None:
            return await self._create_with_inline_avatar(principal, request, labels, annotations)
        avatar_id = request.avatar_id or ""
        avatar = await self._kube.find_avatar(to_resource_name(avatar_id, AVATAR_PREFIX))
        policy.check_avatar(avatar, tenant=principal.tenant, avatar_id=avatar_id)
        name = to_resource_name(new_public_id(SESSION_PREFIX), SESSION_PREFIX)

        def check(counts: Counts) -> None:
            policy.check_concurrency(
                plan, counts.active, retry_after=self._settings.concurrency_retry_after_seconds
            )
            policy.check_capacity(
                counts.waiting,
                max_queued=self._settings.max_queued,
                retry_after=self._settings.at_capacity_retry_after_seconds,
            )

        # Checked and reserved in one step, so that this replica never lets two concurrent
        # requests both take the last slot; the index only lists the sessions when it is not
        # in sync or would refuse. (Across replicas the operator's admission control is what
        # finally holds the line.)
        admission = self._kube.session_index.admit(
            principal.tenant, name, check, lambda: self._kube.list_sessions(SESSION_SELECTOR)
        )
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
            token = request.transport.worker_token.get_secret_value()
            # Shielded: a client that hangs up mid-way must not leave a session without its
            # Secret behind; the pair is made (or rolled back) to the end regardless.
            created = await asyncio.shield(self._create_pair(resource, token))
        structlog.contextvars.bind_contextvars(session_id=name)
        log.info("session_created", quality=str(request.quality))
        return mapping.to_public_session(created)

    async def _create_with_inline_avatar(
        self,
        principal: Principal,
        request: CreateSessionRequest,
        labels: dict[str, str],
        annotations: dict[str, str],
    ) -> Session:
        """The image goes through the avatar pipeline (plan permitting) and becomes one of the
        tenant's avatars; the session is then created with its id. If the session cannot be
        made, the avatar is removed again."""
        if self._avatars is None or request.avatar is None:
            raise internal_error()
        avatar_id = await self._avatars.create_inline(principal, request.avatar)
        resolved = request.model_copy(update={"avatar_id": avatar_id, "avatar": None})
        try:
            return await self._create_new(principal, resolved, labels, annotations)
        except BaseException:
            try:
                await asyncio.shield(self._avatars.discard(avatar_id))
            except Exception:
                log.exception("inline_avatar_rollback_failed", avatar_id=avatar_id)
            raise

    async def _create_pair(self, resource: AvatarSession, token: str) -> AvatarSession:
        """The CR first (the Secret needs its uid as owner), then the Secret; if the Secret
        cannot be made the CR is deleted again, so nothing is ever half-made."""
        created = await self._kube.create_session(mapping.session_body(resource))
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
        except BaseException:
            log.warning("token_secret_failed_rolling_back", session_id=name)
            try:
                await self._kube.delete_session(name)
            except Exception:
                # Left for the operator, which fails a session whose Secret never appears.
                log.exception("rollback_failed", session_id=name)
            raise
        return created

    # --- read ----------------------------------------------------------------------------------

    async def get(self, principal: Principal, session_id: str) -> Session:
        return mapping.to_public_session(await self._owned(principal, session_id))

    async def list_sessions(
        self, principal: Principal, *, status: Phase | None, limit: int, cursor: str | None
    ) -> SessionList:
        """Newest first. The cursor is the last name returned: sessions created meanwhile sort
        before it and never shift later pages, so a walk sees each session at most once."""
        after = None if cursor is None else decode_cursor(cursor)
        sessions = await self._kube.list_sessions(tenant_selector(principal.tenant))
        matching = sorted(
            (
                s
                for s in sessions
                if s.spec.tenant == principal.tenant
                and (status is None or mapping.phase_of(s) is status)
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
        sessions = await self._kube.list_sessions(tenant_selector(principal.tenant))
        mine = [s for s in sessions if s.spec.tenant == principal.tenant]
        return policy.usage_snapshot(principal.plan, principal.usage, policy.active_count(mine))

    # --- change --------------------------------------------------------------------------------

    async def end(self, principal: Principal, session_id: str) -> Session:
        """Sets spec.endRequestedAt once; ending an ending or finished session changes nothing."""
        session = await self._owned(principal, session_id)
        if _finished_or_ending(session):
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
            raise _session_not_found(session_id)
        log.info("session_end_requested")
        return mapping.to_public_session(updated)

    async def keep_alive(self, principal: Principal, session_id: str) -> Session:
        session = await self._owned(principal, session_id)
        if _finished_or_ending(session):
            raise ApiError(
                ErrorType.CONFLICT,
                "session_not_active",
                f"Session {session_id} is {mapping.phase_of(session)!s}"
                " or ending; there is nothing to keep alive.",
            )
        patch = {"spec": {"keepAliveAt": k8s_time(self._now())}}
        updated = await self._kube.patch_session(session.metadata.name or "", patch)
        if updated is None:
            raise _session_not_found(session_id)
        return mapping.to_public_session(updated)

    async def cancel(self, principal: Principal, session_id: str) -> Session:
        """Deletes the resource; the operator's finalizer records `canceled` (before running)
        or ends the worker. The reply is the session as it was just before the delete."""
        session = await self._owned(principal, session_id)
        if mapping.is_terminal(session) or mapping.is_being_deleted(session):
            return mapping.to_public_session(session)
        await self._kube.delete_session(session.metadata.name or "")
        log.info("session_cancel_requested")
        return mapping.to_public_session(session)

    async def _owned(self, principal: Principal, session_id: str) -> AvatarSession:
        """The tenant's session, or 404 whether it is missing or someone else's."""
        try:
            name = to_resource_name(session_id, SESSION_PREFIX)
        except ValueError:
            raise _session_not_found(session_id) from None
        structlog.contextvars.bind_contextvars(session_id=name)
        session = await self._kube.get_session(name)
        if session is None or session.spec.tenant != principal.tenant:
            raise _session_not_found(session_id)
        return session


def _finished_or_ending(session: AvatarSession) -> bool:
    return (
        mapping.is_terminal(session)
        or mapping.is_being_deleted(session)
        or session.spec.end_requested_at is not None
    )


def _session_not_found(session_id: str) -> ApiError:
    return not_found("session_not_found", f"No session {session_id}.", param="id")
