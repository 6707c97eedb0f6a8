"""The built-in engine as a vendor: offline, free, always the same answer.

Compare embeds the largest face of each image with dlib's ResNet model
(``facegate.engine``) and measures the Euclidean distance ``d`` between the two
128-d descriptors. dlib calls ``d < 0.6`` the same person (99.38% on LFW: "a
Euclidean distance between them less than 0.6"). On facegate's scale:

    similarity = clip(1 - d / 1.2, 0, 1)

so d = 0 is 1.0, dlib's own threshold 0.6 lands on 0.5, and d ≥ 1.2 (never
seen for faces) is 0.

=========  ============  ====================  =======================
level      distance <    similarity >          why
=========  ============  ====================  =======================
low        0.65          0.4583                fewer false rejections
normal     0.60          0.5                   dlib's LFW threshold
high       0.50          0.5833                fewer false accepts
=========  ============  ====================  =======================

Every line is strict, as dlib's "less than" is (``inclusive=False``); the
decision is made on the rounded similarity, the number the caller sees.

On the test photos: two photos of the same man are d ≈ 0.34-0.35 (similarity
≈ 0.71); two different men d ≈ 0.82-0.85 (similarity ≈ 0.29-0.32).

``vendor_score`` is the raw distance (lower is more alike). The engine gives no
verdict of its own, never bills and has no request id. Each image's largest face
is the one compared; an image without one is ``NoFace`` naming it ("no face found
in image1"). Detect answers an empty list rather than ``NoFace``.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

from facegate import engine
from facegate.errors import InvalidRequest, NoFace
from facegate.images import ImageLimits
from facegate.models import Operation, SecurityLevel
from facegate.vendors.base import (
    CallContext,
    CompareOutcome,
    DetectedFace,
    DetectOutcome,
    FeaturesOutcome,
    ImageRef,
    Vendor,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

# Distances map linearly onto 0..1: this one is similarity 0.
DISTANCE_SCALE = 1.2
DISTANCE_THRESHOLDS: Mapping[SecurityLevel, float] = MappingProxyType({"low": 0.65, "normal": 0.60, "high": 0.50})


def similarity(distance: float) -> float:
    """facegate's similarity for a descriptor distance (rounded, so the decision
    is made on exactly the number the caller sees)."""
    return round(min(1.0, max(0.0, 1.0 - distance / DISTANCE_SCALE)), 4)


THRESHOLDS: Mapping[SecurityLevel, float] = MappingProxyType(
    {level: similarity(d) for level, d in DISTANCE_THRESHOLDS.items()}
)


class LocalVendor(Vendor):
    id: ClassVar[str] = "local"
    name: ClassVar[str] = "facegate built-in engine (dlib ResNet)"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.COMPARE, Operation.DETECT, Operation.FEATURES})
    credentials_model = None
    limits: ClassVar[ImageLimits] = ImageLimits()
    accepts_urls: ClassVar[bool] = False

    @classmethod
    def available(cls) -> bool:
        return engine.available()

    def compare(self, image1: ImageRef, image2: ImageRef, ctx: CallContext) -> CompareOutcome:
        d = engine.distance(self._descriptor(image1, "image1"), self._descriptor(image2, "image2"))
        return CompareOutcome(
            similarity=similarity(d),
            vendor_score=round(d, 4),
            thresholds=THRESHOLDS,
            vendor_request_id=None,
            billed=False,
            inclusive=False,  # dlib: "less than 0.6"
        )

    def detect(self, image: ImageRef, max_faces: int, ctx: CallContext) -> DetectOutcome:
        rgb, scale = self._rgb(image, "the image")
        faces = [_rescale(f.box, scale, rgb) for f in engine.detect(rgb)[:max_faces]]
        return DetectOutcome(faces=faces, vendor_request_id=None, billed=False)

    def features(self, image: ImageRef, ctx: CallContext) -> FeaturesOutcome:
        descriptor = self._descriptor(image, "the image")
        return FeaturesOutcome(
            embedding=[float(x) for x in descriptor], model=engine.MODEL, vendor_request_id=None, billed=False
        )

    def _descriptor(self, ref: ImageRef, label: str) -> np.ndarray:
        rgb, _ = self._rgb(ref, label)
        face = engine.largest_face(rgb)
        if face is None:
            raise NoFace(f"no face found in {label}", vendor=self.id, billed=False)
        return engine.embed(rgb, face)

    def _rgb(self, ref: ImageRef, label: str) -> tuple[np.ndarray, float]:
        if ref.image is None:
            # URLs are fetched by the service (accepts_urls is False); a face token
            # belongs to the vendor that issued it.
            raise InvalidRequest(f"the built-in engine needs the image itself for {label}", vendor=self.id)
        return ref.image.engine_rgb


def _rescale(box: DetectedFace, scale: float, rgb: np.ndarray) -> DetectedFace:
    """A box found on a reduced decode, in the original image's pixels."""
    if scale == 1:
        return box
    full_w, full_h = round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)
    left, top = min(full_w - 1, int(box.left * scale)), min(full_h - 1, int(box.top * scale))
    return replace(
        box,
        left=left,
        top=top,
        width=max(1, min(full_w - left, round(box.width * scale))),
        height=max(1, min(full_h - top, round(box.height * scale))),
    )
