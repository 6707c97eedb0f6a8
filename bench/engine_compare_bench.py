"""Benchmark of a built-in engine compare, before and after the face ResNet moved from
dlib to numpy, with accuracy measured in the same run.

    .venv/bin/python bench/engine_compare_bench.py [--runs 30] [--cpu N]

The process pins itself to one CPU (``--cpu``, default the first it may use): one
Lambda vCPU; OpenBLAS runs one thread (the engine sets it: ``engine_net.use_one_blas_thread``).
Both pipelines are in the code, so they run interleaved in one process and their
ratio is not coloured by what else the machine does meanwhile:

- before: ``LocalVendor.compare`` with the descriptor from dlib's own network,
  ``face_recognition_model_v1.compute_face_descriptor(rgb, shape, num_jitters=0)``
  (dlib-bin is built without BLAS), as ``engine.embed`` did until the change;
- after: ``LocalVendor.compare`` as it is: dlib cuts the 150 px chip, ``engine_net``
  runs the same network in numpy.

Each timed compare starts from the bytes (``load_bytes``, the engine's decode, two
detections, two embeddings), as a request does. Accuracy: the repository's photos
(obama.jpg, obama2.jpg and 32bit.png are one man, biden.jpg another) and variants made
from each (mirrored, rescaled 0.5x and 1.5x, recompressed at JPEG quality 30, cropped
around the face, rotated -5 and +5 degrees); every pair of them is a same-person or a
different-person pair, decided at the engine's ``normal`` threshold (distance < 0.6).
The cold cost of the network (dlib's model load against ``engine_net.load``) is taken
in fresh interpreters. Prints a markdown section for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("FACEGATE_SHARED", ROOT.parent / "shared")) / "testdata" / "faces"
PHOTOS = {"obama.jpg": "obama", "obama2.jpg": "obama", "32bit.png": "obama", "biden.jpg": "biden"}
PAIRS = [("obama.jpg", "obama2.jpg"), ("obama.jpg", "biden.jpg"), ("32bit.png", "obama2.jpg")]


def pin_to_one_cpu(cpu: int | None) -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    chosen = cpu if cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {chosen})
    return f"pinned to CPU {chosen}"


def variants(name: str, data: bytes) -> dict[str, bytes]:
    """The photo and seven transformed copies of it, each encoded as a request would send it."""
    import numpy as np
    from PIL import Image as PILImage
    from PIL import ImageOps

    from facegate import engine
    from facegate.images import load_bytes

    original = load_bytes(data)
    rgb = original.rgb
    img = PILImage.fromarray(rgb)
    face = engine.detect(rgb)[0].box
    margin = face.width // 2  # the face and half its width around it: a tight ID-style crop
    crop = img.crop(
        (
            max(0, face.left - margin),
            max(0, face.top - margin),
            min(img.width, face.left + face.width + margin),
            min(img.height, face.top + face.height + margin),
        )
    )

    def jpeg(im, quality: int = 92) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        return buf.getvalue()

    def scaled(k: float):
        return img.resize((round(img.width * k), round(img.height * k)), PILImage.Resampling.BICUBIC)

    def rotated(deg: float):
        return img.rotate(deg, resample=PILImage.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))

    assert np.asarray(img).shape == rgb.shape
    return {
        name: data,
        f"{name} mirrored": jpeg(ImageOps.mirror(img)),
        f"{name} 0.5x": jpeg(scaled(0.5)),
        f"{name} 1.5x": jpeg(scaled(1.5)),
        f"{name} q30": jpeg(img, quality=30),
        f"{name} cropped": jpeg(crop),
        f"{name} rotated -5": jpeg(rotated(-5)),
        f"{name} rotated +5": jpeg(rotated(5)),
    }


@contextlib.contextmanager
def dlib_network(recognizer) -> Iterator[None]:
    """``engine.embed`` as it was before the change, for the calls inside the block."""
    import dlib
    import numpy as np

    from facegate import engine

    def embed_with_dlib(rgb, face):
        m = engine.models()
        with engine._run_lock:
            shape = m.shape_predictor(rgb, dlib.rectangle(*face.rect))
            descriptor = recognizer.compute_face_descriptor(rgb, shape, num_jitters=0)
        return np.asarray(descriptor, dtype=np.float64)

    numpy_embed = engine.embed
    engine.embed = embed_with_dlib  # LocalVendor calls engine.embed through the module
    try:
        yield
    finally:
        engine.embed = numpy_embed


def descriptor_of(data: bytes):
    """LocalVendor's descriptor (``LocalVendor._descriptor``): None where it finds no face."""
    from facegate.errors import NoFace
    from facegate.images import load_bytes
    from facegate.vendors.base import ImageRef
    from facegate.vendors.local import LocalVendor

    try:
        return LocalVendor()._descriptor(ImageRef(image=load_bytes(data)), "image")
    except NoFace:
        return None


