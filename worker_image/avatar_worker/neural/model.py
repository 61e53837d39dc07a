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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from transformers import WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from avatar_worker.neural import checkpoint, layout
from avatar_worker.neural.config import CONFIGS, LATENT_SCALE, TIMESTEP, ModelConfig

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

    @classmethod
    def load(cls, directory: Path) -> MuseTalk:
        return cls(load_networks(directory))

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

    def log_mel(self, windows: list[npt.NDArray[np.float32]]) -> torch.Tensor:
        """(n, 80, frames) for 16 kHz windows of the encoder's length."""
        features = self.mel(
            windows, sampling_rate=self.mel.sampling_rate, return_tensors="np"
        ).input_features
        return torch.from_numpy(np.asarray(features)).to(self.device, self.dtype)

    @torch.inference_mode()
    def audio_features(self, mel: torch.Tensor) -> torch.Tensor:
        """(n, features, layers + 1, width): every hidden state of the encoder."""
        hidden = self.encoder(mel, output_hidden_states=True).hidden_states
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
        predicted = self.unet(latents, TIMESTEP, encoder_hidden_states=conditioning).sample
        images = self.vae.decode(predicted / LATENT_SCALE).sample
        images = ((images.float() + 1.0) * 127.5).clamp(0, 255).round()
        out: U8 = images.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return out
