"""Where the weights live on the model volume and how to check them (file I/O, no torch).

One directory per component, with the file names MuseTalk v1.5 publishes, so a platform team
can fill the volume with the publishers' own download commands:

    /models/
      manifest.json                        sha256 and size of every file below
      musetalkV15/musetalk.json            UNet config  (huggingface.co/TMElyralab/MuseTalk)
      musetalkV15/unet.pth                 UNet weights (same repository)
      sd-vae/config.json                   VAE config   (huggingface.co/stabilityai/sd-vae-ft-mse)
      sd-vae/diffusion_pytorch_model.bin   VAE weights  (same repository)
      whisper/config.json                  Whisper config (huggingface.co/openai/whisper-tiny)
      whisper/pytorch_model.bin            Whisper weights (same repository)
      whisper/preprocessor_config.json     log-mel settings (same repository)

`manifest.json` is written once the files are in place (`facecast-models manifest DIR`) and
checked by `facecast-models verify DIR` and by the worker before it loads anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
MANIFEST_SOURCE = "facecast-models manifest DIR, once the files below are downloaded"
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelFile:
    path: str  # relative to the model directory
    source: str  # how to obtain it


_MUSETALK = "huggingface-cli download TMElyralab/MuseTalk musetalkV15/{} --local-dir DIR"
_VAE = "huggingface-cli download stabilityai/sd-vae-ft-mse {} --local-dir DIR/sd-vae"
_WHISPER = "huggingface-cli download openai/whisper-tiny {} --local-dir DIR/whisper"

UNET_CONFIG = ModelFile("musetalkV15/musetalk.json", _MUSETALK.format("musetalk.json"))
UNET_WEIGHTS = ModelFile("musetalkV15/unet.pth", _MUSETALK.format("unet.pth"))
VAE_CONFIG = ModelFile("sd-vae/config.json", _VAE.format("config.json"))
VAE_WEIGHTS = ModelFile(
    "sd-vae/diffusion_pytorch_model.bin", _VAE.format("diffusion_pytorch_model.bin")
)
WHISPER_CONFIG = ModelFile("whisper/config.json", _WHISPER.format("config.json"))
WHISPER_WEIGHTS = ModelFile("whisper/pytorch_model.bin", _WHISPER.format("pytorch_model.bin"))
WHISPER_MEL = ModelFile(
    "whisper/preprocessor_config.json", _WHISPER.format("preprocessor_config.json")
)

FILES = (
    UNET_CONFIG,
    UNET_WEIGHTS,
    VAE_CONFIG,
    VAE_WEIGHTS,
    WHISPER_CONFIG,
    WHISPER_WEIGHTS,
    WHISPER_MEL,
)


class ModelFilesError(Exception):
    """A weights file is missing, corrupt or unreadable; the message names it and its source."""

    def __init__(self, path: str, problem: str, source: str | None = None) -> None:
        how = f"; obtain it with: {source}" if source else ""
        super().__init__(f"model file {path}: {problem}{how}")
        self.path = path
        self.problem = problem


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_READ_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path) -> dict[str, dict[str, str | int]]:
    """Hash every published file in `directory` into its manifest; a missing file is an error."""
    entries: dict[str, dict[str, str | int]] = {}
    for model_file in FILES:
        path = directory / model_file.path
        if not path.is_file():
            raise ModelFilesError(model_file.path, "missing", model_file.source)
        entries[model_file.path] = {"sha256": sha256_of(path), "bytes": path.stat().st_size}
    manifest = {"format": MANIFEST_FORMAT, "files": entries}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return entries


def read_manifest(directory: Path) -> dict[str, dict[str, object]]:
    path = directory / MANIFEST
    if not path.is_file():
        raise ModelFilesError(MANIFEST, f"missing in {directory}", MANIFEST_SOURCE)
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        if data.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError("unknown format")
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFilesError(MANIFEST, f"unreadable ({exc})", MANIFEST_SOURCE) from exc
    return files


def verify(directory: Path, progress: Callable[[str], None] = lambda _: None) -> None:
    """Every published file present, with the size and sha256 its manifest records."""
    entries = read_manifest(directory)
    for model_file in FILES:
        progress(model_file.path)
        entry = entries.get(model_file.path)
        if entry is None:
            raise ModelFilesError(model_file.path, f"not listed in {MANIFEST}", model_file.source)
        for problem in _problems(directory / model_file.path, entry):
            raise ModelFilesError(model_file.path, problem, model_file.source)


def _problems(path: Path, entry: dict[str, object]) -> Iterator[str]:
    if not path.is_file():
        yield "missing"
        return
    size = path.stat().st_size
    if size != entry.get("bytes"):
        yield f"corrupt: {size} bytes, the manifest says {entry.get('bytes')}"
        return
    if sha256_of(path) != entry.get("sha256"):
        yield "corrupt: its sha256 differs from the manifest's"
