"""The rig cache: the avatars a pool worker prepared for drawing, kept across its sessions, keyed
by all they are made of, bounded, and read-only to the sessions that draw from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar_crds.avatar import AvatarSpec
from avatar_crds.enums import AspectRatio, Quality
from avatar_worker.config import read_avatar_image
from avatar_worker.render.base import FrameRequest
from avatar_worker.render.lite import LiteRenderer, LiteRig
from avatar_worker.render.portrait import Portrait, load_portrait
from avatar_worker.render.resolution import FPS, resolution
from avatar_worker.render.rig_cache import RigCache, RigKey
from avatar_worker.render.visemes import MouthShape
from worker_image.tests.support import AVATAR_NAME, write_astronaut_avatar

SIZE = resolution(Quality.LITE, AspectRatio.LANDSCAPE)
NAMESPACE = "tenant-a"


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[AvatarSpec, Path]:
    store = tmp_path_factory.mktemp("store")
    return write_astronaut_avatar(store), store


@pytest.fixture(scope="module")
def avatar(stored: tuple[AvatarSpec, Path]) -> AvatarSpec:
    return stored[0]


@pytest.fixture(scope="module")
def portrait(stored: tuple[AvatarSpec, Path]) -> Portrait:
    spec, store = stored
    return load_portrait(read_avatar_image(spec, str(store)), spec.face)


class Preparations:
    """A `prepare` that counts its calls."""

    def __init__(self, portrait: Portrait, size: tuple[int, int] = SIZE) -> None:
        self.portrait = portrait
        self.size = size
        self.count = 0

    def __call__(self) -> LiteRig:
        self.count += 1
        return LiteRig(self.portrait, self.size)


def key(avatar: AvatarSpec, name: str = AVATAR_NAME, size: tuple[int, int] = SIZE) -> RigKey:
    return RigKey.of(NAMESPACE, name, avatar, size)


def speaking(frames: int, start: int = 0) -> list[FrameRequest]:
    """Frames with the mouth moving, long enough to pass blinks (the first is at 1.5 s)."""
    return [
        FrameRequest(
            index=i,
            time_s=i / FPS,
            mouth=MouthShape(open=0.5 + 0.5 * np.sin(i / 3.0), width=0.3),
            speaking=True,
        )
        for i in range(start, start + frames)
    ]


def test_a_second_session_of_an_avatar_gets_the_rig_the_first_prepared(
    avatar: AvatarSpec, portrait: Portrait
) -> None:
    cache, prepare = RigCache(), Preparations(portrait)
    first = cache.rig(key(avatar), prepare)
    second = cache.rig(key(avatar), prepare)
    assert second is first
    assert prepare.count == 1
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_changed_avatar_is_prepared_again(avatar: AvatarSpec, portrait: Portrait) -> None:
    """An Avatar made again under the same name with another image or face, another frame size,
    another avatar with the same image: each a key of its own, never the first one's rig."""
    cache, prepare = RigCache(capacity=16), Preparations(portrait)
    first = cache.rig(key(avatar), prepare)
    new_image = avatar.image.model_copy(update={"sha256": "f" * 64})
    moved_box = avatar.face.box.model_copy(update={"x": avatar.face.box.x + 1})
    new_face = avatar.face.model_copy(update={"box": moved_box})
    others = [
        key(avatar.model_copy(update={"image": new_image})),
        key(avatar.model_copy(update={"face": new_face})),
        key(avatar, name="av-01jc0000000000000000000001"),
    ]
    for other in others:
        assert other != key(avatar)
        assert cache.rig(other, prepare) is not first
    other_size = (SIZE[0] // 2, SIZE[1] // 2)
    assert cache.rig(key(avatar, size=other_size), Preparations(portrait, other_size)) is not first
    assert prepare.count == 1 + len(others)
    assert cache.hits == 0
    assert cache.rig(key(avatar), prepare) is first  # the first avatar's rig is still its own


def test_the_cache_keeps_only_the_rigs_used_last(avatar: AvatarSpec, portrait: Portrait) -> None:
    cache, prepare = RigCache(capacity=2), Preparations(portrait)
    a, b, c = (key(avatar, name=f"av-01jc000000000000000000000{i}") for i in range(3))
    cache.rig(a, prepare)
    cache.rig(b, prepare)
    cache.rig(a, prepare)  # a used again: b is now the one used longest ago
    cache.rig(c, prepare)
    assert len(cache) == 2
    assert a in cache
    assert c in cache
    assert b not in cache
    cache.rig(b, prepare)
    assert prepare.count == 4  # b prepared again once it was let go
    with pytest.raises(ValueError, match="at least one"):
        RigCache(capacity=0)


def test_a_failed_preparation_is_not_kept(avatar: AvatarSpec, portrait: Portrait) -> None:
    cache = RigCache()

    def fails() -> LiteRig:
        raise RuntimeError("the image could not be decoded")

    with pytest.raises(RuntimeError):
        cache.rig(key(avatar), fails)
    assert len(cache) == 0
    prepare = Preparations(portrait)
    cache.rig(key(avatar), prepare)
    assert prepare.count == 1


def test_a_rig_for_another_frame_size_is_refused(avatar: AvatarSpec, portrait: Portrait) -> None:
    cache = RigCache()
    with pytest.raises(ValueError, match="prepared for"):
        cache.rig(key(avatar), Preparations(portrait, (SIZE[0] // 2, SIZE[1] // 2)))
    assert len(cache) == 0
    rig = LiteRig(portrait, SIZE)
    with pytest.raises(ValueError, match="cannot draw"):
        LiteRenderer(rig, (SIZE[0] // 2, SIZE[1] // 2))


def test_sessions_drawing_from_one_rig_carry_nothing_to_each_other(
    avatar: AvatarSpec, portrait: Portrait
) -> None:
    rig = RigCache().rig(key(avatar), Preparations(portrait))
    # What a session draws with is its own: one session's frames (blinks, an open mouth)
    # leave the rig as it was, and the next session draws exactly what a fresh rig would.
    first = LiteRenderer(rig, SIZE)
    first.render(speaking(120))
    next_session = LiteRenderer(rig, SIZE).render(speaking(60))
    fresh = LiteRenderer(LiteRig(portrait, SIZE), SIZE).render(speaking(60))
    assert np.array_equal(next_session, fresh)
    # And nothing can write into the rig: its arrays are frozen.
    frozen = [rig.base, rig.rgb, rig.xs, rig.head, rig.mouth.colours.deep]
    for array in frozen:
        with pytest.raises(ValueError, match="read-only"):
            array[(0,) * array.ndim] = 0
    lid = rig.eyelids[0]
    with pytest.raises(ValueError, match="read-only"):
        lid.lash[0] = 0
