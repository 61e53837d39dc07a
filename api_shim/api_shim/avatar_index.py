"""The namespace's Avatars, kept by a LIST then WATCH (an informer), so that POST /v1/sessions
looks its avatar up without a call to the API server.

Avatars are made once and hardly change, so a view a moment old is as good as a fresh read
for everything but a delete, and the cost of that is small: a session created in the moment
after its avatar was deleted fails with `avatar_not_found` (the operator checks). An avatar
missing here may be one made a moment ago: callers then read it from the API server
(AvatarService.find)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from pydantic import ValidationError

from api_shim.informer import WatchedIndex, WatchSource
from avatar_crds.avatar import Avatar
from avatar_crds.kinds import AVATAR

log = structlog.get_logger("api_shim.avatar_index")


class AvatarIndex(WatchedIndex):
    def __init__(self, source: WatchSource | None) -> None:
        self._avatars: dict[str, Avatar] = {}
        super().__init__(source, AVATAR.plural, label_selector=None)

    def get(self, name: str) -> Avatar | None:
        """The avatar as last seen; None if it was not seen, or the index is not in sync.
        The first call starts the watch (on the running loop)."""
        self.start()
        return self._avatars.get(name) if self._synced else None

    def forget(self, name: str) -> None:
        """This process deleted it: stop answering with it before the watch says so."""
        self._avatars.pop(name, None)

    def _replace(self, items: Iterable[dict[str, Any]], _started: float) -> None:
        avatars = {}
        for item in items:
            avatar = _avatar_of(item)
            if avatar is not None:
                avatars[avatar.metadata.name or ""] = avatar
        self._avatars = avatars
        self._synced = True

    def _apply(self, kind: str, raw: dict[str, Any]) -> None:
        avatar = None if kind == "DELETED" else _avatar_of(raw)
        name = str(raw.get("metadata", {}).get("name", ""))
        if avatar is None:
            self._avatars.pop(name, None)
        else:
            self._avatars[name] = avatar


def _avatar_of(raw: dict[str, Any]) -> Avatar | None:
    try:
        return Avatar.model_validate(raw)
    except ValidationError as error:
        # Unknown to the index, as in a LIST: lookups fall back to the API server, which
        # refuses it the same way.
        name = raw.get("metadata", {}).get("name")
        log.warning("skipping_invalid_avatar", name=name, error=str(error))
        return None
