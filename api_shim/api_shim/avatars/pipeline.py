"""Image in, aligned portrait out: read the source (upload, URL or data URI), decode, find the
one face, align, encode. The CPU-bound part runs on a small thread pool of its own, so uploads
never stall the event loop and never take more cores than configured; and only so many images
are fetched or wait for that pool at once (more are refused with 503), so its queue, and the
images it holds, stay bounded."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import structlog

from api_shim.avatars.align import AlignedPortrait, align_portrait
from api_shim.avatars.decode import decode_image, parse_data_uri
from api_shim.avatars.faces import FaceDetector, FacePolicy, choose_face
from api_shim.avatars.fetch import Fetcher
from api_shim.avatars.problems import ImageRejectedError
from api_shim.capacity import Slots

log = structlog.get_logger("api_shim.avatars")


class SourceKind(StrEnum):
    FILE = "file"
    URL = "url"
    DATA_URI = "data_uri"


@dataclass(frozen=True)
class ImageSource:
    kind: SourceKind
    value: bytes | str
    param: str  # the request field it came in, named in errors

    @classmethod
    def file(cls, data: bytes, param: str = "file") -> ImageSource:
        return cls(SourceKind.FILE, data, param)

    @classmethod
    def url(cls, url: str, param: str = "image_url") -> ImageSource:
        return cls(SourceKind.URL, url, param)

    @classmethod
    def data_uri(cls, value: str, param: str = "image_base64") -> ImageSource:
        return cls(SourceKind.DATA_URI, value, param)


@dataclass(frozen=True)
class PreparedAvatar:
    portrait: AlignedPortrait
    detector: str
    source_format: str


def default_detector(model_dir: str) -> FaceDetector:
    """The operator's insightface pack when configured, else the bundled BlazeFace models."""
    if model_dir:
        from api_shim.avatars.insight import InsightFaceDetector

        return InsightFaceDetector(Path(model_dir))
    from api_shim.avatars.blazeface import BlazeFaceDetector

    return BlazeFaceDetector()


class AvatarPipeline:
    def __init__(
        self,
        detector_factory: Callable[[], FaceDetector],
        *,
        fetcher: Fetcher | None = None,
        policy: FacePolicy | None = None,
        threads: int = 2,
        queue: int = 4,
        retry_after: int = 2,
    ) -> None:
        """`queue`: images fetched or waiting for one of the `threads`, on top of those being
        processed."""
        self._factory = detector_factory
        self._detector: FaceDetector | None = None
        self._detector_lock = threading.Lock()
        self.fetcher = fetcher or Fetcher()
        self.policy = policy or FacePolicy()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="avatar")
        self.slots = Slots(threads + queue, what="images", retry_after=retry_after)

    def detector(self) -> FaceDetector:
        """Loaded once, on first use (or by warm_up)."""
        with self._detector_lock:
            if self._detector is None:
                self._detector = self._factory()
                log.info("face_detector_loaded", detector=self._detector.name)
            return self._detector

    async def warm_up(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.detector)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def prepare(self, source: ImageSource) -> PreparedAvatar:
        give_back = self.slots.take()  # before anything is fetched or decoded
        try:
            try:
                data = await self.read(source)
                job = self._executor.submit(self.process, data)
            except BaseException:
                give_back()
                raise
            # Given back when the job is done, not when the request is: a client that hangs
            # up leaves its job queued or running, which must go on counting.
            job.add_done_callback(lambda _job: give_back())
            prepared = await asyncio.wrap_future(job)
        except ImageRejectedError as error:
            log.info("avatar_image_rejected", code=error.code, source=str(source.kind))
            raise error.for_param(source.param) from None
        log.info(
            "avatar_image_accepted",
            source=str(source.kind),
            width=prepared.portrait.width,
            height=prepared.portrait.height,
            roll_degrees=round(prepared.portrait.roll_degrees, 2),
        )
        return prepared

    async def read(self, source: ImageSource) -> bytes:
        if source.kind is SourceKind.URL:
            return await self.fetcher.fetch(str(source.value))
        if source.kind is SourceKind.DATA_URI:
            return parse_data_uri(str(source.value))
        if not isinstance(source.value, bytes):
            raise TypeError("a file source holds bytes")
        return source.value

    def process(self, data: bytes) -> PreparedAvatar:
        """Blocking: decode, detect, choose, refine, align, encode."""
        decoded = decode_image(data)
        detector = self.detector()
        faces = detector.detect(decoded.pixels)
        face = choose_face(faces, decoded.size, self.policy)
        face = detector.refine(decoded.pixels, face)
        portrait = align_portrait(decoded.pixels, face)
        return PreparedAvatar(portrait, detector.name, decoded.format)