def make_compares(recognizer):
    from facegate.images import load_bytes
    from facegate.vendors.base import CallContext, ImageRef
    from facegate.vendors.local import LocalVendor

    vendor = LocalVendor()
    ctx = CallContext(now=datetime.now(UTC), nonce="bench", request_id="bench")

    def compare_after(a: bytes, b: bytes) -> float:
        return vendor.compare(ImageRef(image=load_bytes(a)), ImageRef(image=load_bytes(b)), ctx).vendor_score

    def compare_before(a: bytes, b: bytes) -> float:
        with dlib_network(recognizer):
            return compare_after(a, b)

    return compare_before, compare_after


def accuracy(images: dict[str, bytes], owner: dict[str, str], describe) -> dict[str, object]:
    from facegate import engine
    from facegate.vendors.local import DISTANCE_THRESHOLDS

    threshold = DISTANCE_THRESHOLDS["normal"]
    descriptors = {key: describe(data) for key, data in images.items()}
    same = [0, 0]  # matched, pairs
    different = [0, 0]  # rejected, pairs
    same_d: list[float] = []
    diff_d: list[float] = []
    for a, b in itertools.combinations(images, 2):
        da, db = descriptors[a], descriptors[b]
        d = engine.distance(da, db) if da is not None and db is not None else math.inf
        if owner[a] == owner[b]:
            same[1] += 1
            same[0] += d < threshold
            same_d.append(d)
        else:
            different[1] += 1
            different[0] += d >= threshold
            diff_d.append(d)
    return {
        "no_face": sorted(k for k, v in descriptors.items() if v is None),
        "same": same,
        "different": different,
        "max_same": max(same_d),
        "min_diff": min(diff_d),
        "descriptors": descriptors,
    }


def steps(data: bytes, recognizer) -> dict[str, float]:
    """One descriptor, step by step, both networks included: where the time goes."""
    import dlib

    from facegate import engine
    from facegate.engine_net import CHIP_PADDING, CHIP_SIZE
    from facegate.images import load_bytes

    m = engine.models()
    out: dict[str, float] = {}
    t = time.perf_counter()
    rgb, _ = load_bytes(data).engine_rgb
    out["decode (load_bytes + engine_rgb)"] = time.perf_counter() - t
    t = time.perf_counter()
    face = engine.largest_face(rgb)
    out["largest_face (HOG, ≤512 px copy)"] = time.perf_counter() - t
    t = time.perf_counter()
    shape = m.shape_predictor(rgb, dlib.rectangle(*face.rect))
    out["5-point landmarks"] = time.perf_counter() - t
    t = time.perf_counter()
    recognizer.compute_face_descriptor(rgb, shape, num_jitters=0)
    out["before: dlib chip + ResNet (compute_face_descriptor)"] = time.perf_counter() - t
    t = time.perf_counter()
    chip = dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    out["after: dlib chip (get_face_chip)"] = time.perf_counter() - t
    t = time.perf_counter()
    m.net.descriptor(chip)
    out["after: numpy ResNet (engine_net)"] = time.perf_counter() - t
    return out


