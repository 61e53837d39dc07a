"""One session's state around the shared model: what is prepared once at the start and how a
frame is put together (numpy; the model itself runs in `batch`).

At the start: the portrait fitted to the output frame by the lite renderer (which keeps the
blinks and the idle head sway), the face crop and paste mask from its landmarks, and the crop
at the model's face size (the batch renderer turns it into the cached latents). Per call: the
frames' audio joins the 16 kHz history; the encoder window and each frame's feature positions
say what the model reads; the last frame's look-ahead (`FrameRequest.upcoming`, audio not
played yet) fills the window after the history without joining it. Per frame: lite's frame
with the mouth closed, and the generated face pasted through the mask at the crop moved with
the head's sway. When the model's answer comes
too late the last face it made is held instead (before the first one, lite's own closed mouth).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from avatar_worker.neural.audio_history import AudioHistory, Decimator
from avatar_worker.neural.compose import U8, paste, resize_face
from avatar_worker.neural.config import AUDIO_FPS, WHISPER_SAMPLE_RATE, ModelConfig
from avatar_worker.neural.face import FaceCrop, face_crop
from avatar_worker.neural.windowing import EncoderWindow, encoder_window, gather_positions
from avatar_worker.render.base import RGBA_CHANNELS, FrameRequest, Frames
from avatar_worker.render.lite import LiteRenderer, LiteRig, Pose
from avatar_worker.render.portrait import Portrait
from avatar_worker.render.resolution import FPS

OUTPUT_RATE = 48000  # the worker's audio rate, for a frame that comes without samples


@dataclass(frozen=True)
class AudioPlan:
    """What the model reads for one call: the encoder's input and each frame's features."""

    window: EncoderWindow
    samples: npt.NDArray[np.float32]  # 16 kHz from the window's start; silence after them
    positions: npt.NDArray[np.int64]  # (frames, tokens in time) places in the window, -1: zero


class NeuralSession:
    def __init__(
        self, portrait: Portrait | LiteRig, size: tuple[int, int], config: ModelConfig
    ) -> None:
        self.config = config
        self.lite = LiteRenderer(portrait, size)
        self.crop: FaceCrop = face_crop(self.lite.face, size)
        rgb = self.lite.render_pose(Pose())[..., :3]  # the head at rest, eyes open
        c = self.crop
        region = rgb[c.y : c.y + c.side, c.x : c.x + c.side]
        self.model_face: U8 = np.asarray(
            Image.fromarray(region).resize(
                (config.face_size, config.face_size), Image.Resampling.LANCZOS
            ),
            dtype=np.uint8,
        )
        self._window_features = round(config.whisper_window_s * AUDIO_FPS)
        keep = round((config.history_s + config.whisper_window_s) * WHISPER_SAMPLE_RATE)
        self._history = AudioHistory(keep)
        self._decimator: Decimator | None = None
        self._next_index: int | None = None
        self._ahead = np.zeros(0, dtype=np.float32)  # 16 kHz look-ahead after the history
        self._held: U8 | None = None  # the last generated face, at crop size
        self._held_index = -1
        self._lock = threading.Lock()

    # -- audio ----------------------------------------------------------------------------

    def hear(self, batch: Sequence[FrameRequest]) -> None:
        """Add the frames' audio to the history; frames come in order, one chunk each."""
        with self._lock:  # the pass thread reads the history and look-ahead (`plan`)
            self._hear(batch)

    def _hear(self, batch: Sequence[FrameRequest]) -> None:
        for request in batch:
            if self._next_index is not None and request.index != self._next_index:
                raise ValueError(f"frame {request.index} after {self._next_index - 1}")
            self._next_index = request.index + 1
            if self._decimator is None:
                rate = len(request.audio) * FPS if len(request.audio) else OUTPUT_RATE
                self._decimator = Decimator(rate)
            samples = request.audio if len(request.audio) else _silence(self._decimator)
            self._history.append(self._decimator.push(samples))
        if batch and self._decimator is not None:
            self._ahead = self._decimator.preview(batch[-1].upcoming)

    def plan(self, batch: Sequence[FrameRequest]) -> AudioPlan:
        first, last = batch[0].index, batch[-1].index
        c = self.config
        window = encoder_window(first, last, c.pad_right, c.history_s, self._window_features)
        positions = np.stack(
            [gather_positions(r.index, window, c.pad_left, c.pad_right) for r in batch]
        )
        with self._lock:
            # Only as far as audio was heard (and looked ahead): the rest of the window is
            # silence, which `MuseTalk.log_mel` pads on the device instead of copying 30 s.
            heard = self._history.end + len(self._ahead) - window.first_sample
            length = min(window.samples, max(heard, 0))
            samples = self._history.window(window.first_sample, length, self._ahead)
        return AudioPlan(window=window, samples=samples, positions=positions)

    # -- frames ---------------------------------------------------------------------------

    def keep(self, index: int, face: U8) -> None:
        """Remember the newest generated face (model output size) to hold when one is late."""
        with self._lock:
            if index > self._held_index:
                self._held, self._held_index = resize_face(face, self.crop.side), index

    def compose(self, batch: Sequence[FrameRequest], faces: U8 | None) -> Frames:
        """Lite frames with the mouth closed and a generated face (or the held one) pasted."""
        width, height = self.lite.size
        out = np.empty((len(batch), height, width, RGBA_CHANNELS), dtype=np.uint8)
        for i, request in enumerate(batch):
            pose = self.lite.pose_at(_still(request.time_s))
            self.lite.render_pose(pose, out=out[i])
            face: U8 | None
            if faces is not None:
                self.keep(request.index, faces[i])
                face = resize_face(faces[i], self.crop.side)
            else:
                with self._lock:
                    face = self._held
            if face is not None:
                dx, dy = (round(v) for v in pose.shift)
                paste(out[i], face, self.crop.mask, self.crop.x + dx, self.crop.y + dy)
        return out


def _still(time_s: float) -> FrameRequest:
    """Lite draws the head and eyes only (its mouth stays closed); the mouth is the model's."""
    return FrameRequest(index=0, time_s=time_s)


def _silence(decimator: Decimator) -> npt.NDArray[np.int16]:
    return np.zeros(decimator.factor * WHISPER_SAMPLE_RATE // FPS, dtype=np.int16)
