"""tools/cache.sh: cache folders keyed by old lock files go once unused for the keep period;
the current one, recent ones and builds in progress stay."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

CACHE_SH = Path(__file__).resolve().parents[2] / "tools" / "cache.sh"
DAY = 86400.0


def make(parent: Path, name: str, *, age_days: float, marker_age_days: float | None) -> Path:
    folder = parent / name
    (folder / "bin").mkdir(parents=True)
    then = time.time() - age_days * DAY
    os.utime(folder, (then, then))
    if marker_age_days is not None:
        marker = folder / ".facecast-last-used"
        marker.touch()
        used = time.time() - marker_age_days * DAY
        os.utime(marker, (used, used))
        os.utime(folder, (then, then))  # the marker's creation touched the folder
    return folder


def prune(parent: Path, keep: str, keep_days: int = 14) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'source "{CACHE_SH}" && prune_stale "$1" "$2"', "-", parent, keep],
        env={**os.environ, "FACECAST_CACHE_KEEP_DAYS": str(keep_days)},
        capture_output=True,
        text=True,
        check=True,
    )


def test_stale_siblings_go_and_everything_else_stays(tmp_path: Path) -> None:
    current = make(tmp_path, "current", age_days=60, marker_age_days=None)
    recent = make(tmp_path, "recent", age_days=60, marker_age_days=2)
    stale = make(tmp_path, "stale", age_days=60, marker_age_days=30)
    unmarked_old = make(tmp_path, "unmarked-old", age_days=30, marker_age_days=None)
    unmarked_new = make(tmp_path, "unmarked-new", age_days=1, marker_age_days=None)
    building = make(tmp_path, "next.partial", age_days=60, marker_age_days=None)

    done = prune(tmp_path, "current")

    kept = [current, recent, unmarked_new, building]
    assert [folder for folder in kept if not folder.is_dir()] == []
    assert [folder for folder in (stale, unmarked_old) if folder.exists()] == []
    assert sorted(line for line in done.stderr.splitlines() if "removing" in line) == [
        f"==> removing {stale} (unused for over 14 days)",
        f"==> removing {unmarked_old} (unused for over 14 days)",
    ]
    # The current folder is marked as used now, so it survives the next lock change.
    marker = current / ".facecast-last-used"
    assert time.time() - marker.stat().st_mtime < 60


def test_the_keep_period_is_a_setting(tmp_path: Path) -> None:
    make(tmp_path, "current", age_days=0, marker_age_days=None)
    week_old = make(tmp_path, "week-old", age_days=8, marker_age_days=8)

    prune(tmp_path, "current", keep_days=14)
    assert week_old.is_dir()
    prune(tmp_path, "current", keep_days=7)
    assert not week_old.exists()