def cold_load(which: str) -> dict[str, float]:
    """In a fresh interpreter: the network's load alone (imports done first), and its RSS."""
    import dlib
    import numpy  # noqa: F401

    from facegate import engine, engine_net

    path = engine.models_dir() / engine.RECOGNITION_FILE
    rss = rss_mb()
    t = time.perf_counter()
    network = dlib.face_recognition_model_v1(str(path)) if which == "dlib" else engine_net.load(path)
    seconds = time.perf_counter() - t
    kept = rss_mb() - rss  # measured while the network is still referenced
    del network
    return {"seconds": seconds, "rss_mb": kept}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] * 1000


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import dlib
    import numpy

    from facegate import engine_net

    return (
        f"{cpu}, {os.cpu_count()} CPUs on the machine, Python {platform.python_version()}, "
        f"dlib {dlib.__version__} (BLAS {'on' if dlib.DLIB_USE_BLAS else 'off'}, "
        f"AVX {'on' if dlib.USE_AVX_INSTRUCTIONS else 'off'}), numpy {numpy.__version__} "
        f"(OpenBLAS threads: {engine_net.use_one_blas_thread()})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed compares per pair and pipeline")
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh interpreters per network load")
    parser.add_argument("--cpu", type=int, default=None, help="the CPU to pin to (default: the first allowed)")
    parser.add_argument("--cold-load", choices=("dlib", "numpy"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    pinned = pin_to_one_cpu(args.cpu)
    if args.cold_load:
        print(json.dumps(cold_load(args.cold_load)))
        return

    import dlib

    from facegate import engine

    engine.models()
    recognizer = dlib.face_recognition_model_v1(str(engine.models_dir() / engine.RECOGNITION_FILE))
    raw = {name: (FACES / name).read_bytes() for name in PHOTOS}
    images: dict[str, bytes] = {}
    owner: dict[str, str] = {}
    for name, data in raw.items():
        for key, variant in variants(name, data).items():
            images[key] = variant
            owner[key] = PHOTOS[name]

    compare_before, compare_after = make_compares(recognizer)
    timings: dict[tuple[str, str], dict[str, list[float]]] = {}
    for a, b in PAIRS:
        runs = timings[(a, b)] = {"before": [], "after": []}
        compare_before(raw[a], raw[b])  # warm-up, untimed
        compare_after(raw[a], raw[b])
        for _ in range(args.runs):  # interleaved: both see the same machine
            for label, fn in (("before", compare_before), ("after", compare_after)):
                t = time.perf_counter()
                fn(raw[a], raw[b])
                runs[label].append(time.perf_counter() - t)

    profile: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for name in PAIRS[0]:
            for step, seconds in steps(raw[name], recognizer).items():
                profile.setdefault(f"{step}|{name}", []).append(seconds)

    with dlib_network(recognizer):
        before = accuracy(images, owner, descriptor_of)
    after = accuracy(images, owner, descriptor_of)
    drift = [
        float(abs(before["descriptors"][k] - after["descriptors"][k]).max())
        for k in images
        if before["descriptors"][k] is not None and after["descriptors"][k] is not None
    ]

    cold: dict[str, list[dict[str, float]]] = {"dlib": [], "numpy": []}
    for _ in range(args.cold_runs):
        for which in cold:
            command = [sys.executable, __file__, "--cold-load", which]
            if args.cpu is not None:
                command += ["--cpu", str(args.cpu)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            cold[which].append(json.loads(done.stdout))

    print("## Engine compare: the face ResNet in numpy instead of dlib\n")
    print(f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; {pinned}.")
    print(
        f"`.venv/bin/python bench/engine_compare_bench.py --runs {args.runs}` "
        f"(before and after interleaved in one process; load average {os.getloadavg()[0]:.1f} at the end: "
        "other work was running on the machine).\n"
    )
    print("| compare, from bytes, warm, one core | before p50 ms | after p50 ms | after/before p50 ", end="")
    print("| before p95 | after p95 |")
    print("|---|---|---|---|---|---|")
    for (a, b), runs in timings.items():
        b50, b95 = stats(runs["before"])
        a50, a95 = stats(runs["after"])
        print(f"| {a} vs {b} | {b50:.0f} | {a50:.0f} | **{a50 / b50:.2f}** | {b95:.0f} | {a95:.0f} |")
    print(f"\nWhere the time of one {PAIRS[0][0]} vs {PAIRS[0][1]} compare goes (median ms of {args.runs} runs):\n")
    print(f"| step | {PAIRS[0][0]} | {PAIRS[0][1]} |")
    print("|---|---|---|")
    for step in dict.fromkeys(k.split("|")[0] for k in profile):
        cells = " | ".join(f"{statistics.median(profile[f'{step}|{n}']) * 1000:.1f}" for n in PAIRS[0])
        print(f"| {step} | {cells} |")
    print(
        f"\nAccuracy at the `normal` threshold (distance < 0.6) on {len(images)} images "
        f"({len(raw)} photos x 8: original, mirrored, 0.5x, 1.5x, JPEG q30, cropped, rotated -5 and +5 degrees):\n"
    )
    print("| pipeline | same-person matched | different-person rejected | no face found ", end="")
    print("| max same d | min different d |")
    print("|---|---|---|---|---|---|")
    for label, acc in (("before (dlib)", before), ("after (numpy)", after)):
        (sm, sn), (dr, dn) = acc["same"], acc["different"]
        print(
            f"| {label} | {sm}/{sn} ({sm / sn:.1%}) | {dr}/{dn} ({dr / dn:.1%}) | {len(acc['no_face'])} "
            f"| {acc['max_same']:.4f} | {acc['min_diff']:.4f} |"
        )
    print(
        f"\nThe same image's descriptor, dlib vs numpy: largest component difference {max(drift):.1e} "
        f"(median over the images {statistics.median(drift):.1e})."
    )
    print(f"\nCold: loading the network in a fresh interpreter (median of {args.cold_runs}; imports excluded):\n")
    print("| network load | seconds | RSS added MB |")
    print("|---|---|---|")
    for which, label in (
        ("dlib", "before: `dlib.face_recognition_model_v1(...)`"),
        ("numpy", "after: `engine_net.load(...)`"),
    ):
        seconds = statistics.median(r["seconds"] for r in cold[which])
        rss = statistics.median(r["rss_mb"] for r in cold[which])
        print(f"| {label} | {seconds:.3f} | {rss:.0f} |")
    for label, acc in (("before", before), ("after", after)):
        if acc["no_face"]:
            print(f"\nNo face found ({label}): {', '.join(acc['no_face'])}.")
    if after["same"][0] < before["same"][0] or after["different"][0] < before["different"][0] or max(drift) > 1e-4:
        print("\n**Accuracy regressed.**")
        sys.exit(1)


if __name__ == "__main__":
    main()
