"""The built-in face engine: dlib's HOG face detector, its 5-point landmark model
and its ResNet face embedding (128-d, 99.38% on LFW at distance 0.6).

dlib detects, finds the landmarks and cuts the aligned face chip; the ResNet itself
runs in numpy (``engine_net``), from the same model file: dlib's wheel has no BLAS and
took ~100 ms a face for it, numpy's OpenBLAS takes ~15-20 ms, and the descriptor is
dlib's own to within 1e-5 (tests/unit/test_engine_net.py; measured 4e-7).

The models load once per process, on first use, and dlib and numpy are imported
only then: a Lambda that never runs the engine never pays for them.

Model files are looked up in this order:

1. ``FACEGATE_MODELS_DIR``, a directory holding the two files directly;
2. ``/opt/models``, where the engine layer ships exactly those two files;
3. the ``face_recognition_models`` package. Its ``__init__`` imports
   ``pkg_resources``, which modern environments lack, so it is located with
   ``find_spec`` and never imported.

A missing dlib or missing model file is ``VendorNotConfigured``: the deployment,
not the caller, is at fault, and the router may fail over to another vendor.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facegate.errors import VendorNotConfigured
from facegate.vendors.base import DetectedFace

if TYPE_CHECKING:
    import numpy as np

    from facegate.engine_net import FaceNet

MODEL = "dlib_face_recognition_resnet_model_v1"
DIMENSION = 128
SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_FILE = f"{MODEL}.dat"
MODEL_FILES = (SHAPE_PREDICTOR_FILE, RECOGNITION_FILE)
MODELS_DIR_ENV = "FACEGATE_MODELS_DIR"
LAYER_MODELS_DIR = Path("/opt/models")

# HOG detection cost grows with the pixel count while a verification photo's face
# stays large, so detection runs on a copy no larger than this; boxes are mapped
# back to the original pixels and landmarks and embeddings use the original.
DETECT_MAX_SIDE = 1024
# The HOG window is 80x80: a face smaller than that is only found on an upsampled
# image. Upsampling quadruples the work, so it is a second pass, and only for images
# small enough that a face in them can plausibly be that small.
UPSAMPLE_RETRY_MAX_SIDE = 800
# Compare and features need only the largest face, and a verification photo's face is
# large. ``largest_face`` looks first on a copy no larger than this, where the 80 px HOG
# window finds a face of about 1/6 of the image's longer side or more, at a quarter of the
# ≤1024 px pass's pixels; only when it finds nothing does the whole ``detect`` run. The
# landmarks and the embedding still use the original pixels, so the coarser box moves a
# descriptor by ~0.04 (the same-person threshold is 0.6): bench/engine_compare_bench.py
# measures the speed and the accuracy on the test photos and transformed copies of them.
COARSE_MAX_SIDE = 512

_VENDOR = "local"


@dataclass(frozen=True)
class Face:
    """One detected face, in the original image's pixels."""

    box: DetectedFace  # clipped to the image: what callers see
    # (left, top, right, bottom), inclusive and not clipped: landmarks of a face cut
    # by the image edge are found better from the detector's whole box.
    rect: tuple[int, int, int, int]
    score: float  # the HOG SVM margin; detections start at 0

    @property
    def area(self) -> int:
        return self.box.width * self.box.height


@dataclass(frozen=True)
class Models:
    detector: Any
    shape_predictor: Any
    net: FaceNet
    directory: Path


_models: Models | None = None
_load_lock = threading.Lock()
# dlib's HOG detector releases the GIL and is not re-entrant: two threads in it at
# once crashed the process in a test run. Every dlib call therefore holds this lock.
# Lambda runs one request per process, so only the threaded local server ever waits.
# The numpy network only reads its weights: it runs outside the lock.
_run_lock = threading.Lock()


def models_dir() -> Path:
    """Where the model files are read from (see the module docstring)."""
    configured = os.environ.get(MODELS_DIR_ENV)
    if configured:
        return Path(configured)
    if all((LAYER_MODELS_DIR / name).is_file() for name in MODEL_FILES):
        return LAYER_MODELS_DIR
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise VendorNotConfigured(
            f"the built-in engine's model files are not installed (set {MODELS_DIR_ENV})", vendor=_VENDOR
        )
    return Path(spec.submodule_search_locations[0]) / "models"


def available() -> bool:
    """Could the engine run here? Checks without loading anything heavy."""
    if importlib.util.find_spec("dlib") is None:
        return False
    try:
        directory = models_dir()
    except VendorNotConfigured:
        return False
    return all((directory / name).is_file() for name in MODEL_FILES)


def models() -> Models:
    """The process-wide models, loaded on first use."""
    global _models
    loaded = _models
    if loaded is None:
        with _load_lock:
            loaded = _models
            if loaded is None:
                loaded = _models = _load(models_dir())
    return loaded


