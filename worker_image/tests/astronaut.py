"""The astronaut portrait the tests and benches render: light on imports (no LiveKit, no
worker), so a bench can take it to a machine that has only the renderer's libraries."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from skimage import data as skdata

from avatar_crds.avatar import Box, Face, Point

# skimage.data.astronaut() (512x512, Eileen Collins): face box and the five landmarks
# (eyes, nose tip, mouth corners), measured by hand on the image; test_lite_renderer checks
# them against the pixels and against skimage's own face detector.
ASTRONAUT_FACE = Face(
    box=Box(x=178, y=62, width=92, height=122),
    landmarks=[
        Point(x=203, y=101.5),
        Point(x=246, y=103),
        Point(x=224, y=127),
        Point(x=204, y=141),
        Point(x=243, y=142),
    ],
    score=1.0,
    detector="hand-measured",
)


def astronaut_rgb() -> npt.NDArray[np.uint8]:
    image: npt.NDArray[np.uint8] = skdata.astronaut()  # type: ignore[no-untyped-call]
    return image
