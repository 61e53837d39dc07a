"""The three networks built from their published configs and loaded from (or saved to) the
published checkpoint files, with the published key names (torch I/O).

- UNet: `musetalk.json` (diffusers UNet2DConditionModel config) and `unet.pth`, a plain
  state dict of that model.
- VAE: diffusers' `config.json` and `diffusion_pytorch_model.bin`. The sd-vae-ft-mse file
  predates diffusers' attention rename, so its mid-block attention is `query/key/value/
  proj_attn`; diffusers' own key fix-up maps those to the current names on load, and
  `write_tiny` writes them the old way so that path is tested.
- Whisper: transformers' `config.json` and `pytorch_model.bin` of WhisperForConditionalGeneration
  (keys `model.encoder.*`, `model.decoder.*`, `proj_out.*`); only the encoder is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from avatar_worker.neural import layout
from avatar_worker.neural.config import MEL_HOP, WHISPER_SAMPLE_RATE, ModelConfig
from avatar_worker.neural.layout import ModelFile, ModelFilesError

_ENCODER_PREFIX = "model.encoder."
_OLD_ATTENTION_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
_VAE_ATTENTIONS = ("encoder.mid_block.attentions.0.", "decoder.mid_block.attentions.0.")


def read_config(directory: Path, model_file: ModelFile) -> dict[str, Any]:
    path = directory / model_file.path
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelFilesError(model_file.path, "missing", model_file.source) from exc
    except (OSError, ValueError) as exc:
        raise ModelFilesError(model_file.path, f"unreadable ({exc})", model_file.source) from exc
    if not isinstance(data, dict):
        raise ModelFilesError(model_file.path, "not a JSON object", model_file.source)
    return data


def read_state_dict(directory: Path, model_file: ModelFile) -> dict[str, torch.Tensor]:
    path = directory / model_file.path
    if not path.is_file():
        raise ModelFilesError(model_file.path, "missing", model_file.source)
    try:
        # weights_only: a checkpoint is data; never run code from the volume.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged pickle or zip
        raise ModelFilesError(
            model_file.path, f"unreadable ({type(exc).__name__})", model_file.source
        ) from exc
    if not isinstance(state, dict):
        raise ModelFilesError(model_file.path, "not a state dict", model_file.source)
    return state


def _load(module: torch.nn.Module, state: dict[str, torch.Tensor], model_file: ModelFile) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[1:2] or [str(exc)[:200]]
        raise ModelFilesError(
            model_file.path,
            f"does not match its config: {first[0].strip()}",
            model_file.source,
        ) from exc


# diffusers' models are torch Modules that mypy cannot see as such (untyped `from_config`,
# dynamic bases): they are handled as `Any` past this point.
def build_unet(config: dict[str, Any]) -> Any:
    return UNet2DConditionModel.from_config(_public(config))  # type: ignore[no-untyped-call]


def build_vae(config: dict[str, Any]) -> Any:
    return AutoencoderKL.from_config(_public(config))  # type: ignore[no-untyped-call]


def whisper_config(config: dict[str, Any]) -> WhisperConfig:
    return WhisperConfig(**{k: v for k, v in config.items() if k not in ("model_type",)})


def _public(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def load_unet(directory: Path) -> Any:
    unet = build_unet(read_config(directory, layout.UNET_CONFIG))
    _load(unet, read_state_dict(directory, layout.UNET_WEIGHTS), layout.UNET_WEIGHTS)
    return unet


def load_vae(directory: Path) -> Any:
    vae = build_vae(read_config(directory, layout.VAE_CONFIG))
    state = read_state_dict(directory, layout.VAE_WEIGHTS)
    vae._fix_state_dict_keys_on_load(state)  # old attention names -> current ones
    _load(vae, state, layout.VAE_WEIGHTS)
    return vae


def load_whisper_encoder(directory: Path) -> WhisperEncoder:
    config = whisper_config(read_config(directory, layout.WHISPER_CONFIG))
    state = read_state_dict(directory, layout.WHISPER_WEIGHTS)
    encoder_state = {
        key.removeprefix(_ENCODER_PREFIX): value
        for key, value in state.items()
        if key.startswith(_ENCODER_PREFIX)
    }
    if not encoder_state:
        raise ModelFilesError(
            layout.WHISPER_WEIGHTS.path,
            f"holds no {_ENCODER_PREFIX}* keys (not a Whisper checkpoint)",
            layout.WHISPER_WEIGHTS.source,
        )
    encoder = WhisperEncoder(config)
    _load(encoder, encoder_state, layout.WHISPER_WEIGHTS)
    return encoder


def load_mel(directory: Path, config: dict[str, Any]) -> WhisperFeatureExtractor:
    """The log-mel front end, checked against the encoder's input length."""
    settings = read_config(directory, layout.WHISPER_MEL)
    mel = WhisperFeatureExtractor(  # type: ignore[no-untyped-call]
        **{k: v for k, v in settings.items() if not k.startswith(("_", "processor_class"))}
    )
    frames = 2 * int(config["max_source_positions"])
    if mel.nb_max_frames != frames or mel.sampling_rate != WHISPER_SAMPLE_RATE:
        raise ModelFilesError(
            layout.WHISPER_MEL.path,
            f"gives {mel.nb_max_frames} mel frames at {mel.sampling_rate} Hz, "
            f"the encoder takes {frames} at {WHISPER_SAMPLE_RATE} Hz",
            layout.WHISPER_MEL.source,
        )
    return mel


# -- writing (facecast-models write-tiny, tests, the bench) --------------------------------


def _save_json(directory: Path, model_file: ModelFile, data: dict[str, Any]) -> None:
    path = directory / model_file.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _save_state(directory: Path, model_file: ModelFile, state: dict[str, torch.Tensor]) -> None:
    path = directory / model_file.path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone().contiguous() for k, v in state.items()}, path)


def _old_vae_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in _VAE_ATTENTIONS:
            for new, old in _OLD_ATTENTION_NAMES.items():
                if key.startswith(prefix + new + "."):
                    key = prefix + old + key[len(prefix + new) :]
        out[key] = value
    return out


def write_random(directory: Path, config: ModelConfig, seed: int = 0) -> None:
    """A randomly initialised model of `config` in the published layout and file formats."""
    torch.manual_seed(seed)
    _save_json(directory, layout.UNET_CONFIG, config.unet)
    _save_state(directory, layout.UNET_WEIGHTS, build_unet(config.unet).state_dict())
    _save_json(directory, layout.VAE_CONFIG, config.vae)
    vae_state = build_vae(config.vae).state_dict()
    _save_state(directory, layout.VAE_WEIGHTS, _old_vae_names(vae_state))
    _save_json(directory, layout.WHISPER_CONFIG, config.whisper)
    whisper = WhisperForConditionalGeneration(whisper_config(config.whisper))
    _save_state(directory, layout.WHISPER_WEIGHTS, whisper.state_dict())
    window_s = int(config.whisper_window_s)
    mel = {
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": 80,
        "sampling_rate": WHISPER_SAMPLE_RATE,
        "hop_length": MEL_HOP,
        "chunk_length": window_s,
        "n_fft": 400,
        "n_samples": window_s * WHISPER_SAMPLE_RATE,
        "nb_max_frames": window_s * WHISPER_SAMPLE_RATE // MEL_HOP,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": False,
    }
    _save_json(directory, layout.WHISPER_MEL, mel)
    layout.write_manifest(directory)
