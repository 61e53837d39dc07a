"""Sessions per GPU for the standard/pro renderer: MuseTalk v1.5 with random weights (they
cost the same as real ones), 256x256 face, fp16 on CUDA.

    uv run --frozen --no-sync python bench/gpu_renderer.py [--size full|tiny]
        [--sessions 1,2,4,8,12,16] [--seconds 5] [--stages 1,8,16] [--frame 960x720]

For each session count, that many sessions render back to back through one BatchRenderer,
each from its own thread as the frame clocks do (one frame per call). It prints the batched
pass's latency (whisper encoder, UNet, VAE decode for every session's frame) and whether the
sessions could all run at 25 fps: a pass must finish inside the 40 ms frame. Each session's
compositing (lite frame + paste, on the CPU in its own thread) overlaps the next pass. Then
the two halves of a pass (audio: log-mel and encoder; face: UNet and VAE) timed alone, at
--stages frames per pass.

Without a GPU it runs on the CPU in float32 at --size tiny (the default there), so a figure
exists on every machine; --size full on a CPU takes seconds per frame. Not part of the suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for worker_image.tests

from avatar_worker.neural.batch import BatchRenderer  # noqa: E402
from avatar_worker.neural.checkpoint import build_unet, build_vae, whisper_config  # noqa: E402
from avatar_worker.neural.config import (  # noqa: E402
    CONFIGS,
    MEL_HOP,
    WHISPER_SAMPLE_RATE,
    ModelConfig,
)
from avatar_worker.neural.model import MuseTalk, Networks, pick_device  # noqa: E402
from avatar_worker.neural.windowing import SAMPLES_PER_FEATURE  # noqa: E402
from avatar_worker.render.resolution import FPS  # noqa: E402
from worker_image.tests.neural_support import astronaut, speech_requests  # noqa: E402

FRAME_S = 1 / FPS


def random_networks(config: ModelConfig, device: torch.device) -> Networks:
    """Built straight on `device`: initialising the full UNet's weights on the CPU first takes
    longer than the measurement."""
    torch.manual_seed(0)
    mel = WhisperFeatureExtractor(  # type: ignore[no-untyped-call]
        chunk_length=int(config.whisper_window_s), hop_length=MEL_HOP
    )
    with device:
        return Networks(
            unet=build_unet(config.unet),
            vae=build_vae(config.vae),
            encoder=WhisperEncoder(whisper_config(config.whisper)),
            mel=mel,
        )


def run(model: MuseTalk, sessions: int, seconds: float, size: tuple[int, int]) -> None:
    batch = BatchRenderer(model, budget_s=None, gather_s=0.02)
    handles = [batch.register(astronaut(), size) for _ in range(sessions)]
    for handle in handles:  # warm up (kernels, allocator)
        handle.render(speech_requests(1))
    warm_passes = batch.stats.passes
    stop = time.monotonic() + seconds

    def clock(i: int) -> None:
        index = 1
        while time.monotonic() < stop:
            handles[i].render(speech_requests(1, seed=i, start=index))
            index += 1

    threads = [threading.Thread(target=clock, args=(i,)) for i in range(sessions)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    passes = batch.stats.seconds_per_pass[warm_passes:]
    per_pass = batch.stats.sessions_per_pass[warm_passes:]
    batch.close()
    if not passes:
        print(f"{sessions:>8}  no pass finished in {seconds} s")
        return
    mean, p95 = statistics.mean(passes), sorted(passes)[int(0.95 * (len(passes) - 1))]
    frames = sum(per_pass)
    verdict = "yes" if p95 < FRAME_S else "no"
    print(
        f"{sessions:>8}  {statistics.mean(per_pass):>9.1f}  {mean * 1e3:>8.1f}  {p95 * 1e3:>8.1f}"
        f"  {frames / wall:>8.1f}  {frames / wall / FPS:>10.1f}  {verdict:>9}"
    )


def stage_ms(model: MuseTalk, frames: int, repeats: int = 10) -> tuple[float, float]:
    """A pass's two halves at `frames` frames (one per session), each timed alone: audio (log-mel
    and whisper's encoder over every session's window) and face (UNet, VAE decode, copy out)."""
    rng = np.random.default_rng(0)
    # The history and a frame, as a pass sees them (the tiny model's window is shorter).
    heard = min(int(4.2 * WHISPER_SAMPLE_RATE), model.mel.n_samples)
    windows = [(rng.standard_normal(heard) * 0.1).astype(np.float32) for _ in range(frames)]
    positions = np.arange(10, dtype=np.int64)[None] + round(heard / SAMPLES_PER_FEATURE) - 10
    side = model.config.latent_size
    latents = torch.randn(frames, 8, side, side, device=model.device, dtype=model.dtype)

    def audio() -> torch.Tensor:
        features = model.features(windows)
        return torch.cat([model.prompts(features[i], positions) for i in range(frames)])

    prompts = audio()

    def timed(step: Callable[[], object]) -> float:
        for _ in range(2):
            step()
        synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            step()
        synchronize()
        return (time.perf_counter() - started) / repeats * 1e3

    return timed(audio), timed(lambda: model.generate(latents, prompts))


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    device, dtype = pick_device()
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--size", choices=sorted(CONFIGS), default="full" if device.type == "cuda" else "tiny"
    )
    parser.add_argument("--sessions", default="1,2,4,8,12,16")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--stages", default="1,8,16", help="frames per pass to time by stage")
    parser.add_argument("--eager", action="store_true", help="no CUDA graphs (to compare)")
    parser.add_argument("--frame", default="960x720", help="output frame (standard: 960x720)")
    args = parser.parse_args()
    config = CONFIGS[args.size]
    width, height = (int(v) for v in args.frame.split("x"))
    networks = random_networks(config, device)
    started = time.perf_counter()
    model = MuseTalk(networks, device=device, dtype=dtype, cuda_graphs=not args.eager)
    placed_s = time.perf_counter() - started
    name = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    captured = [g for g in (model.audio_graphs, model.face_graphs) if g is not None]
    graphs = f"{len(captured)} of 2 halves CUDA-graphed ({placed_s:.1f} s)" if captured else "eager"
    print(
        f"MuseTalk v1.5 ({config.name}: {config.face_size}px face), {graphs}, {dtype}, {name}, "
        f"{width}x{height}"
    )
    print("sessions  per pass  mean ms   p95 ms  frames/s  sessions@25  real time")
    for sessions in (int(s) for s in args.sessions.split(",") if s):
        run(model, sessions, args.seconds, (width, height))
    print("frames  audio ms  face ms  (one pass's halves, each timed alone)")
    for frames in (int(s) for s in args.stages.split(",") if s):
        audio_ms, face_ms = stage_ms(model, frames)
        print(f"{frames:>6}  {audio_ms:>8.1f}  {face_ms:>7.1f}")


if __name__ == "__main__":
    main()
