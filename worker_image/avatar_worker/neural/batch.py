"""One model, many sessions: each pass renders every frame that is due, for every session
(torch on one thread).

Sessions call `render` from their own frame clocks. A call queues its frames and waits; the
pass thread takes everything queued once every registered session has something queued, or
`gather_s` after the first arrival (clocks are not aligned, and a late session waits for the
next pass rather than holding the others up). A pass runs whisper's encoder once per session
window, then the UNet and the VAE decoder once over all the frames together.

A session waits at most `budget_s` for its frames (None: as long as it takes). A late pass is
not waited for: the session shows the last face it has (`NeuralSession.compose`), so its audio
and video stay paired at 25 fps; the late faces are kept only to be held next time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import torch

from avatar_worker.logging import get_logger
from avatar_worker.neural.compose import U8
from avatar_worker.neural.model import MuseTalk
from avatar_worker.neural.session import NeuralSession
from avatar_worker.render.base import FrameRequest, Frames
from avatar_worker.render.lite import LiteRig
from avatar_worker.render.portrait import Portrait

log = get_logger("avatar_worker.neural.batch")

GATHER_S = 0.005
BUDGET_S = 0.035  # of a 40 ms frame: what is left is for compositing and pushing


@dataclass
class _Job:
    session: NeuralSession
    latents: torch.Tensor
    batch: Sequence[FrameRequest]
    future: Future[U8] = field(default_factory=Future)


@dataclass
class BatchStats:
    passes: int = 0
    frames: int = 0
    late_calls: int = 0
    sessions_per_pass: list[int] = field(default_factory=list)
    seconds_per_pass: list[float] = field(default_factory=list)


class BatchRenderer:
    def __init__(
        self,
        model: MuseTalk,
        *,
        gather_s: float = GATHER_S,
        budget_s: float | None = BUDGET_S,
        frames_per_call: int = 1,
    ) -> None:
        self.model = model
        self.gather_s = gather_s
        self.budget_s = budget_s
        self.frames_per_call = frames_per_call
        self.stats = BatchStats()
        self._latents: dict[int, torch.Tensor] = {}
        self._queue: list[_Job] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="neural-batch", daemon=True)
        self._thread.start()

    def register(self, portrait: Portrait | LiteRig, size: tuple[int, int]) -> NeuralRenderer:
        session = NeuralSession(portrait, size, self.model.config)
        latents = self.model.face_latents(session.model_face)
        with self._wake:
            self._latents[id(session)] = latents
        return NeuralRenderer(self, session)

    def unregister(self, session: NeuralSession) -> None:
        with self._wake:
            self._latents.pop(id(session), None)
            self._wake.notify_all()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._thread.join()

    def render(self, session: NeuralSession, batch: Sequence[FrameRequest]) -> Frames:
        session.hear(batch)
        job = _Job(session=session, latents=self._latents[id(session)], batch=list(batch))
        with self._wake:
            if self._closed:
                raise RuntimeError("the batch renderer is closed")
            self._queue.append(job)
            self._wake.notify_all()
        try:
            faces: U8 | None = job.future.result(timeout=self.budget_s)
        except FutureTimeout:
            self.stats.late_calls += 1
            faces = None
        return session.compose(batch, faces)

    # -- the pass thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._closed or bool(self._queue))
                if self._closed:
                    for job in self._queue:
                        job.future.cancel()
                    return
                deadline = time.monotonic() + self.gather_s
                self._wake.wait_for(self._everyone_queued, timeout=deadline - time.monotonic())
                jobs, self._queue = self._queue, []
            self._pass(jobs)

    def _everyone_queued(self) -> bool:
        queued = {id(job.session) for job in self._queue}
        return self._closed or queued >= set(self._latents)

    def _pass(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            faces = self._generate(jobs)
        except Exception as exc:  # the sessions' frame clocks fail with it
            log.exception("neural pass failed", sessions=len(jobs))
            for job in jobs:
                job.future.set_exception(exc)
            return
        offset = 0
        for job in jobs:
            mine = faces[offset : offset + len(job.batch)]
            offset += len(job.batch)
            if not job.future.set_running_or_notify_cancel():
                continue
            job.future.set_result(mine)
            if self.budget_s is not None:
                job.session.keep(job.batch[-1].index, mine[-1])  # held if the caller gave up
        elapsed = time.perf_counter() - started
        self.stats.passes += 1
        self.stats.frames += offset
        self.stats.sessions_per_pass.append(len(jobs))
        self.stats.seconds_per_pass.append(elapsed)

    def _generate(self, jobs: list[_Job]) -> U8:
        model = self.model
        plans = [job.session.plan(job.batch) for job in jobs]
        features = model.features([plan.samples for plan in plans])
        prompts = torch.cat(
            [model.prompts(features[i], plan.positions) for i, plan in enumerate(plans)]
        )
        latents = torch.cat([job.latents[None].expand(len(job.batch), -1, -1, -1) for job in jobs])
        return model.generate(latents, prompts)


class NeuralRenderer:
    """A session's `Renderer`: a handle on the process's BatchRenderer."""

    def __init__(self, batch: BatchRenderer, session: NeuralSession) -> None:
        self._batch = batch
        self.session = session

    @property
    def size(self) -> tuple[int, int]:
        return self.session.lite.size

    @property
    def max_batch(self) -> int:
        return self._batch.frames_per_call

    @property
    def lookahead_frames(self) -> int:
        return self.session.config.pad_right

    def render(self, batch: Sequence[FrameRequest]) -> Frames:
        return self._batch.render(self.session, batch)

    def close(self) -> None:
        self._batch.unregister(self.session)
