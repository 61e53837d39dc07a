"""Sessions per GPU for the standard/pro renderer: MuseTalk v1.5 with random weights (they
cost the same as real ones), 256x256 face, fp16 on CUDA.

    uv run --frozen --no-sync python bench/gpu_renderer.py [--size full|tiny]
        [--sessions 1,2,4,8,12,16] [--seconds 5]

For each session count, that many sessions render back to back through one BatchRenderer,
each from its own thread as the frame clocks do (one frame per call). It prints the batched
pass's latency (whisper encoder, UNet, VAE decode for every session's frame) and whether the
sessions could all run at 25 fps: a pass must finish inside the 40 ms frame. Each session's
compositing (lite frame + paste, on the CPU in its own thread) overlaps the next pass.

Without a GPU it runs on the CPU in float32 at --size tiny (the default there), so a figure
exists on every machine; --size full on a CPU takes seconds per frame. Not part of the suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
from transformers import WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for worker_image.tests

from avatar_worker.neural.batch import BatchRenderer  # noqa: E402
from avatar_worker.neural.checkpoint import build_unet, build_vae, whisper_config  # noqa: E402
from avatar_worker.neural.config import CONFIGS, MEL_HOP, ModelConfig  # noqa: E402
from avatar_worker.neural.model import MuseTalk, Networks, pick_device  # noqa: E402
from avatar_worker.render.resolution import FPS  # noqa: E402
from worker_image.tests.neural_support import astronaut, speech_requests  # noqa: E402

FRAME_S = 1 / FPS


def random_networks(config: ModelConfig) -> Networks:
    torch.manual_seed(0)
    mel = WhisperFeatureExtractor(  # type: ignore[no-untyped-call]
        chunk_length=int(config.whisper_window_s), hop_length=MEL_HOP
    )
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


def main() -> None:
    device, dtype = pick_device()
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--size", choices=sorted(CONFIGS), default="full" if device.type == "cuda" else "tiny"
    )
    parser.add_argument("--sessions", default="1,2,4,8,12,16")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--frame", default="960x720", help="output frame (standard: 960x720)")
    args = parser.parse_args()
    config = CONFIGS[args.size]
    width, height = (int(v) for v in args.frame.split("x"))
    model = MuseTalk(random_networks(config), device=device, dtype=dtype)
    name = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    face = f"{config.name}: {config.face_size}px face"
    print(f"MuseTalk v1.5 ({face}), {dtype}, {name}, {width}x{height}")
    print("sessions  per pass  mean ms   p95 ms  frames/s  sessions@25  real time")
    for sessions in (int(s) for s in args.sessions.split(",")):
        run(model, sessions, args.seconds, (width, height))


if __name__ == "__main__":
    main()