def _load(directory: Path) -> Models:
    try:
        import dlib
    except ImportError:
        raise VendorNotConfigured("the built-in engine is not installed (dlib is missing)", vendor=_VENDOR) from None
    missing = [name for name in MODEL_FILES if not (directory / name).is_file()]
    if missing:
        raise VendorNotConfigured(
            f"the built-in engine's model files are missing: {', '.join(missing)}", vendor=_VENDOR
        )
    from facegate import engine_net

    try:
        net = engine_net.load(directory / RECOGNITION_FILE)
    except engine_net.ModelFormatError as exc:
        # No fallback to dlib's own network: the file is pinned by hash in the engine layer,
        # so a file this parser does not know is a broken deployment, to be seen, not hidden.
        raise VendorNotConfigured(
            f"the built-in engine's {RECOGNITION_FILE} is not the expected model ({exc})", vendor=_VENDOR
        ) from None
    engine_net.use_one_blas_thread()
    return Models(
        detector=dlib.get_frontal_face_detector(),
        shape_predictor=dlib.shape_predictor(str(directory / SHAPE_PREDICTOR_FILE)),
        net=net,
        directory=directory,
    )


def detect(rgb: np.ndarray, upsample: int | None = None) -> list[Face]:
    """Faces in an H×W×3 uint8 RGB image, largest first.

    ``upsample`` None tries 0 and, on small images, 1 when 0 finds nothing; an int
    runs exactly that one pass.
    """
    _check_rgb(rgb)
    small = _downscale(rgb, DETECT_MAX_SIDE)
    if upsample is None:
        passes = (0, 1) if max(small.shape[:2]) <= UPSAMPLE_RETRY_MAX_SIDE else (0,)
    else:
        passes = (upsample,)
    return _detect_on(rgb, small, passes)


def largest_face(rgb: np.ndarray) -> Face | None:
    """The largest face, or None: the one compare and features embed.

    A first pass on a ≤ ``COARSE_MAX_SIDE`` px copy finds a large face cheaply (its box
    then comes from that coarser copy); only an image where it finds none pays for the
    whole ``detect``.
    """
    _check_rgb(rgb)
    if max(rgb.shape[:2]) > COARSE_MAX_SIDE:
        faces = _detect_on(rgb, _downscale(rgb, COARSE_MAX_SIDE), (0,))
        if faces:
            return faces[0]
    faces = detect(rgb)
    return faces[0] if faces else None


def _detect_on(rgb: np.ndarray, small: np.ndarray, passes: tuple[int, ...]) -> list[Face]:
    """Faces found on ``small`` (a downscaled copy of ``rgb``), in ``rgb``'s pixels, largest first."""
    height, width = rgb.shape[:2]
    detector = models().detector
    rects: list[Any] = []  # dlib's rectangles (dlib is untyped)
    scores: list[float] = []
    for up in passes:
        with _run_lock:
            rects, scores, _ = detector.run(small, up, 0.0)
        if rects:
            break
    scale_x = width / small.shape[1]
    scale_y = height / small.shape[0]
    faces = []
    for r, score in zip(rects, scores, strict=True):
        corners = (r.left(), r.top(), r.right(), r.bottom())
        face = _to_face(corners, score, scale_x, scale_y, width, height)
        if face is not None:
            faces.append(face)
    faces.sort(key=lambda f: (f.area, f.score), reverse=True)
    return faces


def embed(rgb: np.ndarray, face: Face) -> np.ndarray:
    """The 128-d descriptor of ``face`` in ``rgb`` (the image ``detect`` saw).

    What dlib's ``compute_face_descriptor(rgb, shape, num_jitters=0)`` computes: the
    150×150 chip aligned on the 5 landmarks with 25 % padding, through the ResNet.
    """
    import dlib
    import numpy as np

    from facegate.engine_net import CHIP_PADDING, CHIP_SIZE

    _check_rgb(rgb)
    m = models()
    rect = dlib.rectangle(*face.rect)
    with _run_lock:
        shape = m.shape_predictor(rgb, rect)
        chip = dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    return np.asarray(m.net.descriptor(chip), dtype=np.float64)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors; dlib's model calls < 0.6 the same person."""
    import numpy as np

    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def _to_face(
    rect: tuple[int, int, int, int], score: float, scale_x: float, scale_y: float, width: int, height: int
) -> Face | None:
    """Map a detector box (inclusive corners, detection pixels) to the original image.

    None when nothing of it lies inside the image.
    """
    left, top, right, bottom = rect
    left, right = round(left * scale_x), round((right + 1) * scale_x) - 1
    top, bottom = round(top * scale_y), round((bottom + 1) * scale_y) - 1
    box_left, box_top = max(0, left), max(0, top)
    box_right, box_bottom = min(width - 1, right), min(height - 1, bottom)
    if box_right < box_left or box_bottom < box_top:
        return None
    # A logistic squash of the SVM margin: 0.5 at the detection threshold, towards 1
    # for clear faces. Monotonic, not a calibrated probability.
    confidence = round(1.0 / (1.0 + math.exp(-score)), 4)
    box = DetectedFace(
        left=box_left,
        top=box_top,
        width=box_right - box_left + 1,
        height=box_bottom - box_top + 1,
        confidence=confidence,
    )
    return Face(box=box, rect=(left, top, right, bottom), score=float(score))


def _downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    if max(height, width) <= max_side:
        return rgb
    import numpy as np
    from PIL import Image as PILImage

    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(PILImage.fromarray(rgb).resize(size, PILImage.Resampling.BILINEAR))


def _check_rgb(rgb: Any) -> None:
    import numpy as np

    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError("the engine takes an H×W×3 uint8 RGB array")
