"""The built-in engine on real photos: detection, embeddings, model loading."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from facegate import engine
from facegate.errors import VendorNotConfigured
from facegate.images import load_bytes


def iou(a, b) -> float:
    ax2, ay2 = a.left + a.width, a.top + a.height
    bx2, by2 = b.left + b.width, b.top + b.height
    w = max(0, min(ax2, bx2) - max(a.left, b.left))
    h = max(0, min(ay2, by2) - max(a.top, b.top))
    inter = w * h
    return inter / (a.width * a.height + b.width * b.height - inter)


def gradient_jpeg() -> bytes:
    x = np.linspace(0, 255, 400, dtype=np.uint8)
    rgb = np.stack([np.tile(x, (400, 1)), np.tile(x[:, None], (1, 400)), np.full((400, 400), 128, np.uint8)], -1)
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def rgb(face_bytes):
    cache: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = load_bytes(face_bytes(name)).rgb
        return cache[name]

    return get


def resized(rgb: np.ndarray, max_side: int) -> np.ndarray:
    img = PILImage.fromarray(rgb)
    scale = max_side / max(img.size)
    return np.asarray(img.resize((round(img.width * scale), round(img.height * scale)), PILImage.Resampling.BICUBIC))


# --- detection ---------------------------------------------------------------------------


def test_detect_obama_finds_one_plausible_face(rgb):
    image = rgb("obama.jpg")
    height, width = image.shape[:2]
    faces = engine.detect(image)
    assert len(faces) == 1
    box = faces[0].box
    assert box.left >= 0
    assert box.top >= 0
    assert box.left + box.width <= width
    assert box.top + box.height <= height
    # a portrait: the face is a sizeable, roughly square part of the upper half
    assert 0.15 * width < box.width < 0.6 * width
    assert 0.8 < box.width / box.height < 1.25
    assert box.top + box.height / 2 < height / 2
    assert 0.5 < box.confidence <= 1.0


def test_boxes_of_large_images_are_in_original_pixels(rgb):
    image = rgb("obama.jpg")
    big = resized(image, 2 * max(image.shape[:2]))  # well past DETECT_MAX_SIDE
    assert max(big.shape[:2]) > engine.DETECT_MAX_SIDE
    (face,) = engine.detect(image)
    (big_face,) = engine.detect(big)
    sx, sy = big.shape[1] / image.shape[1], big.shape[0] / image.shape[0]
    expected = type(face.box)(
        left=round(face.box.left * sx),
        top=round(face.box.top * sy),
        width=round(face.box.width * sx),
        height=round(face.box.height * sy),
    )
    assert iou(big_face.box, expected) > 0.7


def test_tall_image_is_detected_after_downscaling(rgb):
    image = rgb("biden.jpg")  # 970x2204: detection runs on a copy
    assert max(image.shape[:2]) > engine.DETECT_MAX_SIDE
    (face,) = engine.detect(image)
    assert face.box.top + face.box.height <= image.shape[0]
    assert face.box.width > 200  # in original pixels, not the downscaled copy's


def test_small_image_gets_an_upsampled_second_pass(rgb):
    small = resized(rgb("obama.jpg"), 200)  # the face is ~50 px, under the 80 px HOG window
    assert engine.detect(small, upsample=0) == []
    faces = engine.detect(small)
    assert len(faces) == 1
    assert faces[0].box.left + faces[0].box.width <= small.shape[1]


def test_no_face_in_a_gradient():
    assert engine.detect(load_bytes(gradient_jpeg()).rgb) == []


def test_several_faces_come_largest_first(rgb):
    obama = resized(rgb("obama.jpg"), 900)  # face ~190 px
    biden = resized(rgb("biden.jpg"), 800)  # face ~120 px
    canvas = np.full((900, 1150, 3), 255, np.uint8)
    canvas[: obama.shape[0], : obama.shape[1]] = obama
    canvas[: biden.shape[0], 750 : 750 + biden.shape[1]] = biden
    faces = engine.detect(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert faces[0].box.left + faces[0].box.width <= obama.shape[1]
    assert faces[1].box.left >= 750


def test_largest_face_of_a_portrait_is_found_on_the_coarse_copy(rgb, monkeypatch):
    image = rgb("obama.jpg")  # 910x1137: face ~240 px, found at <= COARSE_MAX_SIDE
    assert max(image.shape[:2]) > engine.COARSE_MAX_SIDE
    (full,) = engine.detect(image)
    monkeypatch.setattr(engine, "detect", lambda *a, **k: pytest.fail("the whole detect was not needed"))
    face = engine.largest_face(image)
    assert face is not None
    assert iou(face.box, full.box) > 0.7  # in the original's pixels, like detect's


def test_largest_face_falls_back_to_the_whole_detect_for_a_small_face(rgb):
    # A 1300 px canvas with a ~75 px face: under the HOG window on the <= 512 px copy.
    face_img = resized(rgb("obama.jpg"), 300)
    canvas = np.full((1300, 1300, 3), 255, np.uint8)
    canvas[500 : 500 + face_img.shape[0], 500 : 500 + face_img.shape[1]] = face_img
    coarse = engine._downscale(canvas, engine.COARSE_MAX_SIDE)
    assert engine._detect_on(canvas, coarse, (0,)) == []
    face = engine.largest_face(canvas)
    assert face is not None
    assert face == engine.detect(canvas)[0]


def test_largest_face_is_the_largest_of_several(rgb):
    obama = resized(rgb("obama.jpg"), 900)
    biden = resized(rgb("biden.jpg"), 800)
    canvas = np.full((900, 1150, 3), 255, np.uint8)
    canvas[: obama.shape[0], : obama.shape[1]] = obama
    canvas[: biden.shape[0], 750 : 750 + biden.shape[1]] = biden
    face = engine.largest_face(canvas)
    assert face is not None
    assert face.box.left + face.box.width <= obama.shape[1]


def test_largest_face_of_a_gradient_is_none():
    assert engine.largest_face(load_bytes(gradient_jpeg()).rgb) is None


def test_boxes_are_clipped_to_the_image():
    # (left, top, right, bottom) inclusive, detection pixels at scale 2
    face = engine._to_face((-10, -5, 49, 59), 1.0, 2.0, 2.0, 100, 110)
    assert face is not None
    assert face.rect == (-20, -10, 99, 119)
    assert (face.box.left, face.box.top, face.box.width, face.box.height) == (0, 0, 100, 110)
    assert engine._to_face((60, 0, 80, 10), 1.0, 2.0, 2.0, 100, 110) is None  # wholly outside


def test_confidence_rises_with_the_detector_score():
    low = engine._to_face((0, 0, 9, 9), 0.0, 1, 1, 10, 10)
    high = engine._to_face((0, 0, 9, 9), 2.5, 1, 1, 10, 10)
    assert low.box.confidence == 0.5
    assert 0.9 < high.box.confidence < 1.0


def test_rejects_arrays_that_are_not_rgb(rgb):
    with pytest.raises(ValueError, match="RGB"):
        engine.detect(rgb("obama.jpg")[..., 0])
    with pytest.raises(ValueError, match="RGB"):
        engine.detect(rgb("obama.jpg").astype(np.float32))


# --- embeddings ---------------------------------------------------------------------------


def embedding(image: np.ndarray) -> np.ndarray:
    faces = engine.detect(image)
    assert faces
    return engine.embed(image, faces[0])


def test_embedding_is_128_floats_and_deterministic(rgb):
    a = embedding(rgb("obama.jpg"))
    b = embedding(rgb("obama.jpg").copy())
    assert a.shape == (engine.DIMENSION,) == (128,)
    assert a.dtype == np.float64
    assert np.array_equal(a, b)
    assert 0.0 < float(np.linalg.norm(a)) < 2.0


def test_distances_separate_people(rgb):
    obama, obama2, biden = (embedding(rgb(n)) for n in ("obama.jpg", "obama2.jpg", "biden.jpg"))
    assert engine.distance(obama, obama) == 0.0
    assert engine.distance(obama, obama2) == pytest.approx(engine.distance(obama2, obama))
    assert engine.distance(obama, obama2) < 0.5
    assert engine.distance(obama, biden) > 0.65
    assert engine.distance(obama2, biden) > 0.65


def test_rgba_png_is_the_same_photo_as_obama2(rgb):
    png, jpg = embedding(rgb("32bit.png")), embedding(rgb("obama2.jpg"))
    assert engine.distance(png, jpg) < 0.1


def test_concurrent_calls_give_the_serial_answers(rgb):
    names = ["obama.jpg", "obama2.jpg", "biden.jpg"]
    serial = {n: embedding(rgb(n)) for n in names}

    def run(name: str):
        return name, embedding(rgb(name))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, names * 4))
    for name, emb in results:
        assert np.array_equal(emb, serial[name]), name


# --- models ---------------------------------------------------------------------------------


def test_models_are_loaded_once():
    first = engine.models()
    assert engine.models() is first
    assert engine._models is first


def test_first_use_from_many_threads_loads_once(monkeypatch):
    monkeypatch.setattr(engine, "_models", None)
    calls: list[Path] = []
    gate = threading.Barrier(8)

    def fake_load(directory: Path):
        calls.append(directory)
        return engine.Models(detector=object(), shape_predictor=object(), net=object(), directory=directory)

    monkeypatch.setattr(engine, "_load", fake_load)

    def first_use():
        gate.wait()
        return engine.models()

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda _: first_use(), range(8)))
    assert len(calls) == 1
    assert all(m is got[0] for m in got)


def test_models_dir_defaults_to_the_package(monkeypatch, tmp_path):
    monkeypatch.delenv(engine.MODELS_DIR_ENV, raising=False)
    monkeypatch.setattr(engine, "LAYER_MODELS_DIR", tmp_path / "absent")
    directory = engine.models_dir()
    assert directory.parts[-2:] == ("face_recognition_models", "models")
    assert all((directory / f).is_file() for f in engine.MODEL_FILES)


def test_models_dir_prefers_the_layer(monkeypatch, tmp_path):
    monkeypatch.delenv(engine.MODELS_DIR_ENV, raising=False)
    monkeypatch.setattr(engine, "LAYER_MODELS_DIR", tmp_path)
    (tmp_path / engine.SHAPE_PREDICTOR_FILE).write_bytes(b"")
    assert engine.models_dir() != tmp_path  # half a layer is no layer
    (tmp_path / engine.RECOGNITION_FILE).write_bytes(b"")
    assert engine.models_dir() == tmp_path


def test_models_dir_from_the_environment_loads(monkeypatch, tmp_path):
    monkeypatch.delenv(engine.MODELS_DIR_ENV, raising=False)
    package = engine.models_dir()
    for name in engine.MODEL_FILES:
        os.symlink(package / name, tmp_path / name)
    monkeypatch.setenv(engine.MODELS_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(engine, "_models", None)
    assert engine.available()
    assert engine.models().directory == tmp_path


def test_missing_model_files_are_a_configuration_error(monkeypatch, tmp_path):
    monkeypatch.setenv(engine.MODELS_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(engine, "_models", None)
    assert not engine.available()
    with pytest.raises(VendorNotConfigured) as err:
        engine.models()
    assert err.value.vendor == "local"
    assert str(tmp_path) not in err.value.message
    assert engine._models is None  # a later call may succeed once the files are there


def test_importing_the_engine_and_vendor_stays_cheap():
    # A fresh interpreter: this one already holds numpy and dlib.
    code = (
        "import sys, facegate.engine, facegate.vendors.local\n"
        "heavy = sorted({'dlib', 'numpy', 'PIL'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603  (this interpreter, fixed code)
