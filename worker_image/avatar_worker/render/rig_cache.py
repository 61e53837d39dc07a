"""Avatars prepared for drawing, kept across a pool worker's sessions.

Preparing an avatar (decoding its image and building its `LiteRig`: the fitted portrait, the
head's fields, the lips' seam, the eyelids) is the slowest step between a pool slot taking its
session and its first frame: ~50 ms of CPU at 640x480 on an idle core, ~250 ms at the pro
tier's size, and several times that on a busy core. The neural tiers draw from the same rig.
It depends only on the avatar's image and face and on the frame size, so a pool worker keeps
the rigs of the avatars it drew last, and a session of one of them starts from its rig.

Only what comes from the Avatar resource and its image is cached, and nothing of a session:
  * the session still reads its Avatar through the API with its own grant, and the image from
    the store checked against the Avatar's sha256, before it asks the cache
    (`Worker._build_renderer`): a session not granted an avatar never reaches its rig;
  * the key is the Avatar's namespace and name, its image's digest, its face and the frame size:
    an Avatar's spec is immutable, and one deleted and made again under the same name with
    another image or face is another key, so no session is drawn from a stale rig (its
    resourceVersion is not in the key: a change of labels or status changes nothing drawn);
  * a rig is read-only (its arrays are frozen); each session draws from it with a renderer of
    its own (its blink schedule, its frame buffers).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from avatar_crds.avatar import AvatarSpec
from avatar_worker.render.lite import LiteRig
from avatar_worker.render.portrait import FaceGeometry

DEFAULT_CAPACITY = 8
"""Rigs kept: a 4-slot worker's current avatars and as many recent ones. A rig is ~3 MB at the
lite tier's 640x480 and ~12 MB at the pro tier's 1280x960."""


@dataclass(frozen=True)
class RigKey:
    """Everything a rig is made from, and whose avatar it is."""

    namespace: str
    avatar: str  # the Avatar's name
    image_sha256: str
    face: FaceGeometry
    size: tuple[int, int]  # the frame's (width, height)

    @classmethod
    def of(cls, namespace: str, name: str, avatar: AvatarSpec, size: tuple[int, int]) -> RigKey:
        return cls(namespace, name, avatar.image.sha256, FaceGeometry.from_face(avatar.face), size)


class RigCache:
    """The rigs of the `capacity` keys used last (thread-safe: slots build their renderers in
    worker threads). A failed preparation is not kept: the next session tries again."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("a rig cache holds at least one rig")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._rigs: OrderedDict[RigKey, LiteRig] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._rigs)

    def __contains__(self, key: RigKey) -> bool:
        with self._lock:
            return key in self._rigs

    def rig(self, key: RigKey, prepare: Callable[[], LiteRig]) -> LiteRig:
        """The rig for `key`: kept, or made by `prepare` (outside the lock: two sessions of a new
        avatar starting together each prepare it, rather than one waiting on the other)."""
        with self._lock:
            rig = self._rigs.get(key)
            if rig is not None:
                self._rigs.move_to_end(key)
                self.hits += 1
                return rig
            self.misses += 1
        rig = prepare()
        if rig.size != key.size:
            raise ValueError(f"a rig for {rig.size} prepared for {key.size} frames")
        with self._lock:
            self._rigs[key] = rig
            self._rigs.move_to_end(key)
            while len(self._rigs) > self.capacity:
                self._rigs.popitem(last=False)
        return rig
