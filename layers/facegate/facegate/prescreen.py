"""Pre-screening: refuse a photo on the built-in detector before a paid vendor bills for it.

Every vendor bills per call, whatever the photo: Shuxun reports it in ``isFee`` for every
answer, and no other doc promises not to bill an answer about a bad photo. So before the
first paid attempt, each image facegate holds the bytes of is looked at here, at reduced
resolution, and a photo no vendor could answer well is refused with nothing sent.

Modes (``FACEGATE_PRESCREEN``; a request's ``"prescreen"`` overrides it):

* ``off`` — nothing is screened.
* ``faces`` — an image without a face is ``NO_FACE``.
* ``quality`` — also ``POOR_IMAGE_QUALITY`` for a face under ``MIN_FACE_SIDE`` pixels, a face
  darker than ``MIN_FACE_BRIGHTNESS`` or blurrier than ``MIN_FACE_SHARPNESS``, and
  ``MULTIPLE_FACES`` where the operation needs exactly one face (verify-identity).

Screening must never refuse a photo a vendor would have answered well, so every threshold
sits far on the useless side of what was measured on the repository's photos and their
transformed variants (bench/prescreen_bench.py; tests/unit/test_prescreen.py), and "no
face" is only concluded after a second, finer look (``_confirm_rgb``): the fast first pass
costs a small reduced decode and one HOG pass, and only a photo that seems faceless pays for
the second.

This module calls nothing but the engine's detector and Pillow/numpy: no I/O, no service
state. It works on ``facegate.images.Image``, whose reduced decodes it asks for.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from facegate import engine

if TYPE_CHECKING:
    import numpy as np

    from facegate.errors import FacegateError
    from facegate.images import Image

Mode = Literal["off", "faces", "quality"]
Check = Literal["no_face", "face_too_small", "too_dark", "too_blurred", "multiple_faces"]

# --- thresholds ---------------------------------------------------------------------------

# The first pass detects on a copy at most this many pixels a side: ~20-45 ms of HOG on the
# repository's photos (bench/RESULTS.md#prescreen), against a vendor call of hundreds of ms and
# a bill. At this size every face of the repository's photos and their ordinary variants is found.
SCREEN_MAX_SIDE = 512

# dlib's HOG window is 80x80 px ("frontal_face_detector", 80x80 sliding window): with one 2x
# upsampling pass it finds faces down to ~40 px. The confirming pass is sized so that a face of
# MIN_FACE_SIDE original pixels is at least this large, capped at the engine's own detection
# size (engine.DETECT_MAX_SIDE): above that cap, a smaller face than MIN_FACE_SIDE may be missed
# (a 2000 px photo: faces under ~80 px), which the README states.
HOG_MIN_FACE_UPSAMPLED = 40
CONFIRM_MAX_SIDE = engine.DETECT_MAX_SIDE

# None of facegate's five vendor docs states a minimum face size (Kuaidi100 only says it
# analyses "遮挡度、模糊度、光照强度、姿态角度、完整度、大小"). The most lenient minimum any
# public face API documents is Tencent Cloud IAI's MinFaceSize, 34 px ("低于34的人脸图片无法被
# 识别", SearchFaces/DetectFace); Azure Face's is 36x36. A face under 34 px is below every
# published floor. Measured: a 37 px face (obama.jpg at 15 %) still matches on the engine.
MIN_FACE_SIDE = 34

# Mean luma (0-255, ITU-R 601) over the face. Measured: faces darkened to x0.1 (mean 10.8-13.9)
# are still found and matched by the engine (obama vs obama2 d = 0.27-0.44, its line is 0.6); at
# x0.05 (6.7) the engine no longer finds the face in full resolution. A face under 8 is refused.
MIN_FACE_BRIGHTNESS = 8.0

# Sharpness: the variance of the Laplacian (the 4-neighbour kernel) over the face, resized to
# SHARPNESS_CHIP_SIDE px, divided by the variance of its grey levels, so that it measures blur
# and not brightness or contrast (the plain variance of the Laplacian falls 60-fold when a sharp
# face is darkened to x0.1). Measured on the repository's faces: originals 0.097-0.33, recompressed
# and rescaled >= 0.060, Gaussian blur r=2 >= 0.039, r=4 >= 0.0116, r=8 0.0035-0.0068 (engine d
# still 0.41-0.52), r=12 0.0023-0.0049 (d up to 0.63: no longer a match). 0.003 refuses only
# faces blurred past the point where the engine itself stops matching them.
MIN_FACE_SHARPNESS = 0.003
SHARPNESS_CHIP_SIDE = 96


@dataclass(frozen=True)
class Refusal:
    """Why one image is refused: the check that failed and what it saw, in words."""

    check: Check
    message: str


@dataclass(frozen=True)
class FaceMeasures:
    side: int  # the face box's shorter side, in the original image's pixels
    brightness: float  # mean luma over the face, 0-255
    sharpness: float  # var(Laplacian) / var(grey), see MIN_FACE_SHARPNESS


@dataclass(frozen=True)
class ImageScreen:
    """One image's screen: ``refusal`` None means it passed."""

    refusal: Refusal | None
    face_count: int
    face: FaceMeasures | None
    ms: float


