"""Small numpy helpers shared by the lite renderer's parts: easing, sampling, colour."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
U32 = npt.NDArray[np.uint32]
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_EVEN = np.uint32(0x00FF00FF)  # bytes 0 and 2 of a packed pixel: one channel per 16-bit lane
_HALF = np.uint32(0x00800080)  # one half in each lane, to round


def smoothstep(x: npt.NDArray[np.floating[Any]] | float) -> F32:
    """0 below 0, 1 above 1, a smooth S in between."""
    t = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    out: F32 = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
    return out


def luma(rgb: npt.NDArray[np.generic]) -> F32:
    """Luminance (BT.601 weights) of RGB values in the last axis."""
    return (np.asarray(rgb, dtype=np.float32)[..., :3] @ LUMA).astype(np.float32)


def bilinear_packed(image: U32, xs: F32, ys: F32) -> U32:
    """`image` (h, w) of packed 8-bit RGBA sampled at float coordinates (clamped to the edges).

    The per-frame warp's inner loop: it works on whole pixels as uint32, two 8-bit channels
    per 16-bit lane, with weights in 1/256ths, so each interpolation is a few integer array
    operations instead of a float pass per channel. Integer coordinates return the pixel.
    """
    height, width = image.shape
    xs = np.clip(xs, 0.0, width - 1.001)
    ys = np.clip(ys, 0.0, height - 1.001)
    xi = xs.astype(np.int32)
    yi = ys.astype(np.int32)
    wx = ((xs - xi) * 256.0 + 0.5).astype(np.uint32)
    wy = ((ys - yi) * 256.0 + 0.5).astype(np.uint32)
    flat = image.reshape(-1)
    idx = yi * width + xi
    top = _lerp_packed(flat[idx], flat[idx + 1], wx)
    bottom = _lerp_packed(flat[idx + width], flat[idx + width + 1], wx)
    return _lerp_packed(top, bottom, wy)


def _lerp_packed(p: U32, q: U32, w: U32) -> U32:
    """p + (q - p) * w / 256 for every channel of packed RGBA, rounded."""
    iw = 256 - w
    even = (((p & _EVEN) * iw + (q & _EVEN) * w + _HALF) >> 8) & _EVEN
    odd = (((p >> 8) & _EVEN) * iw + ((q >> 8) & _EVEN) * w + _HALF) & (_EVEN << 8)
    out: U32 = (even | odd).astype(np.uint32, copy=False)  # already uint32; typed for mypy
    return out


def packed(rgba: U8) -> U32:
    """A C-contiguous (h, w, 4) uint8 image seen as (h, w) uint32, sharing its memory."""
    out: U32 = rgba.view(np.uint32).reshape(rgba.shape[:2])
    return out


def bilinear_float(image: npt.NDArray[np.generic], xs: F32, ys: F32) -> F32:
    """`image` (h, w, c) sampled at float coordinates (clamped to the edges), as float32."""
    height, width, channels = image.shape
    xs = np.clip(xs, 0.0, width - 1.001)
    ys = np.clip(ys, 0.0, height - 1.001)
    xi = xs.astype(np.int32)
    yi = ys.astype(np.int32)
    fx = (xs - xi)[..., None]
    fy = (ys - yi)[..., None]
    flat = image.reshape(-1, channels)
    idx = yi * width + xi
    a = flat[idx].astype(np.float32)
    b = flat[idx + 1].astype(np.float32)
    c = flat[idx + width].astype(np.float32)
    d = flat[idx + width + 1].astype(np.float32)
    top = a + (b - a) * fx
    bottom = c + (d - c) * fx
    out: F32 = top + (bottom - top) * fy
    return out


def box_blur(values: F32, radius: int) -> F32:
    """Mean over a (2r+1)^2 square, edges clamped: cheap de-noising for set-up analysis."""
    if radius <= 0:
        return values
    padded = np.pad(values, radius, mode="edge")
    size = 2 * radius + 1
    # Summed-area table: every window mean in four lookups.
    table = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1), dtype=np.float64)
    table[1:, 1:] = padded.cumsum(0).cumsum(1)
    h, w = values.shape
    total = (
        table[size : size + h, size : size + w]
        - table[:h, size : size + w]
        - table[size : size + h, :w]
        + table[:h, :w]
    )
    out: F32 = (total / (size * size)).astype(np.float32)
    return out


def region_median(image: npt.NDArray[np.uint8], center: tuple[float, float], half: float) -> F32:
    """Median RGB of the square of half-size `half` around `center` (clipped to the image)."""
    height, width = image.shape[:2]
    cx, cy = center
    r = max(1, round(half))
    x0, x1 = max(0, int(cx) - r), min(width, int(cx) + r + 1)
    y0, y1 = max(0, int(cy) - r), min(height, int(cy) + r + 1)
    patch = image[y0:y1, x0:x1, :3].reshape(-1, 3)
    if patch.size == 0:
        return np.full(3, 128.0, dtype=np.float32)
    out: F32 = np.median(patch, axis=0).astype(np.float32)
    return out
