"""Benchmark of pre-screening (facegate.prescreen): billed calls and cost of a 1,000-call
compare mix with 20 % useless photos, with FACEGATE_PRESCREEN off, faces and quality, and
what the screen adds per call; plus the engine's cold cost a screening function pays once.

    .venv/bin/python bench/prescreen_bench.py [--calls 1000] [--useless 0.2] [--price 0.10] [--runs 3]

The mix: each call compares two photos; 80 % are ordinary pairs (the repository's photos and
their rescaled, recompressed, darkened, blurred and cropped variants), 20 % carry one useless
photo (a blank wall, a dark frame, a heavily blurred face, a tiny face in a large frame).
The vendor is a sandbox that bills every answered call (Shuxun's ``isFee``: "是否收费"),
so a call is billed exactly when the screen lets it through. Each distinct photo is screened
``--runs`` times in this process (the median is its cost); the 1,000 calls are then drawn
(fixed seed) and added up from those outcomes and costs. The service-level behaviour (the
sandbox really gets no request) is tests/integration/test_prescreen.py. Prints a markdown
section for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("FACEGATE_SHARED", ROOT.parent / "shared")) / "testdata" / "faces"


def encode(img, fmt: str = "JPEG", **kw):
    from facegate.images import load_bytes

    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return load_bytes(buf.getvalue())


def photos():
    """(label, kind, Image): kind "good" or "useless"."""
    import numpy as np
    from PIL import Image as PILImage
    from PIL import ImageEnhance, ImageFilter

    out = []
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "32bit.png"):
        img = PILImage.open(FACES / name).convert("RGB")
        w, h = img.size
        out += [
            (f"{name}", "good", encode(img, quality=95)),
            (f"{name} x0.25", "good", encode(img.resize((w // 4, h // 4)), quality=90)),
            (f"{name} q10", "good", encode(img, quality=10)),
            (f"{name} dark x0.35", "good", encode(ImageEnhance.Brightness(img).enhance(0.35), quality=90)),
            (f"{name} blur r2", "good", encode(img.filter(ImageFilter.GaussianBlur(2)), quality=90)),
            (f"{name} cropped", "good", encode(img.crop((w // 6, h // 8, w * 5 // 6, h * 3 // 4)), quality=90)),
        ]
    rng = np.random.default_rng(7)
    plaster = rng.normal(180, 6, (900, 1200, 3)).clip(0, 255).astype(np.uint8)
    obama = PILImage.open(FACES / "obama.jpg").convert("RGB")
    tiny = PILImage.new("RGB", (1600, 1600), (128, 128, 128))
    thumb = obama.copy()
    thumb.thumbnail((60, 60))
    tiny.paste(thumb, (800, 800))
    out += [
        ("wall", "useless", encode(PILImage.fromarray(plaster).filter(ImageFilter.GaussianBlur(1)), quality=85)),
        ("dark frame", "useless", encode(ImageEnhance.Brightness(obama).enhance(0.02), quality=90)),
        ("heavy blur r16", "useless", encode(obama.filter(ImageFilter.GaussianBlur(16)), quality=90)),
        ("tiny face (20 px in 1600)", "useless", encode(tiny, quality=90)),
    ]
    return out


def engine_cold_ms() -> tuple[float, float]:
    """(import dlib+numpy, load the models) in a fresh interpreter: what a function that screens
    pays once per container, on its first screened request."""
    code = (
        "import time;t=time.perf_counter();import dlib, numpy;a=time.perf_counter();"
        "from facegate import engine;engine.models();b=time.perf_counter();print((a-t)*1000,(b-a)*1000)"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True) for _ in range(3)]
    pairs = [tuple(map(float, r.stdout.split())) for r in runs]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--useless", type=float, default=0.2)
    ap.add_argument("--price", type=float, default=0.10, help="price per billed call (CNY)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    from facegate import engine, prescreen

    import_ms, load_ms = engine_cold_ms()
    engine.models()
    items = photos()
    measured = {}  # label -> {mode: (refusal check or None, median ms)}
    for label, _kind, image in items:
        measured[label] = {}
        for mode in ("faces", "quality"):
            times, check = [], None
            for _ in range(args.runs):
                t = time.perf_counter()
                refusal = prescreen.screen(image, mode).refusal
                times.append((time.perf_counter() - t) * 1000)
                check = refusal.check if refusal else None
            measured[label][mode] = (check, statistics.median(times))

    good = [label for label, kind, _ in items if kind == "good"]
    useless = [label for label, kind, _ in items if kind == "useless"]
    rng = random.Random(13)
    calls = []
    for _ in range(args.calls):
        pair = [rng.choice(good), rng.choice(good)]
        if rng.random() < args.useless:
            pair[rng.randrange(2)] = rng.choice(useless)
        calls.append(pair)
    n_useless = sum(any(p in useless for p in pair) for pair in calls)

    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d}. Command: `.venv/bin/python bench/prescreen_bench.py --calls {args.calls}`."
    )
    print(
        f"\n{args.calls} compare calls, {n_useless} with a useless photo; price {args.price:.2f} CNY per billed call "
        "(the sandbox bills every answered call).\n"
    )
    print(
        "| FACEGATE_PRESCREEN | billed calls | est. cost (CNY) | billed calls avoided | good calls refused "
        "| screen ms/call (mean) | screen ms/call (p95) |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode in ("off", "faces", "quality"):
        billed = avoided = good_refused = 0
        per_call = []
        for pair in calls:
            if mode == "off":
                billed += 1
                per_call.append(0.0)
                continue
            ms, refused = 0.0, False
            for label in pair:  # the service stops at the first refused image
                check, t = measured[label][mode]
                ms += t
                if check:
                    refused = True
                    break
            per_call.append(ms)
            if refused:
                avoided += 1
                good_refused += all(p in good for p in pair)
            else:
                billed += 1
        per_call.sort()
        p95 = per_call[int(len(per_call) * 0.95) - 1]
        print(
            f"| {mode} | {billed} | {billed * args.price:.2f} | {avoided} | {good_refused} "
            f"| {statistics.fmean(per_call):.0f} | {p95:.0f} |"
        )

    print("\nEach photo (median of", args.runs, "screens, ms; refusal check or `pass`):\n")
    print("| photo | kind | faces | ms | quality | ms |")
    print("|---|---|---|---|---|---|")
    for label, kind, _ in items:
        f, q = measured[label]["faces"], measured[label]["quality"]
        print(f"| {label} | {kind} | {f[0] or 'pass'} | {f[1]:.0f} | {q[0] or 'pass'} | {q[1]:.0f} |")
    print(
        f"\nEngine cold cost in a screening function (fresh interpreter, median of 3): import dlib + numpy "
        f"{import_ms:.0f} ms, load the detector and models {load_ms:.0f} ms."
    )


if __name__ == "__main__":
    main()
