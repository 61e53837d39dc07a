"""Sizes of the MuseTalk v1.5 networks (pure: plain data, no torch).

`FULL` is the published architecture: the UNet of `musetalkV15/musetalk.json` (Stable
Diffusion 1.x's UNet with 8 input channels, the masked face latent and the reference latent,
4 output channels and cross-attention over 384-wide whisper features), the sd-vae-ft-mse
autoencoder and whisper-tiny's encoder. `TINY` is the same architecture scaled down (fewer and
narrower blocks, a 64x64 face, a 2 s whisper window) so tests and the CPU bench run in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Feature frames per second of whisper's encoder (mel hop 10 ms, one stride-2 convolution).
AUDIO_FPS = 50
WHISPER_SAMPLE_RATE = 16000
MEL_HOP = 160
# The UNet is not a diffusion step: MuseTalk runs it once, at this fixed timestep.
TIMESTEP = 0
# The VAE's latent scale (Stable Diffusion 1.x).
LATENT_SCALE = 0.18215


def _unet(
    channels: tuple[int, ...], layers: int, heads: int, groups: int, audio_dim: int, face: int
) -> dict[str, Any]:
    depth = len(channels)
    return {
        "_class_name": "UNet2DConditionModel",
        "act_fn": "silu",
        "attention_head_dim": heads,
        "block_out_channels": list(channels),
        "center_input_sample": False,
        "cross_attention_dim": audio_dim,
        "down_block_types": ["CrossAttnDownBlock2D"] * (depth - 1) + ["DownBlock2D"],
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 8,
        "layers_per_block": layers,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": groups,
        "out_channels": 4,
        "sample_size": face // 8,
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (depth - 1),
    }


def _vae(channels: tuple[int, ...], layers: int, groups: int, face: int) -> dict[str, Any]:
    return {
        "_class_name": "AutoencoderKL",
        "act_fn": "silu",
        "block_out_channels": list(channels),
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": layers,
        "norm_num_groups": groups,
        "out_channels": 3,
        "sample_size": face,
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
    }


def _whisper(
    width: int, layers: int, heads: int, ffn: int, positions: int, vocab: int
) -> dict[str, Any]:
    return {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "d_model": width,
        "encoder_layers": layers,
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": ffn,
        "decoder_layers": layers,
        "decoder_attention_heads": heads,
        "decoder_ffn_dim": ffn,
        "num_mel_bins": 80,
        "max_source_positions": positions,
        "max_target_positions": 448,
        "vocab_size": vocab,
        # Token ids sit at the end of the vocabulary (whisper-tiny: 50257, 50258).
        "bos_token_id": vocab - 8,
        "eos_token_id": vocab - 8,
        "pad_token_id": vocab - 8,
        "decoder_start_token_id": vocab - 7,
        "activation_function": "gelu",
        "scale_embedding": False,
    }


@dataclass(frozen=True)
class ModelConfig:
    name: str
    face_size: int  # side of the square face crop the VAE sees, pixels
    unet: dict[str, Any] = field(hash=False)
    vae: dict[str, Any] = field(hash=False)
    whisper: dict[str, Any] = field(hash=False)
    # Video frames of audio context either side of a frame (MuseTalk v1.5: 2 and 2).
    pad_left: int = 2
    pad_right: int = 2
    # Seconds of past audio the encoder hears before a batch's first frame.
    history_s: float = 4.0

    @property
    def audio_dim(self) -> int:
        return int(self.whisper["d_model"])

    @property
    def audio_layers(self) -> int:
        """Hidden states MuseTalk stacks: the embeddings plus every encoder layer's output."""
        return int(self.whisper["encoder_layers"]) + 1

    @property
    def whisper_window_s(self) -> float:
        """Audio the encoder takes in one pass (whisper-tiny: 30 s, padded with silence)."""
        return int(self.whisper["max_source_positions"]) / AUDIO_FPS

    @property
    def latent_size(self) -> int:
        return self.face_size // 8


FULL = ModelConfig(
    name="full",
    face_size=256,
    unet=_unet((320, 640, 1280, 1280), layers=2, heads=8, groups=32, audio_dim=384, face=256),
    vae=_vae((128, 256, 512, 512), layers=2, groups=32, face=256),
    whisper=_whisper(384, layers=4, heads=6, ffn=1536, positions=1500, vocab=51865),
)

TINY = ModelConfig(
    name="tiny",
    face_size=64,
    unet=_unet((32, 64), layers=1, heads=8, groups=8, audio_dim=32, face=64),
    vae=_vae((8, 16, 16, 16), layers=1, groups=4, face=64),
    whisper=_whisper(32, layers=2, heads=2, ffn=64, positions=100, vocab=64),
    history_s=1.0,
)

CONFIGS = {c.name: c for c in (FULL, TINY)}
