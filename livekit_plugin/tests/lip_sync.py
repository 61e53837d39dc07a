"""How well a mouth follows speech, from what a viewer received: pure functions, no I/O.

Time is cut into 40 ms bins (one frame at 25 fps). In each bin, the mouth is the mean opening
stamped in the frames that arrived in it (the `mock` tier writes each frame's mouth level, taken
from that frame's own audio) and the sound is the level (dBFS) of the audio that arrived in it.
They are compared by rank correlation (the opening grows with loudness, not in proportion).

The sound's delay at a viewer is not constant: on a loaded machine it grew by 100-200 ms over a
few seconds in our runs (buffers at the receiving end filling up), and a viewer that does not
sync its audio and video sees that as drift. So the mouth is matched to the sound segment by segment
(`SEGMENT_S`), each at its own lag within +-320 ms, the lags of neighbouring segments at most one
bin apart (a slow drift, not a free choice per segment, which would let any rhythmic mouth find
some match); lip-sync is the mean correlation along the best such path, and the lag its median.

A mouth that ignores the audio can still open and close at a speaking rhythm and score well on a
coarse measure (for espeak-ng, "speaking" and "heard" agree on about three bins in four with any
moment of the same speech). So each measurement comes with its own baseline: the same measure of
the same mouth series taken from another moment of the same speech (circularly shifted by at
least `MIN_SHIFT_S`), the best of all such shifts. It keeps the mouth's rhythm and statistics,
not its timing; a bound between the two is one a broken lip-sync fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BIN_S = 0.04
MAX_LAG_BINS = 8  # +-320 ms
SEGMENT_S = 1.28  # 32 bins: enough for a correlation, short against the drift of the delay
MAX_DRIFT_BINS = 1  # between neighbouring segments: 40 ms per 1.28 s
MIN_SEGMENTS = 3
MIN_SHIFT_S = 1.0  # longer than a syllable or two: the unrelated mouth is really elsewhere
SILENCE_DBFS = -60.0  # the floor of the sound level: digital silence is not minus infinity
# The least correlation that counts as following the speech. Measured through the whole local
# stack (mock tier, espeak-ng, 5 s of speech): the real mouth 0.79-0.90 on a quiet machine and
# 0.61-0.78 on one loaded by other tests; the same mouth at another moment at best 0.30-0.42.
# On espeak-ng speech with known mouths (test_lip_sync.py): 0.88 following, 0.91 with a drifting
# delay, 0.30 for a mouth of other speech, 0.25 for one 600 ms late. The bound sits in the gap.
FOLLOWS = 0.55

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LipSync:
    lag_ms: float  # video minus audio arrival: negative when the sound comes after the picture
    correlation: float  # of mouth opening and sound level, the mean over the segments
    unrelated: float  # the best the same measure gives the same mouth at another moment


def _bins(start: float, end: float) -> int:
    return int((end - start) / BIN_S) + 1


def binned_mouth(stamps: Iterable[tuple[float, int]], start: float, end: float) -> Floats:
    """Mean mouth opening of the frames that arrived in each bin; NaN where none did."""
    total, count = np.zeros(_bins(start, end)), np.zeros(_bins(start, end))
    for at, opening in stamps:
        if start <= at < end:
            index = int((at - start) / BIN_S)
            total[index] += opening
            count[index] += 1
    mouth = np.full(len(total), np.nan)
    np.divide(total, count, out=mouth, where=count > 0)
    return mouth


def binned_level(
    windows: Iterable[tuple[float, npt.NDArray[np.int16]]], start: float, end: float
) -> Floats:
    """Level (dBFS) of the audio that arrived in each bin; NaN where none did."""
    energy, count = np.zeros(_bins(start, end)), np.zeros(_bins(start, end))
    for at, samples in windows:
        if start <= at < end and len(samples):
            index = int((at - start) / BIN_S)
            energy[index] += float(np.sum((samples.astype(np.float64) / 32768.0) ** 2))
            count[index] += len(samples)
    level = np.full(len(energy), np.nan)
    heard = count > 0
    power = np.maximum(energy[heard] / count[heard], 10 ** (SILENCE_DBFS / 10))
    level[heard] = 10 * np.log10(power)
    return level


def correlation(a: Floats, b: Floats) -> float:
    """Pearson correlation over the bins both have; 0 where either is constant (a mouth that
    never moves follows nothing)."""
    both = ~np.isnan(a) & ~np.isnan(b)
    if both.sum() < 3:
        return 0.0
    x, y = _ranks(a[both]), _ranks(b[both])
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _ranks(values: Floats) -> Floats:
    """Ranks, ties sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    _, group = np.unique(values, return_inverse=True)
    mean_rank: Floats = np.bincount(group, ranks) / np.bincount(group)
    return mean_rank[group]


def delayed(series: Floats, lag: int) -> Floats:
    """`series` moved `lag` bins later (NaN where it has nothing)."""
    out = np.full(len(series), np.nan)
    if lag >= 0:
        out[lag:] = series[: len(series) - lag]
    else:
        out[:lag] = series[-lag:]
    return out


def best_lag(mouth: Floats, level: Floats) -> tuple[int, float]:
    """The lag (bins) at which the mouth best matches the sound, and that correlation."""
    scores = [(correlation(mouth, delayed(level, lag)), lag) for lag in _lags()]
    score, lag = max(scores)
    return lag, score


def _lags() -> range:
    return range(-MAX_LAG_BINS, MAX_LAG_BINS + 1)


def _segments(mouth: Floats, level: Floats) -> tuple[float, float]:
    """The median lag (bins) and the mean correlation along the best path of segment lags."""
    size = round(SEGMENT_S / BIN_S)
    delays = [delayed(level, lag) for lag in _lags()]
    table = np.array(
        [
            [correlation(mouth[i : i + size], d[i : i + size]) for d in delays]
            for i in _starts(len(mouth))
        ]
    )
    path, score = _best_path(table)
    return float(np.median(path)) - MAX_LAG_BINS, score


def _best_path(table: Floats) -> tuple[list[int], float]:
    """Column per segment (rows), neighbours at most `MAX_DRIFT_BINS` apart, maximising the
    mean of the chosen cells (dynamic programming)."""
    segments, columns = table.shape
    total = table[0].copy()
    came_from = np.zeros(table.shape, dtype=int)
    for row in range(1, segments):
        previous = total.copy()
        for column in range(columns):
            low = max(0, column - MAX_DRIFT_BINS)
            best = low + int(np.argmax(previous[low : column + MAX_DRIFT_BINS + 1]))
            came_from[row, column] = best
            total[column] = table[row, column] + previous[best]
    column = int(np.argmax(total))
    path = [column]
    for row in range(segments - 1, 0, -1):
        column = int(came_from[row, column])
        path.append(column)
    return path[::-1], float(total.max()) / segments


def _starts(bins: int) -> range:
    size = round(SEGMENT_S / BIN_S)
    return range(0, bins - size + 1, size)


def measure(mouth: Floats, level: Floats) -> LipSync:
    """The lag and correlation of the mouth, and the baseline of an unrelated one."""
    shift = round(MIN_SHIFT_S / BIN_S)
    if len(_starts(len(mouth))) < MIN_SEGMENTS or len(mouth) <= 2 * shift:
        raise ValueError(f"{len(mouth) * BIN_S:.1f} s is too short to tell sync from rhythm")
    lag, score = _segments(mouth, level)
    unrelated = max(
        _segments(np.roll(mouth, moved), level)[1] for moved in range(shift, len(mouth) - shift + 1)
    )
    return LipSync(lag_ms=lag * BIN_S * 1000, correlation=score, unrelated=unrelated)
