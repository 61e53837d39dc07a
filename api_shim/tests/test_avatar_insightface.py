"""The insightface path with model packs the tests generate (the real packs are large and for
non-commercial use only, so none can be downloaded or shipped here).

Each generated detector is a small ONNX graph with SCRFD's interface: a static 1x3x160x160
input and nine outputs (scores, box distances and five keypoints for strides 8, 16 and 32, two
anchors per cell). Its outputs are fixed: the faces the test scripts, plus zero times the mean of
the input so the image really flows through the graph. Everything else is the real thing:
insightface's FaceAnalysis reads the directory, routes the model to its SCRFD class by shape,
runs it on onnxruntime, decodes anchors and runs its NMS; our adapter maps the result back to
image pixels and through the same face rule, alignment and encoding as the default detector.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from skimage import data

from api_shim.avatars.faces import FacePolicy
from api_shim.avatars.insight import InsightFaceDetector, ModelPackError
from api_shim.avatars.pipeline import AvatarPipeline, default_detector
from api_shim.avatars.problems import ImageRejectedError, Rejection


def sample(name: str) -> npt.NDArray[np.uint8]:
    """One of scikit-image's sample photographs (its loaders are untyped)."""
    image: npt.NDArray[np.uint8] = getattr(data, name)()
    return image


INPUT = 160
STRIDES = (8, 16, 32)
ANCHORS = 2
OPSET = 13

# A scripted face: box (x0, y0, x1, y1) and five keypoints, in the 160x160 input's pixels.
Face = tuple[tuple[float, float, float, float], Sequence[tuple[float, float]]]


def scripted_outputs(faces: Sequence[Face]) -> dict[str, np.ndarray]:
    """SCRFD outputs that decode to `faces` (each placed on the nearest stride-32 anchor)."""
    outputs: dict[str, np.ndarray] = {}
    for stride in STRIDES:
        cells = (INPUT // stride) ** 2 * ANCHORS
        scores = np.zeros((cells, 1), np.float32)
        boxes = np.zeros((cells, 4), np.float32)
        kps = np.zeros((cells, 10), np.float32)
        if stride == 32:
            side = INPUT // stride
            for (x0, y0, x1, y1), points in faces:
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                col, row = min(round(cx / stride), side - 1), min(round(cy / stride), side - 1)
                ax, ay = col * stride, row * stride
                index = (row * side + col) * ANCHORS
                scores[index] = 0.92
                boxes[index] = np.array([ax - x0, ay - y0, x1 - ax, y1 - ay]) / stride
                kps[index] = (np.array(points, np.float32) - [ax, ay]).reshape(-1) / stride
        outputs[f"score_{stride}"] = scores
        outputs[f"bbox_{stride}"] = boxes
        outputs[f"kps_{stride}"] = kps
    return outputs


def scrfd_model(path: Path, faces: Sequence[Face], *, keypoints: bool = True) -> Path:
    outputs = scripted_outputs(faces)
    kinds = ["score", "bbox", "kps"] if keypoints else ["score", "bbox"]
    names = [f"{kind}_{stride}" for kind in kinds for stride in STRIDES]
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
    ]
    initializers = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    for name in names:
        initializers.append(numpy_helper.from_array(outputs[name], f"{name}_value"))
        nodes.append(helper.make_node("Add", [f"{name}_value", "nothing"], [name]))
    graph = helper.make_graph(
        nodes,
        "scrfd_scripted",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, INPUT, INPUT])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, list(outputs[name].shape))
            for name in names
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def recognition_model(path: Path) -> Path:
    """Shaped like an ArcFace model (112x112 in, an embedding out): not a detector."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["data"], ["embedding"], axes=[2, 3], keepdims=0)],
        "arcface_like",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


# The astronaut's face (512x512 photo) as the 160 px input sees it: scale 160/512.
SCALE = INPUT / 512
ASTRONAUT_FACE: Face = (
    (178 * SCALE, 72 * SCALE, 270 * SCALE, 176 * SCALE),
    [
        (x * SCALE, y * SCALE)
        for x, y in ((204, 102), (246, 103), (224, 130), (200, 140), (246, 142))
    ],
)
SECOND_FACE: Face = (
    (60 * SCALE, 300 * SCALE, 150 * SCALE, 400 * SCALE),
    [(x * SCALE, y * SCALE) for x, y in ((85, 335), (125, 335), (105, 360), (88, 380), (122, 380))],
)


def pack(tmp_path: Path, name: str, faces: Sequence[Face]) -> Path:
    root = tmp_path / name
    root.mkdir()
    scrfd_model(root / "det_scripted.onnx", faces)
    recognition_model(root / "w600k_like.onnx")  # a pack holds more than a detector
    return root


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def test_a_pack_is_loaded_and_its_faces_mapped_to_image_pixels(tmp_path: Path) -> None:
    detector = InsightFaceDetector(pack(tmp_path, "scripted_pack", [ASTRONAUT_FACE]))
    assert detector.name == "insightface:scripted_pack"
    faces = detector.detect(np.asarray(sample("astronaut")))
    assert len(faces) == 1
    found = faces[0]
    assert found.score == pytest.approx(0.92)
    assert found.box == pytest.approx((178, 72, 92, 104), abs=0.5)
    expected = [(204, 102), (246, 103), (224, 130), (200, 140), (246, 142)]
    assert found.landmarks == pytest.approx(np.array(expected, dtype=np.float64), abs=0.5)


def test_the_pipeline_accepts_the_portrait_with_the_packs_landmarks(tmp_path: Path) -> None:
    root = pack(tmp_path, "scripted_pack", [ASTRONAUT_FACE])
    pipeline = AvatarPipeline(lambda: default_detector(str(root)))
    prepared = pipeline.process(jpeg(Image.fromarray(sample("astronaut"))))
    assert prepared.detector == "insightface:scripted_pack"
    portrait = prepared.portrait
    (_lx, ly), (_rx, ry) = portrait.face.landmarks[:2].tolist()
    assert abs(ly - ry) < 0.5  # levelled with the pack's own eye positions
    assert portrait.width <= 800


def test_two_faces_from_the_pack_are_a_group_photo(tmp_path: Path) -> None:
    root = pack(tmp_path, "scripted_pair", [ASTRONAUT_FACE, SECOND_FACE])
    pipeline = AvatarPipeline(lambda: InsightFaceDetector(root), policy=FacePolicy())
    with pytest.raises(ImageRejectedError) as caught:
        pipeline.process(jpeg(Image.fromarray(sample("astronaut"))))
    assert caught.value.rejection is Rejection.MULTIPLE_FACES_DETECTED


def test_a_missing_directory_is_an_error_not_a_download(tmp_path: Path) -> None:
    with pytest.raises(ModelPackError, match="does not exist"):
        InsightFaceDetector(tmp_path / "buffalo_l")
    assert not (Path.home() / ".insightface" / "models" / "buffalo_l").exists()


def test_a_pack_without_a_detector_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "recognition_only"
    root.mkdir()
    recognition_model(root / "w600k_like.onnx")
    with pytest.raises(ModelPackError, match="no face detection model"):
        InsightFaceDetector(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelPackError, match="holds no ONNX model"):
        InsightFaceDetector(empty)


def test_a_detector_without_keypoints_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "no_kps"
    root.mkdir()
    scrfd_model(root / "det.onnx", [ASTRONAUT_FACE], keypoints=False)
    with pytest.raises(ModelPackError, match="no facial keypoints"):
        InsightFaceDetector(root)
