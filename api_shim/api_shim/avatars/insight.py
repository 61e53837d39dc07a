"""insightface, with a model pack the platform operator supplies (its pretrained packs are for
non-commercial use, so none is bundled): a directory of ONNX models (for example buffalo_l's
det_10g.onnx) or an insightface model-package manifest, baked into the image or mounted, named by
FACECAST_FACE_MODEL_DIR. Only its detector is used: SCRFD boxes with the five keypoints (eye
centres, nose tip, mouth corners), which are the Avatar contract's landmarks as they are.

Nothing is ever downloaded: a missing directory is a configuration error at start-up, never a
fetch from the internet.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from api_shim.avatars.faces import RGB, DetectedFace, clip_box, order_landmarks

DETECTOR_PREFIX = "insightface:"
DEFAULT_DET_SIZE = (640, 640)


class ModelPackError(RuntimeError):
    """The configured model directory cannot serve as a face detector."""


class InsightFaceDetector:
    def __init__(
        self,
        model_dir: str | Path,
        *,
        det_size: tuple[int, int] = DEFAULT_DET_SIZE,
        det_thresh: float = 0.5,
    ) -> None:
        root = Path(model_dir)
        if not root.is_dir():
            # FaceAnalysis would try to download a pack of that name; never let it.
            raise ModelPackError(f"face model directory {root} does not exist")
        if not any(root.glob("*.onnx")) and not any(root.glob("*.json")):
            raise ModelPackError(f"face model directory {root} holds no ONNX model")
        from insightface.app import FaceAnalysis

        try:
            self._app: Any = FaceAnalysis(
                name=str(root.resolve()),
                allowed_modules=["detection"],
                providers=["CPUExecutionProvider"],
            )
        except AssertionError as error:  # its way of saying "no detection model in there"
            raise ModelPackError(f"no face detection model in {root}") from error
        detector = self._app.det_model
        if not getattr(detector, "use_kps", False):
            raise ModelPackError(f"the detection model in {root} gives no facial keypoints")
        self._app.prepare(ctx_id=-1, det_thresh=det_thresh, det_size=det_size)
        self.name = (DETECTOR_PREFIX + root.name)[:64]
        self._lock = threading.Lock()

    def detect(self, image: RGB) -> list[DetectedFace]:
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        with self._lock:
            found = self._app.get(bgr)
        size = (int(image.shape[1]), int(image.shape[0]))
        faces = []
        for face in found:
            x0, y0, x1, y1 = (float(v) for v in face.bbox[:4])
            box = clip_box((x0, y0, x1 - x0, y1 - y0), size)
            if box[2] <= 0 or box[3] <= 0 or face.kps is None:
                continue
            kps = np.asarray(face.kps, dtype=np.float64).reshape(5, 2)
            landmarks = order_landmarks(kps[0:2], kps[2], kps[3:5])
            faces.append(DetectedFace(box, float(face.det_score), landmarks))
        return sorted(faces, key=lambda f: f.score, reverse=True)

    def refine(self, image: RGB, face: DetectedFace) -> DetectedFace:
        """SCRFD's keypoints are already the final landmarks."""
        return face
