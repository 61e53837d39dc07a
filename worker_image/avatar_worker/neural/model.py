"""MuseTalk v1.5 inference on loaded networks (torch): face latents, audio features, one
inpainting step, decode.

- Face: the 256x256 crop in [-1, 1]; the UNet's input is the latent of the crop with its lower
  half blanked, then the latent of the whole crop (the reference), 8 channels. Both come from
  the portrait, so a session computes them once. The VAE posterior's mean is used, not a
  sample, so frames are reproducible.
- Audio: whisper's log-mel, the encoder's hidden states (the embeddings and every layer's
  output), and per frame the window `windowing` picks, flattened time-major into
  10 x (layers + 1) tokens of width 384, plus a sinusoidal position encoding.
- One UNet pass at timestep 0 predicts the face latent; the VAE decodes it.
- On CUDA the audio half and the face half are replayed from graphs captured at load
  (`graphs`), which saves the CPU ~30 ms of kernel launches per pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from transformers import WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from avatar_worker.logging import get_logger
from avatar_worker.neural import checkpoint, layout
from avatar_worker.neural.config import CONFIGS, LATENT_SCALE, TIMESTEP, ModelConfig
from avatar_worker.neural.graphs import MAX_BATCH, BatchGraphs, Shape, batch_sizes

log = get_logger("avatar_worker.neural.model")

U8 = npt.NDArray[np.uint8]
_M = TypeVar("_M", bound=torch.nn.Module)


def positional_encoding(length: int, width: int) -> torch.Tensor:
    """(length, width) sines and cosines of geometric wavelengths (the Transformer's)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    rates = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(1e4) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * rates)
    table[:, 1::2] = torch.cos(position * rates)
    return table


def pick_device() -> tuple[torch.device, torch.dtype]:
    """fp16 on a CUDA GPU, float32 on the CPU (half precision is slow or missing there)."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.float16
    return torch.device("cpu"), torch.float32


def _placed(module: _M, device: torch.device, dtype: torch.dtype) -> _M:
    # Built in float32; cast only when that changes something (diffusers warns on every cast).
    module = module.to(device)
    if dtype != torch.float32:
        module = module.to(dtype)
    return module.eval()


@dataclass
class Networks:
    unet: Any  # diffusers UNet2DConditionModel (untyped for mypy)
    vae: Any  # diffusers AutoencoderKL
    encoder: WhisperEncoder
    mel: WhisperFeatureExtractor


def load_networks(directory: Path) -> Networks:
    """Check the manifest, then load every component; ModelFilesError names a bad file."""
    layout.verify(directory)
    whisper = checkpoint.read_config(directory, layout.WHISPER_CONFIG)
    return Networks(
        unet=checkpoint.load_unet(directory),
        vae=checkpoint.load_vae(directory),
        encoder=checkpoint.load_whisper_encoder(directory),
        mel=checkpoint.load_mel(directory, whisper),
    )


def config_of(networks: Networks) -> ModelConfig:
    """The size preset these networks match (face size from the VAE, the rest as published)."""
    face = int(networks.vae.config.sample_size)
    width = int(networks.encoder.config.d_model)
    for config in CONFIGS.values():
        if config.face_size == face and config.audio_dim == width:
            return config
    raise layout.ModelFilesError(
        layout.VAE_CONFIG.path, f"unknown model size: {face}px face, {width}-wide audio"
    )


class MuseTalk:
    def __init__(
        self,
        networks: Networks,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        *,
        cuda_graphs: bool = True,
        max_batch: int = MAX_BATCH,
    ) -> None:
        default_device, default_dtype = pick_device()
        self.device = device or default_device
        self.dtype = dtype or default_dtype
        self.config = config_of(networks)
        self.mel = networks.mel
        self.unet: Any = _placed(networks.unet, self.device, self.dtype)
        self.vae: Any = _placed(networks.vae, self.device, self.dtype)
        self.encoder = _placed(networks.encoder, self.device, self.dtype)
        tokens = (self.config.pad_left + self.config.pad_right + 1) * 2 * self.config.audio_layers
        self._positions = positional_encoding(tokens, self.config.audio_dim).to(
            self.device, self.dtype
        )
        # The feature extractor's own STFT window and mel filters, kept on the device.
        self._hann = torch.hann_window(self.mel.n_fft, device=self.device)
        self._mel_filters = torch.from_numpy(self.mel.mel_filters).to(self.device, torch.float32)
        # A tensor already on the device: a Python number costs the UNet a copy and a sync.
        self._timestep = torch.tensor(TIMESTEP, device=self.device)
        self.audio_graphs: BatchGraphs | None = None
        self.face_graphs: BatchGraphs | None = None
        if cuda_graphs and self.device.type == "cuda":
            side = self.config.latent_size
            sizes = batch_sizes(max_batch)
            self.audio_graphs = self._capture(
                "audio", self._encode, [((self.mel.n_samples,), torch.float32)], sizes
            )
            self.face_graphs = self._capture(
                "face",
                self._face,
                [((8, side, side), self.dtype), (tuple(self._positions.shape), self.dtype)],
                sizes,
            )

    def _capture(
        self,
        half: str,
        call: Callable[..., torch.Tensor],
        rows: list[tuple[Shape, torch.dtype]],
        sizes: list[int],
    ) -> BatchGraphs | None:
        """Graphs save time, they change no frame: when capture fails (a driver or library
        that cannot capture some kernel) the half runs eagerly, and the log says why."""
        try:
            with torch.inference_mode():
                return BatchGraphs(call, rows, device=self.device, sizes=sizes)
        except RuntimeError as exc:
            log.warning("cuda graph capture failed, running eagerly", half=half, error=str(exc))
            return None

    @classmethod
    def load(cls, directory: Path, *, max_batch: int = MAX_BATCH) -> MuseTalk:
        """`max_batch`: the most frames one pass renders (on CUDA, graphs are captured up to
        it; a larger pass runs eagerly)."""
        return cls(load_networks(directory), max_batch=max_batch)

    @property
    def tokens_per_frame(self) -> int:
        return int(self._positions.shape[0])

    # -- face -----------------------------------------------------------------------------

    @torch.inference_mode()
    def face_latents(self, face: U8) -> torch.Tensor:
        """(8, s, s): the masked crop's latent, then the whole crop's."""
        size = self.config.face_size
        if face.shape != (size, size, 3):
            raise ValueError(f"face crop must be {size}x{size} RGB, got {face.shape}")
        image = torch.from_numpy(np.array(face)).to(self.device).permute(2, 0, 1).to(self.dtype)
        image = image / 127.5 - 1.0
        masked = image.clone()
        masked[:, size // 2 :, :] = 0.0
        both = torch.stack([masked, image])
        latents = self.vae.encode(both).latent_dist.mode() * LATENT_SCALE
        return torch.cat([latents[0], latents[1]], dim=0)

    # -- audio ----------------------------------------------------------------------------

    @torch.inference_mode()
    def features(self, windows: list[npt.NDArray[np.float32]]) -> torch.Tensor:
        """(n, features, layers + 1, width): every hidden state of whisper's encoder for each
        16 kHz window (a view valid until the next call: `prompts` copies what it picks)."""
        waveform = self._waveform(windows)
        hidden = self.audio_graphs(waveform) if self.audio_graphs is not None else None
        return self._encode(waveform) if hidden is None else hidden

    @torch.inference_mode()
    def log_mel(self, windows: list[npt.NDArray[np.float32]]) -> torch.Tensor:
        """(n, 80, frames): whisper's log-mel spectrogram of each window."""
        return self._log_mel(self._waveform(windows))

    def _waveform(self, windows: list[npt.NDArray[np.float32]]) -> torch.Tensor:
        """(n, encoder samples) on the device. A window shorter than the encoder's is padded
        with silence there (the feature extractor pads the same way): most of a 30 s window is
        silence, and copying it for every frame of every session cost more than the pass."""
        longest = max(len(window) for window in windows)
        if longest > self.mel.n_samples:
            raise ValueError(f"{longest} samples is more than the encoder's {self.mel.n_samples}")
        heard = np.zeros((len(windows), longest), dtype=np.float32)
        for row, window in zip(heard, windows, strict=True):
            row[: len(window)] = window
        waveform = torch.zeros((len(windows), self.mel.n_samples), device=self.device)
        waveform[:, :longest] = torch.from_numpy(heard).to(self.device)
        return waveform

    def _log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Whisper's log-mel as its feature extractor computes it (the same STFT, filters and
        clamping), but on the model's device: on the CPU it took longer than the GPU pass."""
        stft = torch.stft(
            waveform, self.mel.n_fft, self.mel.hop_length, window=self._hann, return_complex=True
        )
        power = stft[..., :-1].abs() ** 2
        log = (self._mel_filters.T @ power).clamp(min=1e-10).log10()
        log = torch.maximum(log, log.amax(dim=(1, 2), keepdim=True) - 8.0)
        return ((log + 4.0) / 4.0).to(self.dtype)

    def _encode(self, waveform: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self._log_mel(waveform), output_hidden_states=True).hidden_states
        return torch.stack(hidden, dim=2)

    def prompts(self, features: torch.Tensor, positions: npt.NDArray[np.int64]) -> torch.Tensor:
        """(frames, tokens, width) from one window's features and each frame's positions in it
        ((frames, 10) with -1 for a zero feature)."""
        index = torch.from_numpy(np.maximum(positions, 0)).to(self.device)
        picked = features[index]  # (frames, 10, layers + 1, width)
        picked = (
            picked * torch.from_numpy(positions >= 0).to(self.device, self.dtype)[..., None, None]
        )
        return picked.flatten(1, 2)

    # -- generation -----------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, latents: torch.Tensor, prompts: torch.Tensor) -> U8:
        """(n, face, face, 3) uint8 faces from (n, 8, s, s) latents and (n, tokens, width)."""
        conditioning = prompts + self._positions
        graphs = self.face_graphs
        images = graphs(latents, conditioning) if graphs is not None else None
        if images is None:
            images = self._face(latents, conditioning)
        out: U8 = images.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return out

    def _face(self, latents: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        """The UNet's one step and the VAE's decode: (n, 3, face, face) in 0..255, rounded."""
        predicted = self.unet(latents, self._timestep, encoder_hidden_states=conditioning).sample
        images: torch.Tensor = self.vae.decode(predicted / LATENT_SCALE).sample
        return ((images.float() + 1.0) * 127.5).clamp(0, 255).round()
