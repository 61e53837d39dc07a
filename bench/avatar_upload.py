"""Upload-face latency on the CPU: what POST /v1/avatars does with an image before it creates
the Avatar resource (decode with EXIF orientation, BlazeFace detection with both models, Face
Mesh landmarks, eye levelling, resize to 800 px, JPEG 85, and the atomic write into a store
directory), for portrait JPEGs of several sizes made from scikit-image's astronaut photo.

    uv run --frozen --no-sync python bench/avatar_upload.py [--requests 30 --max-seconds 60]

One request at a time on one thread (the API runs `FACECAST_AVATAR_THREADS` of these at once),
after a warm-up; each size stops after `--requests` or `--max-seconds`. Reported per size: p50
and p95 latency, and how the time splits between decoding, face analysis and alignment+encoding.
The Kubernetes create that follows is measured by bench/api_create.py. Not part of the test
suite; numbers depend on the machine (and on whatever else runs on it).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image
from skimage import data

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from api_shim.avatars.align import align_portrait  # noqa: E402
from api_shim.avatars.blazeface import BlazeFaceDetector  # noqa: E402
from api_shim.avatars.decode import decode_image  # noqa: E402
from api_shim.avatars.faces import FacePolicy, choose_face  # noqa: E402
from api_shim.avatars.store import FilesystemStore, image_key  # noqa: E402
from avatar_crds.ids import new_public_id  # noqa: E402

SIZES = (512, 1024, 2048, 4000)


def sample(name: str) -> npt.NDArray[np.uint8]:
    """One of scikit-image's sample photographs (its loaders are untyped)."""
    image: npt.NDArray[np.uint8] = getattr(data, name)()
    return image


def portrait_jpeg(side: int) -> bytes:
    image = Image.fromarray(sample("astronaut")).resize((side, side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def run(
    side: int, detector: BlazeFaceDetector, store: FilesystemStore, args: argparse.Namespace
) -> None:

    payload = portrait_jpeg(side)
    policy = FacePolicy()
    totals: list[float] = []
    parts: dict[str, list[float]] = {"decode": [], "faces": [], "align+encode+store": []}

    def once() -> None:
        started = time.perf_counter()
        decoded = decode_image(payload)
        decoded_at = time.perf_counter()
        faces = detector.detect(decoded.pixels)
        face = detector.refine(decoded.pixels, choose_face(faces, decoded.size, policy))
        faces_at = time.perf_counter()
        portrait = align_portrait(decoded.pixels, face)
        store.put(image_key("bench", new_public_id("av")), portrait.jpeg)
        done = time.perf_counter()
        totals.append(done - started)
        parts["decode"].append(decoded_at - started)
        parts["faces"].append(faces_at - decoded_at)
        parts["align+encode+store"].append(done - faces_at)

    for _ in range(args.warmup):
        once()
    totals.clear()
    for values in parts.values():
        values.clear()
    deadline = time.monotonic() + args.max_seconds
    while len(totals) < args.requests and time.monotonic() < deadline:
        once()
    split = ", ".join(f"{name} {statistics.median(v) * 1000:.1f}" for name, v in parts.items())
    print(
        f"{side:>5}x{side:<5} {len(payload) / 1e6:5.2f} MB  n={len(totals):<3}"
        f" p50 {percentile(totals, 50) * 1000:7.1f} ms  p95 {percentile(totals, 95) * 1000:7.1f} ms"
        f"   (median ms: {split})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30, help="uploads per image size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="per image size")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = parser.parse_args()
    loading = time.perf_counter()
    detector = BlazeFaceDetector()
    print(f"detector: {detector.name}, loaded in {(time.perf_counter() - loading) * 1000:.0f} ms")
    with tempfile.TemporaryDirectory(prefix="avatar-bench-") as root:
        store = FilesystemStore(root)
        for side in args.sizes:
            run(side, detector, store, args)


if __name__ == "__main__":
    main()
