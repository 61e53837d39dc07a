"""Follows the worker's own AvatarSession on the API server (`named_watch`): the per-session
Role, like a pool worker's grant, allows `watch` only with a `metadata.name` field selector."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any, cast

from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.session import AvatarSession
from avatar_worker.named_watch import WATCH_TIMEOUT_S, NamedWatch


class SessionWatch:
    def __init__(
        self,
        api_client: Any,
        namespace: str,
        name: str,
        *,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
    ) -> None:
        from kubernetes import client as k8s

        api = k8s.CustomObjectsApi(api_client)
        where = (GROUP, VERSION, namespace, AVATAR_SESSION.plural)
        self._watch = NamedWatch(
            kind="session",
            name=name,
            read=partial(_read, api, where, name),
            list_objects=partial(api.list_namespaced_custom_object, *where),
            parse=AvatarSession.model_validate,
            watch_timeout_s=watch_timeout_s,
        )

    @property
    def connects(self) -> int:
        return self._watch.connects

    def follow(self, after: AvatarSession) -> AsyncIterator[AvatarSession]:
        """Every version of the session after `after`, until the caller stops iterating."""
        return self._watch.follow(after.metadata.resource_version)


def _read(api: Any, where: tuple[str, str, str, str], name: str) -> Mapping[str, Any]:
    return cast(Mapping[str, Any], api.get_namespaced_custom_object(*where, name))
