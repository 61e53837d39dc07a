"""The demo page in headless Chromium (Debian's, driven by playwright-core): a person presses
"Start a new session"; the page joins the room with the LiveKit JS client, the video element
plays, the page shows the session reach `running`, and while the avatar speaks two screenshots
a second apart differ in the mouth region. It uses the demo run that the command tests share
(whose Ctrl-C they check)."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.demo.stack_process import REAL_NODE_START_DEADLINE, DemoRun

# The shared demo run starts in the first of these tests: minutes on a cold machine.
pytestmark = pytest.mark.timeout(REAL_NODE_START_DEADLINE + 300)

SCRIPT = Path(__file__).with_name("browser_check.cjs")
# Mean absolute difference (0-255) in the mouth region that counts as "the mouth moved".
MOUTH_CHANGE = 2.0


def _mouth_crop(shot: Path, mouth: dict[str, float], video: dict[str, Any]) -> np.ndarray:
    image = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    # The element screenshot is the video scaled to the element (object-fit: contain).
    height, width = image.shape[:2]
    scale = min(width / video["videoWidth"], height / video["videoHeight"])
    left = (width - video["videoWidth"] * scale) / 2
    top = (height - video["videoHeight"] * scale) / 2
    x0, y0 = int(left + mouth["x"] * scale), int(top + mouth["y"] * scale)
    x1 = int(left + (mouth["x"] + mouth["width"]) * scale)
    y1 = int(top + (mouth["y"] + mouth["height"]) * scale)
    return image[max(y0, 0) : y1, max(x0, 0) : x1]


def test_page_plays_the_avatar_and_shows_running(
    tmp_path: Path, demo_run: DemoRun, web_packages: dict[str, str], chromium: str
) -> None:
    demo = demo_run.process
    assert demo.popen.poll() is None, f"the shared demo run has stopped:\n{demo.tail()}"
    url = demo.output[demo.seen("DEMO_PAGE_URL=")].split("=", 1)[1]
    out = tmp_path / "browser"
    out.mkdir()
    done = subprocess.run(
        ["node", str(SCRIPT), url, str(out)],
        env={**web_packages, "FACECAST_CHROMIUM": chromium, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    result = json.loads((out / "result.json").read_text())
    assert done.returncode == 0, f"{result.get('error')}\n{done.stderr}\n{demo.tail()}"
    print(
        f"TIMING page: POST /v1/sessions -> first frame in the page"
        f" {result['firstFrameMs'] / 1000:.2f} s (click -> first frame"
        f" {result['clickToFirstFrameMs'] / 1000:.2f} s)"
    )
    assert result["statusText"] == "running"
    video = result["video"]
    assert not video["paused"]
    assert video["readyState"] >= 2
    assert video["videoWidth"] > 0
    assert video["frames"] > 0
    crops = [_mouth_crop(Path(s["file"]), result["mouth"], video) for s in result["shots"]]
    assert crops[0].size > 0
    changes = [float(np.abs(a - b).mean()) for a, b in itertools.pairwise(crops)]
    print(f"mouth-region mean abs difference between shots 1 s apart: {changes}")
    assert max(changes) > MOUTH_CHANGE
