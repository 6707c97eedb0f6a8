"""The numpy face network against dlib's own: same descriptors, same distances, and a
model file it does not know is refused, never half-read."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import dlib  # the engine is a dev dependency (requirements-dev.txt): these tests always run
import numpy as np
import pytest
from PIL import Image as PILImage

from facegate import engine, engine_net
from facegate.errors import VendorNotConfigured
from facegate.images import load_bytes

PHOTOS = ("obama.jpg", "obama2.jpg", "biden.jpg", "32bit.png")
# float32 throughout, summed in another order than dlib's: measured ≤ 4e-7 per component and
# ≤ 6e-7 on distances here; 1e-5 leaves room for another CPU's (arm64's) rounding. README and
# engine.py quote this bound.
COMPONENT_TOLERANCE = 1e-5
DISTANCE_TOLERANCE = 1e-5


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(PILImage.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _variants(rgb: np.ndarray) -> dict[str, np.ndarray]:
    img = PILImage.fromarray(rgb)
    w, h = img.size
    return {
        "original": rgb,
        "mirrored": np.ascontiguousarray(rgb[:, ::-1]),
        "half": np.asarray(img.resize((w // 2, h // 2), PILImage.Resampling.BILINEAR)),
        "jpeg q35": _jpeg(rgb, 35),
        "cropped": np.ascontiguousarray(rgb[h // 10 : h - h // 20, w // 12 : w - w // 10]),
        "rotated 6°": np.asarray(img.rotate(6, resample=PILImage.Resampling.BILINEAR, expand=True)),
    }


@pytest.fixture(scope="module")
def recognizer():
    return dlib.face_recognition_model_v1(str(engine.models_dir() / engine.RECOGNITION_FILE))


@pytest.fixture(scope="module")
def cases(face_bytes, recognizer):
    """(label, rgb, face, dlib's descriptor of the image, the chip, dlib's descriptor of the chip)."""
    m = engine.models()
    out = []
    for name in PHOTOS:
        for variant, rgb in _variants(load_bytes(face_bytes(name)).rgb).items():
            face = engine.largest_face(rgb)
            assert face is not None, (name, variant)
            shape = m.shape_predictor(rgb, dlib.rectangle(*face.rect))
            chip = dlib.get_face_chip(rgb, shape, size=engine_net.CHIP_SIZE, padding=engine_net.CHIP_PADDING)
            from_image = np.asarray(recognizer.compute_face_descriptor(rgb, shape, num_jitters=0))
            from_chip = np.asarray(recognizer.compute_face_descriptor(chip, num_jitters=0))
            out.append((f"{name} {variant}", rgb, face, from_image, chip, from_chip))
    return out


def test_the_chip_is_what_dlib_describes(cases):
    # compute_face_descriptor(image, shape) cuts exactly get_face_chip(image, shape, 150, 0.25).
    for label, _, _, from_image, _, from_chip in cases:
        assert np.array_equal(from_image, from_chip), label


def test_descriptors_equal_dlibs(cases):
    net = engine.models().net
    worst = 0.0
    for label, _, _, _, chip, expected in cases:
        got = net.descriptor(chip)
        assert got.shape == (engine_net.DIMENSION,) and got.dtype == np.float32
        diff = float(np.max(np.abs(got - expected)))
        assert diff < COMPONENT_TOLERANCE, label
        worst = max(worst, diff)
    assert worst > 0.0 or len(cases) == 0  # a real computation, not dlib's output echoed


def test_engine_embed_equals_dlibs_descriptor_of_the_image(cases):
    for label, rgb, face, from_image, _, _ in cases:
        got = engine.embed(rgb, face)
        assert got.dtype == np.float64
        assert float(np.max(np.abs(got - from_image))) < COMPONENT_TOLERANCE, label


def test_distances_between_all_pairs_agree(cases):
    net = engine.models().net
    ours = [net.descriptor(chip) for *_, chip, _ in cases]
    theirs = [expected for *_, expected in cases]
    for i, j in itertools.combinations(range(len(cases)), 2):
        d_ours = engine.distance(ours[i], ours[j])
        d_dlib = engine.distance(theirs[i], theirs[j])
        assert abs(d_ours - d_dlib) < DISTANCE_TOLERANCE, (cases[i][0], cases[j][0])
        # and so every same-person / different-person decision is dlib's
        assert (d_ours < 0.6) == (d_dlib < 0.6), (cases[i][0], cases[j][0])


def test_the_decisions_are_right_on_the_photos(cases):
    net = engine.models().net
    by_person = {"obama": [], "biden": []}
    for label, *_, chip, _ in cases:
        by_person["biden" if label.startswith("biden") else "obama"].append(net.descriptor(chip))
    for a, b in itertools.combinations(by_person["obama"], 2):
        assert engine.distance(a, b) < 0.6
    for a in by_person["obama"]:
        for b in by_person["biden"]:
            assert engine.distance(a, b) >= 0.6


def test_rejects_a_chip_of_the_wrong_shape():
    net = engine.models().net
    with pytest.raises(ValueError, match="150"):
        net.descriptor(np.zeros((149, 150, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        net.descriptor(np.zeros((150, 150, 3), np.float32))


# --- the model file ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return (engine.models_dir() / engine.RECOGNITION_FILE).read_bytes()


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / engine.RECOGNITION_FILE
    path.write_bytes(data)
    return path


def test_a_truncated_file_is_refused(tmp_path, model_bytes):
    with pytest.raises(engine_net.ModelFormatError, match="ends early"):
        engine_net.load(_write(tmp_path, model_bytes[: len(model_bytes) // 2]))


def test_trailing_bytes_are_refused(tmp_path, model_bytes):
    with pytest.raises(engine_net.ModelFormatError, match="left after"):
        engine_net.load(_write(tmp_path, model_bytes + b"\x00"))


def test_an_unknown_layer_is_refused(tmp_path, model_bytes):
    at = model_bytes.index(b"con_4")
    changed = model_bytes[:at] + b"con_9" + model_bytes[at + 5 :]
    with pytest.raises(engine_net.ModelFormatError, match="con_9"):
        engine_net.load(_write(tmp_path, changed))


def test_a_different_network_shape_is_refused(tmp_path, model_bytes):
    # The first con_ (7×7, 32 filters): change its num_filters field from 32 to 33.
    at = model_bytes.index(b"con_4") + len(b"con_4")
    params_floats = 32 * 3 * 7 * 7 + 32
    # The params tensor: version (01 02), n (02 80 12), k nr nc (01 01 ×3), the floats;
    # then num_filters (01 20).
    num_filters_at = at + 2 + 3 + 6 + 4 * params_floats
    assert model_bytes[num_filters_at : num_filters_at + 2] == b"\x01\x20"
    changed = model_bytes[: num_filters_at + 1] + b"\x21" + model_bytes[num_filters_at + 2 :]
    with pytest.raises(engine_net.ModelFormatError, match="con_ settings"):
        engine_net.load(_write(tmp_path, changed))


def test_the_engine_reports_a_wrong_model_file_as_a_configuration_error(monkeypatch, tmp_path, model_bytes):
    (tmp_path / engine.SHAPE_PREDICTOR_FILE).symlink_to(engine.models_dir() / engine.SHAPE_PREDICTOR_FILE)
    _write(tmp_path, model_bytes[:-10])
    monkeypatch.setenv(engine.MODELS_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(engine, "_models", None)
    with pytest.raises(VendorNotConfigured) as err:
        engine.models()
    assert err.value.vendor == "local"
    assert engine._models is None


def test_the_engine_never_loads_dlibs_recognizer(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the engine loaded dlib's own face recognition network")

    monkeypatch.setattr(dlib, "face_recognition_model_v1", forbidden)
    monkeypatch.setattr(engine, "_models", None)
    assert isinstance(engine.models().net, engine_net.FaceNet)


# A fresh interpreter: BLAS set to 2 threads before the engine loads (so the check means
# something on a 1-core machine too), then the models loaded; prints what the engine's call
# returned and what threadpoolctl then reads from the library.
_BLAS_PROBE = r"""
import json
from threadpoolctl import threadpool_info, threadpool_limits
import numpy
threadpool_limits(limits=2, user_api="blas")
assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == [2]
from facegate import engine, engine_net
engine.models()
blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
print(json.dumps({"returned": engine_net.use_one_blas_thread(), "blas": blas}))
"""


def _blas_threads_after_engine_load(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    done = subprocess.run(  # noqa: S603 - this interpreter, our own probe
        [sys.executable, "-c", _BLAS_PROBE], capture_output=True, text=True, env={**clean, **env}, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_engine_sets_blas_to_one_thread():
    assert _blas_threads_after_engine_load() == {"returned": [1], "blas": [1]}


def test_the_engine_leaves_blas_threads_the_operator_set():
    assert _blas_threads_after_engine_load(OPENBLAS_NUM_THREADS="2") == {"returned": [2], "blas": [2]}


def test_the_generic_openmp_variable_does_not_count():
    # OMP_NUM_THREADS is set by images and tools for OpenMP libraries: not a say over this BLAS.
    assert _blas_threads_after_engine_load(OMP_NUM_THREADS="2") == {"returned": [1], "blas": [1]}


def test_no_blas_found_is_a_warning_once(monkeypatch):
    import threadpoolctl

    from facegate import observability

    warnings: list[str] = []
    monkeypatch.setattr(observability.logger, "warning", lambda msg, *a, **kw: warnings.append(msg))
    monkeypatch.setattr(threadpoolctl.ThreadpoolController, "_load_libraries", lambda self: None)
    monkeypatch.setattr(engine_net, "_blas_missing_reported", False)
    assert engine_net.use_one_blas_thread() == []
    assert engine_net.use_one_blas_thread() == []
    assert len(warnings) == 1 and "no BLAS" in warnings[0]


# --- the weights are read-only ------------------------------------------------------------


def _weights(net: engine_net.FaceNet) -> list[np.ndarray]:
    convs = [net.stem, *(c for block in net.blocks for c in (block.first, block.second))]
    return [net.channel_means, net.fc, *(a for c in convs for a in (c.weights, c.bias))]


def test_the_weights_cannot_be_written():
    net = engine.models().net
    for array in _weights(net):
        assert not array.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        net.stem.weights[0, 0] = 1.0


def test_a_forward_pass_changes_neither_the_weights_nor_the_chip(cases):
    net = engine.models().net
    before = [a.copy() for a in _weights(net)]
    chip = cases[0][4].copy()
    chip_before = chip.copy()
    net.descriptor(chip)
    assert np.array_equal(chip, chip_before)
    for a, b in zip(_weights(net), before, strict=True):
        assert np.array_equal(a, b)
