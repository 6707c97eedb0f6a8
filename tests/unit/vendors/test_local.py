"""The built-in engine as a vendor: decisions on the test photos, the outcome shapes."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image as PILImage

from facegate import engine
from facegate.errors import InvalidRequest, NoFace, UnsupportedOperation
from facegate.images import ImageLimits, load_bytes
from facegate.models import Operation
from facegate.vendors import vendor_class
from facegate.vendors.base import CallContext, Identity, ImageRef, decide
from facegate.vendors.local import DISTANCE_THRESHOLDS, THRESHOLDS, LocalVendor, similarity

LEVELS = ("low", "normal", "high")
CTX = CallContext(now=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), nonce="n0nce", request_id="req-1")


@pytest.fixture(scope="module")
def vendor() -> LocalVendor:
    return LocalVendor()


@pytest.fixture(scope="module")
def ref(face_bytes):
    cache: dict[str, ImageRef] = {}

    def get(name: str) -> ImageRef:
        if name not in cache:
            cache[name] = ImageRef(image=load_bytes(face_bytes(name)))
        return cache[name]

    return get


@pytest.fixture(scope="module")
def blank() -> ImageRef:
    x = np.linspace(0, 255, 400, dtype=np.uint8)
    rgb = np.stack([np.tile(x, (400, 1)), np.tile(x[:, None], (1, 400)), np.full((400, 400), 128, np.uint8)], axis=-1)
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG")
    return ImageRef(image=load_bytes(buf.getvalue()))


# --- what the vendor declares ----------------------------------------------------------------


def test_declared_capabilities():
    assert vendor_class("local") is LocalVendor
    assert LocalVendor.id == "local"
    assert LocalVendor.name == "facegate built-in engine (dlib ResNet)"
    assert LocalVendor.operations == {Operation.COMPARE, Operation.DETECT, Operation.FEATURES}
    assert LocalVendor.credentials_model is None
    assert LocalVendor.limits == ImageLimits()
    assert LocalVendor.accepts_urls is False
    assert LocalVendor.options_model is None


def test_verify_identity_is_not_offered(vendor, ref):
    assert not vendor.supports(Operation.VERIFY_IDENTITY)
    with pytest.raises(UnsupportedOperation):
        vendor.verify_identity(Identity(name="x", id_number="y"), ref("obama.jpg"), CTX)


# --- the mapping -----------------------------------------------------------------------------


def test_similarity_mapping():
    assert similarity(0.0) == 1.0
    assert similarity(0.6) == 0.5
    assert similarity(1.2) == 0.0
    assert similarity(1.5) == 0.0  # clipped, never negative
    assert similarity(0.3) > similarity(0.4)


def test_thresholds_are_dlibs_distances_on_the_similarity_scale():
    assert dict(THRESHOLDS) == {"low": 0.4583, "normal": 0.5, "high": 0.5833}
    for level in LEVELS:
        assert THRESHOLDS[level] == pytest.approx(1 - DISTANCE_THRESHOLDS[level] / 1.2, abs=1e-4)
    assert THRESHOLDS["low"] < THRESHOLDS["normal"] < THRESHOLDS["high"]


# --- compare -----------------------------------------------------------------------------------


def test_same_person_matches_at_every_level(vendor, ref):
    outcome = vendor.compare(ref("obama.jpg"), ref("obama2.jpg"), CTX)
    for level in LEVELS:
        assert decide(outcome, level) == ("match", THRESHOLDS[level])
    assert outcome.vendor_score < 0.5  # a distance: lower is more alike
    assert outcome.similarity == pytest.approx(similarity(outcome.vendor_score), abs=1e-4)


def test_different_people_do_not_match_at_any_level(vendor, ref):
    for other in ("obama.jpg", "obama2.jpg", "32bit.png"):
        outcome = vendor.compare(ref(other), ref("biden.jpg"), CTX)
        for level in LEVELS:
            assert decide(outcome, level)[0] == "no_match", (other, level)
        assert outcome.vendor_score > 0.65


def test_rgba_png_is_obama(vendor, ref):
    same_photo = vendor.compare(ref("32bit.png"), ref("obama2.jpg"), CTX)
    assert same_photo.vendor_score < 0.1  # 32bit.png is obama2.jpg with an alpha channel
    assert decide(same_photo, "high")[0] == "match"
    other_photo = vendor.compare(ref("obama.jpg"), ref("32bit.png"), CTX)
    assert decide(other_photo, "normal")[0] == "match"


def test_compare_outcome_fields(vendor, ref):
    outcome = vendor.compare(ref("obama.jpg"), ref("obama2.jpg"), CTX)
    assert outcome.vendor_match is None
    assert outcome.billed is False
    assert outcome.vendor_request_id is None
    assert outcome.uncertain_band is None
    assert outcome.thresholds == THRESHOLDS
    assert 0.0 <= outcome.similarity <= 1.0
    assert outcome.vendor_score == round(outcome.vendor_score, 4)


def test_compare_is_symmetric_and_repeatable(vendor, ref):
    a = vendor.compare(ref("obama.jpg"), ref("obama2.jpg"), CTX)
    b = vendor.compare(ref("obama2.jpg"), ref("obama.jpg"), CTX)
    assert a == b


@pytest.mark.parametrize("position", ["image1", "image2"])
def test_no_face_names_the_image(vendor, ref, blank, position):
    images = (blank, ref("obama.jpg")) if position == "image1" else (ref("obama.jpg"), blank)
    with pytest.raises(NoFace) as err:
        vendor.compare(*images, CTX)
    assert err.value.message == f"no face found in {position}"
    assert err.value.code == "NO_FACE"
    assert err.value.vendor == "local"
    assert err.value.billed is False


def test_a_url_or_token_is_refused(vendor, ref):
    with pytest.raises(InvalidRequest):
        vendor.compare(ImageRef(url="https://example.com/a.jpg"), ref("obama.jpg"), CTX)
    with pytest.raises(InvalidRequest):
        vendor.features(ImageRef(face_token="tok"), CTX)


# --- detect ----------------------------------------------------------------------------------------


def test_detect_obama(vendor, ref):
    image = ref("obama.jpg").image
    outcome = vendor.detect(ref("obama.jpg"), 10, CTX)
    assert outcome.billed is False
    assert outcome.vendor_request_id is None
    assert len(outcome.faces) == 1
    box = outcome.faces[0]
    assert 0 <= box.left < box.left + box.width <= image.width
    assert 0 <= box.top < box.top + box.height <= image.height
    assert 0.15 * image.width < box.width < 0.6 * image.width
    assert 0.5 < box.confidence <= 1.0


def test_detect_nothing_is_an_empty_answer(vendor, blank):
    assert vendor.detect(blank, 10, CTX).faces == []


def test_detect_keeps_the_largest_max_faces(vendor, ref):
    obama = ref("obama.jpg").image.pil()
    biden = ref("biden.jpg").image.pil()
    obama.thumbnail((900, 900))
    biden.thumbnail((800, 800))
    canvas = PILImage.new("RGB", (obama.width + 40 + biden.width, 900), "white")
    canvas.paste(obama, (0, 0))
    canvas.paste(biden, (obama.width + 40, 0))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    group = ImageRef(image=load_bytes(buf.getvalue()))

    both = vendor.detect(group, 10, CTX).faces
    assert len(both) == 2
    assert both[0].width * both[0].height > both[1].width * both[1].height
    (largest,) = vendor.detect(group, 1, CTX).faces
    assert largest == both[0]
    assert largest.left + largest.width <= obama.width


# --- features ----------------------------------------------------------------------------------------


def test_features(vendor, face_bytes):
    first = vendor.features(ImageRef(image=load_bytes(face_bytes("obama.jpg"))), CTX)
    again = vendor.features(ImageRef(image=load_bytes(face_bytes("obama.jpg"))), CTX)
    assert first.model == engine.MODEL == "dlib_face_recognition_resnet_model_v1"
    assert len(first.embedding) == 128
    assert all(type(x) is float for x in first.embedding)
    assert first.embedding == again.embedding
    assert first.billed is False
    assert first.vendor_request_id is None


def test_features_agree_with_compare(vendor, ref):
    a = vendor.features(ref("obama.jpg"), CTX).embedding
    b = vendor.features(ref("obama2.jpg"), CTX).embedding
    compared = vendor.compare(ref("obama.jpg"), ref("obama2.jpg"), CTX)
    assert round(engine.distance(np.array(a), np.array(b)), 4) == compared.vendor_score


def test_features_without_a_face(vendor, blank):
    with pytest.raises(NoFace, match="no face found in the image"):
        vendor.features(blank, CTX)


def test_a_large_jpeg_is_detected_reduced_with_boxes_in_original_pixels(vendor, ref, face_bytes):
    """A 4x upscale of obama.jpg is decoded at 1/2 scale for the engine; its face box,
    mapped back, is the original's box times four (to the detector's few-pixel jitter)."""
    src = PILImage.open(io.BytesIO(face_bytes("obama.jpg")))
    buf = io.BytesIO()
    src.resize((src.width * 4, src.height * 4)).save(buf, format="JPEG", quality=92)
    big = ImageRef(image=load_bytes(buf.getvalue()))
    assert big.image.engine_rgb[1] == 2

    (small_box,) = vendor.detect(ref("obama.jpg"), 5, CTX).faces
    (big_box,) = vendor.detect(big, 5, CTX).faces
    for field in ("left", "top", "width", "height"):
        assert getattr(big_box, field) == pytest.approx(4 * getattr(small_box, field), rel=0.06, abs=12), field
    assert big_box.left + big_box.width <= big.image.width and big_box.top + big_box.height <= big.image.height
    # The same person either way.
    assert vendor.compare(big, ref("obama2.jpg"), CTX).similarity > THRESHOLDS["normal"]