# --- the checks (pure: numbers in, a refusal or None out) -------------------------------------


def check_size(side: int) -> Refusal | None:
    if side < MIN_FACE_SIDE:
        return Refusal(
            "face_too_small", f"the face is {side} px across; at least {MIN_FACE_SIDE} px is needed to compare it"
        )
    return None


def check_brightness(brightness: float) -> Refusal | None:
    if brightness < MIN_FACE_BRIGHTNESS:
        return Refusal(
            "too_dark",
            f"the face is too dark (mean brightness {brightness:.1f} of 255; at least {MIN_FACE_BRIGHTNESS:g})",
        )
    return None


def check_sharpness(sharpness: float) -> Refusal | None:
    if sharpness < MIN_FACE_SHARPNESS:
        return Refusal(
            "too_blurred",
            f"the face is too blurred (sharpness {sharpness:.4f}; at least {MIN_FACE_SHARPNESS:g}, "
            "the variance of the Laplacian over the face relative to its contrast)",
        )
    return None


def check_single(sides: list[int]) -> Refusal | None:
    """More than one face of a usable size where exactly one is needed (the ID photo match:
    jumei's code 111 "检测到多于一张人脸"). A face under MIN_FACE_SIDE in the background
    does not count: no vendor could use it either."""
    usable = [s for s in sides if s >= MIN_FACE_SIDE]
    if len(usable) > 1:
        return Refusal("multiple_faces", f"the photo shows {len(usable)} faces; it must show exactly one")
    return None


def judge(measures: list[FaceMeasures], mode: Mode, single_face: bool) -> Refusal | None:
    """The verdict on one image from its faces' measures (largest first)."""
    if not measures:
        return Refusal("no_face", "no face found")
    if mode != "quality":
        return None
    face = measures[0]
    return (
        (check_single([m.side for m in measures]) if single_face else None)
        or check_size(face.side)
        or check_brightness(face.brightness)
        or check_sharpness(face.sharpness)
    )


# --- measuring ----------------------------------------------------------------------------------


def measure(rgb: np.ndarray, face: engine.Face, scale: float) -> FaceMeasures:
    """The face's size (original pixels), brightness and sharpness in ``rgb`` (the reduced copy
    the face was found in; ``scale`` maps its pixels to the original's)."""
    import numpy as np
    from PIL import Image as PILImage

    b = face.box
    chip = PILImage.fromarray(rgb[b.top : b.top + b.height, b.left : b.left + b.width]).convert("L")
    grey = np.asarray(chip, dtype=np.float64)
    brightness = float(grey.mean())
    grey = np.asarray(
        chip.resize((SHARPNESS_CHIP_SIDE, SHARPNESS_CHIP_SIDE), PILImage.Resampling.BILINEAR), dtype=np.float64
    )
    return FaceMeasures(side=round(min(b.width, b.height) * scale), brightness=brightness, sharpness=sharpness(grey))


def sharpness(grey: np.ndarray) -> float:
    """var(Laplacian) / var(grey) of a greyscale array; 0 for a flat one."""
    lap = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    spread = float(grey.var())
    return 0.0 if spread < 1e-9 else float(lap.var()) / spread


def screen(image: Image, mode: Mode, single_face: bool = False) -> ImageScreen:
    """Screen one image (``mode`` ``faces`` or ``quality``)."""
    started = time.perf_counter()
    rgb, scale = image.rgb_at_most(SCREEN_MAX_SIDE)
    faces = engine.detect(rgb, upsample=0)
    if not faces:  # before saying "no face": a finer look, large enough for a MIN_FACE_SIDE face
        confirm = _confirm_side(image)
        if confirm > max(rgb.shape[:2]):
            rgb, scale = image.rgb_at_most(confirm)
        faces = engine.detect(rgb, upsample=1)
    measures = [measure(rgb, f, scale) for f in faces]
    refusal = judge(measures, mode, single_face)
    return ImageScreen(refusal, len(faces), measures[0] if measures else None, (time.perf_counter() - started) * 1000)


def _confirm_side(image: Image) -> int:
    """The side of the copy on which a MIN_FACE_SIDE face would be found with one upsampling."""
    longest = max(image.width, image.height)
    return min(CONFIRM_MAX_SIDE, math.ceil(longest * HOG_MIN_FACE_UPSAMPLED / MIN_FACE_SIDE))


def mode_for(stage: Mode, requested: bool | None) -> Mode:
    """The mode a request is screened in: the stage's, unless the request says otherwise
    (``true`` on a stage that is ``off`` screens for faces, the mode that only ever refuses
    photos without any face)."""
    if requested is None:
        return stage
    if not requested:
        return "off"
    return "faces" if stage == "off" else stage


def error_for(refusal: Refusal, label: str, vendors: list[str]) -> FacegateError:
    """The contract's error for a refused image, saying it was screened here and nothing was billed."""
    from facegate.errors import MultipleFaces, NoFace, PoorImageQuality

    cls = {"no_face": NoFace, "multiple_faces": MultipleFaces}.get(refusal.check, PoorImageQuality)
    return cls(
        f"{refusal.message} in {label} (screened locally before calling {', '.join(vendors)}: "
        'nothing was sent, nothing billed; send "prescreen": false to skip the screen)',
        billed=False,
    )
