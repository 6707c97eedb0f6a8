"""facegate.prescreen: each check just under and just over its threshold, and the whole
screen on the repository's photos, their ordinary variants (which must all pass) and
useless ones (which must all be stopped)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageEnhance, ImageFilter

from facegate import prescreen
from facegate.errors import MultipleFaces, NoFace, PoorImageQuality
from facegate.images import Image, load_bytes
from facegate.prescreen import FaceMeasures, judge

PHOTOS = ("obama.jpg", "obama2.jpg", "biden.jpg", "32bit.png")


def encode(img: PILImage.Image, fmt: str = "JPEG", **kw) -> Image:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return load_bytes(buf.getvalue())


@pytest.fixture(scope="module")
def photo():
    from pathlib import Path

    faces = Path(__file__).resolve().parents[2] / ".." / "shared" / "testdata" / "faces"

    def open_(name: str) -> PILImage.Image:
        return PILImage.open(faces / name).convert("RGB")

    return open_


GOOD = FaceMeasures(side=200, brightness=120.0, sharpness=0.1)


# --- each check at its boundary ------------------------------------------------------------


def test_face_size_boundary():
    assert prescreen.check_size(prescreen.MIN_FACE_SIDE) is None
    refusal = prescreen.check_size(prescreen.MIN_FACE_SIDE - 1)
    assert refusal.check == "face_too_small" and f"{prescreen.MIN_FACE_SIDE - 1} px" in refusal.message


def test_brightness_boundary():
    assert prescreen.check_brightness(prescreen.MIN_FACE_BRIGHTNESS) is None
    refusal = prescreen.check_brightness(prescreen.MIN_FACE_BRIGHTNESS - 0.01)
    assert refusal.check == "too_dark" and "too dark" in refusal.message


def test_sharpness_boundary():
    assert prescreen.check_sharpness(prescreen.MIN_FACE_SHARPNESS) is None
    refusal = prescreen.check_sharpness(prescreen.MIN_FACE_SHARPNESS * 0.99)
    assert refusal.check == "too_blurred" and "blurred" in refusal.message


def test_single_face_counts_only_usable_faces():
    side = prescreen.MIN_FACE_SIDE
    assert prescreen.check_single([200, side - 1]) is None  # a face in the background no vendor could use
    assert prescreen.check_single([200, side]).check == "multiple_faces"


def test_sharpness_is_zero_on_a_flat_face_and_ignores_brightness():
    flat = np.full((96, 96), 40.0)
    assert prescreen.sharpness(flat) == 0.0
    rng = np.random.default_rng(1)
    texture = rng.uniform(0, 200, (96, 96))
    assert prescreen.sharpness(texture) == pytest.approx(prescreen.sharpness(texture * 0.1))


@pytest.mark.parametrize(
    ("measures", "check"),
    [
        ([], "no_face"),
        ([FaceMeasures(prescreen.MIN_FACE_SIDE - 1, 120, 0.1)], "face_too_small"),
        ([FaceMeasures(200, prescreen.MIN_FACE_BRIGHTNESS - 1, 0.1)], "too_dark"),
        ([FaceMeasures(200, 120, prescreen.MIN_FACE_SHARPNESS / 2)], "too_blurred"),
        ([GOOD, GOOD], "multiple_faces"),
    ],
)
def test_judge_in_quality_mode(measures, check):
    assert judge(measures, "quality", single_face=True).check == check


def test_faces_mode_refuses_only_a_missing_face():
    assert judge([], "faces", single_face=True).check == "no_face"
    bad = FaceMeasures(prescreen.MIN_FACE_SIDE - 1, 0.0, 0.0)
    assert judge([bad, bad], "faces", single_face=True) is None


def test_several_faces_pass_where_one_is_not_required():
    assert judge([GOOD, GOOD], "quality", single_face=False) is None


@pytest.mark.parametrize(
    ("stage", "requested", "mode"),
    [
        ("off", None, "off"),
        ("quality", None, "quality"),
        ("off", True, "faces"),
        ("quality", True, "quality"),
        ("faces", False, "off"),
        ("quality", False, "off"),
    ],
)
def test_a_request_overrides_the_stage(stage, requested, mode):
    assert prescreen.mode_for(stage, requested) == mode


def test_errors_name_the_image_and_say_nothing_was_billed():
    e = prescreen.error_for(prescreen.Refusal("no_face", "no face found"), "image2", ["shuxun"])
    assert isinstance(e, NoFace) and e.billed is False and e.status == 422 and e.vendor is None
    assert "image2" in e.message and "screened locally" in e.message and "nothing billed" in e.message
    assert isinstance(prescreen.error_for(prescreen.Refusal("multiple_faces", "x"), "image", []), MultipleFaces)
    assert isinstance(prescreen.error_for(prescreen.Refusal("too_dark", "x"), "image", []), PoorImageQuality)


# --- the whole screen on real photos ----------------------------------------------------------


def ordinary_variants(img: PILImage.Image):
    w, h = img.size
    yield "original", encode(img, quality=95)
    for k in (0.5, 0.25, 0.15):
        yield f"rescaled x{k}", encode(img.resize((int(w * k), int(h * k))), quality=90)
    for q in (30, 10):
        yield f"recompressed q{q}", encode(img, quality=q)
    yield "png", encode(img, "PNG")
    for k in (0.6, 0.35, 0.1):
        yield f"darkened x{k}", encode(ImageEnhance.Brightness(img).enhance(k), quality=90)
    for r in (1, 2, 4):
        yield f"blurred r{r}", encode(img.filter(ImageFilter.GaussianBlur(r)), quality=90)
    yield "cropped to the face", encode(img.crop((w // 6, h // 8, w * 5 // 6, h * 3 // 4)), quality=90)
    yield "upper half", encode(img.crop((0, 0, w, h // 2)), quality=90)


@pytest.mark.parametrize("name", PHOTOS)
def test_ordinary_photos_pass_quality(photo, name):
    refused = {
        label: screen.refusal
        for label, image in ordinary_variants(photo(name))
        if (screen := prescreen.screen(image, "quality", single_face=True)).refusal is not None
    }
    assert refused == {}


def test_the_repositorys_rgba_png_passes(face_bytes):
    screen = prescreen.screen(load_bytes(face_bytes("32bit.png")), "quality", single_face=True)
    assert screen.refusal is None and screen.face_count == 1


def wall() -> Image:
    rng = np.random.default_rng(7)
    plaster = rng.normal(180, 6, (900, 1200, 3)).clip(0, 255).astype(np.uint8)
    return encode(PILImage.fromarray(plaster).filter(ImageFilter.GaussianBlur(1)), quality=85)


@pytest.mark.parametrize(
    "useless",
    [
        pytest.param(lambda img: wall(), id="blank wall"),
        pytest.param(lambda img: encode(PILImage.new("RGB", (1000, 1200), (3, 3, 3))), id="black frame"),
        pytest.param(lambda img: encode(ImageEnhance.Brightness(img).enhance(0.02), quality=90), id="dark frame"),
        pytest.param(lambda img: encode(img.crop((0, int(img.height * 0.8), img.width, img.height))), id="no head"),
    ],
)
def test_useless_photos_are_refused_for_no_face_in_both_modes(photo, useless):
    image = useless(photo("obama.jpg"))
    for mode in ("faces", "quality"):
        assert prescreen.screen(image, mode).refusal.check == "no_face"


def test_a_heavily_blurred_face_is_refused_in_quality_mode_only(photo):
    img = photo("obama2.jpg")
    image = encode(img.filter(ImageFilter.GaussianBlur(16)), quality=90)
    screen = prescreen.screen(image, "quality")
    assert screen.refusal is not None and screen.refusal.check == "too_blurred", screen
    assert prescreen.screen(image, "faces").refusal is None


def test_a_face_too_dark_but_found_is_refused_in_quality_mode(photo):
    image = encode(ImageEnhance.Brightness(photo("obama.jpg")).enhance(0.05), quality=95)
    screen = prescreen.screen(image, "quality")
    assert screen.face_count == 1 and screen.refusal.check == "too_dark", screen


def test_a_tiny_face_in_a_large_frame_is_refused(photo):
    canvas = PILImage.new("RGB", (1600, 1600), (128, 128, 128))
    face = photo("obama.jpg")
    face.thumbnail((60, 60))  # the face itself is ~20 px across
    canvas.paste(face, (800, 800))
    assert prescreen.screen(encode(canvas, quality=90), "quality").refusal.check == "no_face"


def test_a_small_face_in_a_large_frame_is_confirmed_not_refused(photo):
    # The face is ~90 px of a 1600 px frame: too small for the fast pass at 512 px, found by the
    # confirming pass. A vendor could answer this photo, so the screen must not refuse it.
    canvas = PILImage.new("RGB", (1600, 1600), (128, 128, 128))
    face = photo("obama.jpg")
    face.thumbnail((300, 300))
    canvas.paste(face, (700, 700))
    screen = prescreen.screen(encode(canvas, quality=90), "quality")
    assert screen.refusal is None and screen.face_count == 1
    assert screen.face.side < 80 * 1600 / prescreen.SCREEN_MAX_SIDE  # under the fast pass's 80 px HOG window


def two_faces(photo) -> Image:
    canvas = PILImage.new("RGB", (800, 500), (200, 200, 200))
    for i, name in enumerate(("obama.jpg", "biden.jpg")):  # each cropped to head and shoulders
        img = photo(name)
        w, h = img.size
        img = img.crop((w // 6, h // 8, w * 5 // 6, h * 3 // 4))
        img.thumbnail((400, 500))
        canvas.paste(img, (400 * i, 0))
    return encode(canvas, quality=90)


def test_two_faces_side_by_side(photo):
    image = two_faces(photo)
    assert prescreen.screen(image, "quality", single_face=True).refusal.check == "multiple_faces"
    assert prescreen.screen(image, "quality", single_face=False).refusal is None
    assert prescreen.screen(image, "faces", single_face=True).refusal is None


def test_the_screen_works_on_a_small_reduced_copy(photo):
    image = encode(photo("biden.jpg"), quality=90)
    rgb, scale = image.rgb_at_most(prescreen.SCREEN_MAX_SIDE)
    assert max(rgb.shape[:2]) == prescreen.SCREEN_MAX_SIDE and scale == pytest.approx(2204 / 512)
    screen = prescreen.screen(image, "quality")
    assert screen.face.side > 250  # measured back in the original's pixels
