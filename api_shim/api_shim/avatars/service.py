"""What /v1/avatars does: run the pipeline, store the JPEG, create the `Avatar` resource; read,
list (your own and everyone's public ones) and delete them. Also makes the avatar of a session
that brought its image inline."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from api_shim import idempotency
from api_shim.auth import Principal
from api_shim.avatar_index import AvatarIndex
from api_shim.avatars.pipeline import AvatarPipeline, ImageSource, PreparedAvatar
from api_shim.avatars.schemas import (
    AvatarBox,
    AvatarFace,
    AvatarImage,
    AvatarList,
    AvatarPoint,
    AvatarView,
    InlineAvatar,
    VisibilityName,
)
from api_shim.avatars.store import AvatarStore, image_key
from api_shim.errors import ApiError, ErrorType, invalid_request, not_found
from api_shim.kube import Kube
from api_shim.locks import KeyedLocks
from avatar_crds import contract
from avatar_crds.avatar import Avatar, AvatarSpec, Box, Face, Point, StoredImage
from avatar_crds.enums import Visibility
from avatar_crds.ids import AVATAR_PREFIX, new_public_id, to_public_id, to_resource_name
from avatar_crds.meta import API_VERSION
from avatar_crds.phases import session_holds_slot
from avatar_crds.tenant import Plan

log = structlog.get_logger("api_shim.avatars")

COMPONENT_AVATAR = "avatar"
LABEL_VISIBILITY = "facecast.io/visibility"
LABEL_INLINE = "facecast.io/inline"


@dataclass(frozen=True)
class CreatedAvatar:
    avatar: AvatarView
    replayed: bool


def source_fingerprint(source: ImageSource, visibility: str, display_name: str | None) -> str:
    """What an Idempotency-Key replay must match: the image (hashed) and the options."""
    value = source.value if isinstance(source.value, bytes) else source.value.encode()
    image = hashlib.sha256(value).hexdigest()
    return hashlib.sha256(
        f"{source.kind}:{image}:{visibility}:{display_name or ''}".encode()
    ).hexdigest()


def build_avatar(
    prepared: PreparedAvatar,
    *,
    name: str,
    namespace: str,
    tenant: str,
    uri: str,
    visibility: VisibilityName,
    display_name: str | None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Avatar resource body (validated by the same model the CRD is generated from)."""
    portrait = prepared.portrait
    face = portrait.face
    x, y, w, h = (round(v, 2) for v in face.box)
    # Rounding must not push the box past the image edge (the CRD's CEL rule checks it).
    w = min(w, portrait.width - x)
    h = min(h, portrait.height - y)
    spec = AvatarSpec(
        tenant=tenant,
        visibility=Visibility(visibility),
        display_name=display_name,
        image=StoredImage(
            uri=uri,
            width=portrait.width,
            height=portrait.height,
            sha256=portrait.sha256,
            size_bytes=len(portrait.jpeg),
        ),
        face=Face(
            box=Box(x=x, y=y, width=w, height=h),
            landmarks=[
                Point(
                    x=round(min(max(px, 0.0), portrait.width), 2),
                    y=round(min(max(py, 0.0), portrait.height), 2),
                )
                for px, py in face.landmarks.tolist()
            ],
            score=round(min(max(face.score, 0.0), 1.0), 4),
            detector=prepared.detector,
        ),
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "Avatar",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                contract.LABEL_TENANT: tenant,
                contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
                contract.LABEL_COMPONENT: COMPONENT_AVATAR,
                LABEL_VISIBILITY: visibility,
                **(labels or {}),
            },
            "annotations": dict(annotations or {}),
        },
        "spec": spec.to_k8s(),
    }


def to_view(avatar: Avatar, tenant: str) -> AvatarView:
    spec = avatar.spec
    stamp = avatar.metadata.creation_timestamp
    return AvatarView(
        id=to_public_id(avatar.metadata.name or ""),
        visibility="public" if spec.visibility is Visibility.PUBLIC else "tenant",
        display_name=spec.display_name,
        owned=spec.tenant == tenant,
        image=AvatarImage(
            width=spec.image.width,
            height=spec.image.height,
            sha256=spec.image.sha256,
            size_bytes=spec.image.size_bytes,
        ),
        face=AvatarFace(
            box=AvatarBox(
                x=spec.face.box.x,
                y=spec.face.box.y,
                width=spec.face.box.width,
                height=spec.face.box.height,
            ),
            landmarks=[AvatarPoint(x=p.x, y=p.y) for p in spec.face.landmarks],
            score=spec.face.score,
            detector=spec.face.detector,
        ),
        created_at=None if stamp is None else datetime.fromisoformat(stamp),
    )


