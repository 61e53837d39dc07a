"""The model volume: the published layout and checkpoint formats, the manifest, and the errors
that name a missing or corrupt file and say how to obtain it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avatar_crds.enums import AspectRatio, FailureReason, Quality
from avatar_worker.errors import WorkerError
from avatar_worker.neural import checkpoint, layout
from avatar_worker.neural.cli import main
from avatar_worker.neural.config import FULL, TINY
from avatar_worker.neural.layout import ModelFilesError
from avatar_worker.render import build_renderer
from avatar_worker.render.resolution import video_format
from worker_image.tests.neural_support import astronaut, write_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def copy(tiny: Path, tmp_path: Path) -> Path:
    for model_file in (*layout.FILES, layout.ModelFile(layout.MANIFEST, "")):
        target = tmp_path / model_file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((tiny / model_file.path).read_bytes())
    return tmp_path


def test_verify_passes_on_a_complete_directory(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(tiny)]) == 0
    out = capsys.readouterr().out
    for model_file in layout.FILES:
        assert f"checking {model_file.path}" in out


def test_verify_names_a_missing_file_and_its_source(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (copy / layout.VAE_WEIGHTS.path).unlink()
    assert main(["verify", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "sd-vae/diffusion_pytorch_model.bin: missing" in err
    assert "stabilityai/sd-vae-ft-mse" in err


@pytest.mark.parametrize("same_size", [True, False])
def test_verify_names_a_corrupt_file(
    copy: Path, capsys: pytest.CaptureFixture[str], same_size: bool
) -> None:
    path = copy / layout.UNET_WEIGHTS.path
    data = bytearray(path.read_bytes())
    if same_size:
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[:-10]
    path.write_bytes(bytes(data))
    assert main(["verify", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "musetalkV15/unet.pth: corrupt" in err
    assert "TMElyralab/MuseTalk" in err


def test_a_missing_manifest_says_how_to_write_one(copy: Path) -> None:
    (copy / layout.MANIFEST).unlink()
    with pytest.raises(ModelFilesError, match=r"manifest\.json: missing.*facecast-models manifest"):
        layout.verify(copy)
    assert main(["manifest", str(copy)]) == 0
    layout.verify(copy)


def test_the_worker_fails_model_unavailable_naming_the_file(copy: Path) -> None:
    (copy / layout.WHISPER_WEIGHTS.path).unlink()
    fmt = video_format(Quality.STANDARD, AspectRatio.LANDSCAPE)
    with pytest.raises(WorkerError) as raised:
        build_renderer(Quality.STANDARD, fmt, astronaut, models=copy)
    assert raised.value.reason is FailureReason.MODEL_UNAVAILABLE
    assert "whisper/pytorch_model.bin" in raised.value.message
    assert "openai/whisper-tiny" in raised.value.message


def test_weights_that_do_not_fit_their_config_are_named(copy: Path) -> None:
    path = copy / layout.UNET_WEIGHTS.path
    state = torch.load(path, weights_only=True)
    state["conv_in.weight"] = torch.zeros(1, 1, 3, 3)
    torch.save(state, path)
    with pytest.raises(ModelFilesError, match=r"musetalkV15/unet\.pth: does not match its config"):
        checkpoint.load_unet(copy)


def test_the_files_use_the_published_formats_and_key_names(tiny: Path) -> None:
    unet = torch.load(tiny / layout.UNET_WEIGHTS.path, weights_only=True)
    assert unet["conv_in.weight"].shape[1] == 8  # masked face latent + reference latent
    assert unet["conv_out.weight"].shape[0] == 4
    cross = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    assert unet[cross].shape[1] == TINY.audio_dim
    vae = torch.load(tiny / layout.VAE_WEIGHTS.path, weights_only=True)
    assert "decoder.mid_block.attentions.0.query.weight" in vae  # sd-vae-ft-mse's old names
    assert "decoder.mid_block.attentions.0.to_q.weight" not in vae
    whisper = torch.load(tiny / layout.WHISPER_WEIGHTS.path, weights_only=True)
    assert "model.encoder.conv1.weight" in whisper
    assert "model.decoder.embed_tokens.weight" in whisper
    assert checkpoint.read_config(tiny, layout.UNET_CONFIG)["in_channels"] == 8


def test_the_full_config_is_musetalk_v15() -> None:
    assert FULL.unet["block_out_channels"] == [320, 640, 1280, 1280]
    assert FULL.unet["cross_attention_dim"] == 384
    assert FULL.unet["sample_size"] == 32  # 256 px face / 8
    assert FULL.vae["block_out_channels"] == [128, 256, 512, 512]
    assert FULL.whisper["encoder_layers"] == 4
    assert FULL.whisper_window_s == 30.0
    assert FULL.audio_layers == 5  # embeddings + 4 layers: 10 x 5 = 50 tokens per frame