def visible_to(avatar: Avatar, tenant: str) -> bool:
    return avatar.spec.visibility is Visibility.PUBLIC or avatar.spec.tenant == tenant


def check_inline_allowed(plan: Plan, inline: InlineAvatar) -> None:
    if inline.image_url is not None and not plan.allow_url_avatars:
        raise ApiError(
            ErrorType.PERMISSION,
            "url_avatars_not_allowed",
            "Your plan does not allow avatars from a URL in a session; upload the image to"
            " POST /v1/avatars and pass its avatar_id.",
            param="avatar.image_url",
        )
    if inline.image_base64 is not None and not plan.allow_base64_avatars:
        raise ApiError(
            ErrorType.PERMISSION,
            "base64_avatars_not_allowed",
            "Your plan does not allow base64 avatars in a session; upload the image to"
            " POST /v1/avatars and pass its avatar_id.",
            param="avatar.image_base64",
        )


def _avatar_not_found(avatar_id: str) -> ApiError:
    return not_found("avatar_not_found", f"No avatar {avatar_id}.", param="id")


class AvatarService:
    def __init__(
        self,
        kube: Kube,
        index: AvatarIndex,
        pipeline: AvatarPipeline,
        store: AvatarStore,
        *,
        new_id: Callable[[], str] = lambda: new_public_id(AVATAR_PREFIX),
    ) -> None:
        self._kube = kube
        self._index = index
        self.pipeline = pipeline
        self._store = store
        self._new_id = new_id
        self._key_locks = KeyedLocks()

    # --- create --------------------------------------------------------------------------------

    async def create(
        self,
        principal: Principal,
        source: ImageSource,
        *,
        visibility: VisibilityName,
        display_name: str | None,
        idempotency_key: str | None,
    ) -> CreatedAvatar:
        if idempotency_key is None:
            avatar = await self._make(principal.tenant, source, visibility, display_name, {}, {})
            return CreatedAvatar(to_view(avatar, principal.tenant), replayed=False)
        key_hash = idempotency.key_hash(principal.tenant, idempotency_key)
        fingerprint = source_fingerprint(source, visibility, display_name)
        async with self._key_locks.hold(key_hash):
            selector = f"{idempotency.LABEL_KEY_HASH}={key_hash}"
            found = [
                a
                for a in await self._kube.list_avatars(selector)
                if a.spec.tenant == principal.tenant
            ]
            existing = min(found, key=lambda a: a.metadata.name or "", default=None)
            if existing is not None:
                if existing.metadata.annotations.get(idempotency.ANNOTATION_FINGERPRINT) != (
                    fingerprint
                ):
                    raise ApiError(
                        ErrorType.CONFLICT,
                        "idempotency_key_reused",
                        f"This {idempotency.HEADER} was already used with a different request.",
                        param=idempotency.HEADER,
                    )
                return CreatedAvatar(to_view(existing, principal.tenant), replayed=True)
            avatar = await self._make(
                principal.tenant,
                source,
                visibility,
                display_name,
                {idempotency.LABEL_KEY_HASH: key_hash},
                {idempotency.ANNOTATION_FINGERPRINT: fingerprint},
            )
            return CreatedAvatar(to_view(avatar, principal.tenant), replayed=False)

    async def create_inline(self, principal: Principal, inline: InlineAvatar) -> str:
        """The avatar of a session that brought its image along; returns its public id."""
        check_inline_allowed(principal.plan, inline)
        if inline.image_url is not None:
            source = ImageSource.url(inline.image_url, param="avatar.image_url")
        else:
            source = ImageSource.data_uri(inline.image_base64 or "", param="avatar.image_base64")
        avatar = await self._make(
            principal.tenant, source, "tenant", None, {LABEL_INLINE: "true"}, {}
        )
        return to_public_id(avatar.metadata.name or "")

    async def discard(self, avatar_id: str) -> None:
        """Undo create_inline when the session it was made for could not be created."""
        name = to_resource_name(avatar_id, AVATAR_PREFIX)
        avatar = await self._kube.get_avatar(name)
        await self._delete_resource(name)
        if avatar is not None:
            await self._delete_image(avatar)

    async def _make(
        self,
        tenant: str,
        source: ImageSource,
        visibility: VisibilityName,
        display_name: str | None,
        labels: dict[str, str],
        annotations: dict[str, str],
    ) -> Avatar:
        prepared = await self.pipeline.prepare(source)
        public_id = self._new_id()
        name = to_resource_name(public_id, AVATAR_PREFIX)
        key = image_key(tenant, public_id)
        uri = await asyncio.to_thread(self._store.put, key, prepared.portrait.jpeg)
        body = build_avatar(
            prepared,
            name=name,
            namespace=self._kube.namespace,
            tenant=tenant,
            uri=uri,
            visibility=visibility,
            display_name=display_name,
            labels=labels,
            annotations=annotations,
        )
        try:
            created = await asyncio.shield(self._kube.create_avatar(body))
        except BaseException:
            await asyncio.to_thread(self._store.delete, key)
            raise
        structlog.contextvars.bind_contextvars(avatar_id=name)
        log.info("avatar_created", detector=prepared.detector, visibility=visibility)
        return created

    # --- read ----------------------------------------------------------------------------------

    async def find(self, name: str) -> Avatar | None:
        """Avatar `name` from the index when it has it, else from the API server (an avatar
        made a moment ago, or by another replica, may not be in the index yet). One deleted a
        moment ago may still be found: the operator then fails the session with
        `avatar_not_found`."""
        return self._index.get(name) or await self._kube.get_avatar(name)

    async def get(self, principal: Principal, avatar_id: str) -> AvatarView:
        return to_view(await self._visible(principal, avatar_id), principal.tenant)

    async def list_avatars(
        self, principal: Principal, *, limit: int, cursor: str | None
    ) -> AvatarList:
        """Yours and every public one, newest first; `cursor` is the last id of a page."""
        after = None
        if cursor is not None:
            try:
                after = to_resource_name(cursor, AVATAR_PREFIX)
            except ValueError:
                raise invalid_request("invalid_cursor", "cursor is not valid.", "cursor") from None
        # Every Avatar of the namespace: public ones made with kubectl carry none of our labels.
        avatars = await self._kube.list_avatars()
        matching = sorted(
            (
                a
                for a in avatars
                if visible_to(a, principal.tenant)
                and _id_shaped(a)
                and (after is None or (a.metadata.name or "") < after)
            ),
            key=lambda a: a.metadata.name or "",
            reverse=True,
        )
        page = matching[:limit]
        has_more = len(matching) > limit
        return AvatarList(
            data=[to_view(a, principal.tenant) for a in page],
            has_more=has_more,
            next_cursor=to_public_id(page[-1].metadata.name or "") if has_more else None,
        )

    # --- delete --------------------------------------------------------------------------------

    async def delete(self, principal: Principal, avatar_id: str) -> AvatarView:
        """Only the owner may delete; refused while a session that has not finished uses it
        (its worker reads the image). The reply is the avatar as it was."""
        avatar = await self._visible(principal, avatar_id)
        if avatar.spec.tenant != principal.tenant:
            raise _avatar_not_found(avatar_id)
        name = avatar.metadata.name or ""
        sessions = await self._kube.list_sessions(contract.MANAGED_SELECTOR)
        users = [s for s in sessions if s.spec.avatar_ref == name and session_holds_slot(s)]
        if users:
            raise ApiError(
                ErrorType.CONFLICT,
                "avatar_in_use",
                f"Avatar {avatar_id} is used by {len(users)} session(s) that have not finished;"
                " end them first.",
                param="id",
            )
        await self._delete_resource(name)
        await self._delete_image(avatar)
        log.info("avatar_deleted")
        return to_view(avatar, principal.tenant)

    async def _delete_resource(self, name: str) -> None:
        await self._kube.delete_avatar(name)
        self._index.forget(name)  # stop answering with it before the watch says so

    async def _delete_image(self, avatar: Avatar) -> None:
        """Only images this API stored (a key in the store), never a path someone else wrote."""
        name = avatar.metadata.name or ""
        try:
            key = image_key(avatar.spec.tenant, to_public_id(name))
        except ValueError:
            return
        if avatar.spec.image.uri == key:
            await asyncio.to_thread(self._store.delete, key)

    async def _visible(self, principal: Principal, avatar_id: str) -> Avatar:
        """The avatar if it is the caller's or public; 404 alike when missing or private."""
        try:
            name = to_resource_name(avatar_id, AVATAR_PREFIX)
        except ValueError:
            raise _avatar_not_found(avatar_id) from None
        avatar = await self._kube.get_avatar(name)
        if avatar is None or not visible_to(avatar, principal.tenant):
            raise _avatar_not_found(avatar_id)
        return avatar


def _id_shaped(avatar: Avatar) -> bool:
    try:
        return to_public_id(avatar.metadata.name or "").startswith(f"{AVATAR_PREFIX}_")
    except ValueError:
        return False
