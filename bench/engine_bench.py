"""Benchmark of the built-in `local` engine: cold model load, warm latencies, memory.

    .venv/bin/python bench/engine_bench.py [--runs 20] [--cold-runs 5]

Cold numbers come from fresh interpreters (one per run), so the imports and the
model load are really first-time in that process; the OS page cache stays warm
after the first, as it does in a reused Lambda sandbox's host. Warm numbers are
taken in this process after one untimed warm-up call. Prints a markdown section
for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("FACEGATE_SHARED", ROOT.parent / "shared")) / "testdata" / "faces"


def rss_mb() -> float:
    """Current resident set size (Linux), else the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def cold() -> dict[str, float]:
    """One fresh process: what the first local call pays before any inference."""
    rss_start = rss_mb()
    t0 = time.perf_counter()
    from facegate import engine
    from facegate.vendors.local import LocalVendor  # noqa: F401  (the registry imports it)

    t1 = time.perf_counter()
    import dlib  # noqa: F401
    import numpy  # noqa: F401

    t2 = time.perf_counter()
    engine.models()
    t3 = time.perf_counter()
    return {
        "import_facegate_s": t1 - t0,
        "import_dlib_numpy_s": t2 - t1,
        "load_models_s": t3 - t2,
        "rss_start_mb": rss_start,
        "rss_loaded_mb": rss_mb(),
    }


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]  # nearest rank
    return statistics.median(ordered) * 1000, p95 * 1000


def timed(fn, runs: int) -> tuple[float, float]:
    fn()  # warm-up, untimed
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return stats(samples)


def gradient_jpeg() -> bytes:
    import numpy as np
    from PIL import Image as PILImage

    x = np.linspace(0, 255, 400, dtype=np.uint8)
    rgb = np.stack([np.tile(x, (400, 1)), np.tile(x[:, None], (1, 400)), np.full((400, 400), 128, np.uint8)], axis=-1)
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG")
    return buf.getvalue()


def warm(runs: int) -> tuple[list[tuple[str, float, float]], dict[str, float]]:
    import numpy as np
    from PIL import Image as PILImage

    from facegate import engine
    from facegate.images import load_bytes
    from facegate.vendors.base import CallContext, ImageRef
    from facegate.vendors.local import LocalVendor

    vendor = LocalVendor()
    ctx = CallContext(now=datetime.now(UTC), nonce="bench", request_id="bench")
    raw = {name: (FACES / name).read_bytes() for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "32bit.png")}
    decoded = {name: load_bytes(data) for name, data in raw.items()}
    rgb = {name: img.rgb for name, img in decoded.items()}
    blank = load_bytes(gradient_jpeg()).rgb
    small_obama = np.asarray(PILImage.fromarray(rgb["obama.jpg"]).resize((160, 200)))
    obama_face = engine.detect(rgb["obama.jpg"])[0]

    def compare_fresh():
        # what a request pays: decode both uploads, then detect and embed each
        vendor.compare(ImageRef(image=load_bytes(raw["obama.jpg"])), ImageRef(image=load_bytes(raw["obama2.jpg"])), ctx)

    def compare_decoded():
        vendor.compare(ImageRef(image=decoded["obama.jpg"]), ImageRef(image=decoded["obama2.jpg"]), ctx)

    def size(name: str) -> str:
        w, h = decoded[name].width, decoded[name].height
        scale = min(1.0, engine.DETECT_MAX_SIDE / max(w, h))
        return f"{w}x{h}, detected at {round(w * scale)}x{round(h * scale)}"

    rows = [
        ("compare obama vs obama2, from bytes (decode + 2x detect + 2x embed)", *timed(compare_fresh, runs)),
        ("compare obama vs obama2, images already decoded", *timed(compare_decoded, runs)),
        (
            "compare 32bit.png (RGBA) vs obama2, from bytes",
            *timed(
                lambda: vendor.compare(
                    ImageRef(image=load_bytes(raw["32bit.png"])),
                    ImageRef(image=load_bytes(raw["obama2.jpg"])),
                    ctx,
                ),
                runs,
            ),
        ),
        (f"detect obama.jpg ({size('obama.jpg')})", *timed(lambda: engine.detect(rgb["obama.jpg"]), runs)),
        (
            f"detect biden.jpg ({size('biden.jpg')})",
            *timed(lambda: engine.detect(rgb["biden.jpg"]), runs),
        ),
        (
            "detect 160x200 obama (face < 80 px: second, upsampled pass)",
            *timed(lambda: engine.detect(small_obama), runs),
        ),
        ("detect 400x400 gradient, no face (both passes)", *timed(lambda: engine.detect(blank), runs)),
        (
            "embed one face (landmarks + ResNet)",
            *timed(lambda: engine.embed(rgb["obama.jpg"], obama_face), runs),
        ),
        (
            "decode obama.jpg + RGB array (load_bytes + .rgb)",
            *timed(lambda: load_bytes(raw["obama.jpg"]).rgb, runs),
        ),
    ]
    memory = {"rss_after_warm_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}
    return rows, memory


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

    return (
        f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, dlib {dlib.__version__}, numpy {numpy.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold:
        print(json.dumps(cold()))
        return

    colds = [
        json.loads(
            subprocess.run([sys.executable, __file__, "--cold"], check=True, capture_output=True, text=True).stdout
        )
        for _ in range(args.cold_runs)
    ]
    rows, memory = warm(args.runs)

    def med(key: str) -> float:
        return statistics.median(c[key] for c in colds)

    def span(key: str, scale: float = 1000) -> str:
        values = [c[key] * scale for c in colds]
        return f"{statistics.median(values):.0f} (min {min(values):.0f}, max {max(values):.0f})"

    print("## Local engine\n")
    print(f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}.")
    print(f"`.venv/bin/python bench/engine_bench.py` ({args.cold_runs} cold processes, {args.runs} warm runs).\n")
    print("### Cold start (fresh process)\n")
    print("| step | ms, median of runs |")
    print("|---|---|")
    print(f"| import facegate.engine + vendors.local | {span('import_facegate_s')} |")
    print(f"| import dlib + numpy | {span('import_dlib_numpy_s')} |")
    print(f"| load the detector + 2 model files | {span('load_models_s')} |")
    total = med("import_facegate_s") + med("import_dlib_numpy_s") + med("load_models_s")
    print(f"| **total before the first inference** | **{total * 1000:.0f}** |\n")
    print("### Warm latency\n")
    print("| operation | median ms | p95 ms |")
    print("|---|---|---|")
    for label, median, p95 in rows:
        print(f"| {label} | {median:.1f} | {p95:.1f} |")
    print("\n### Memory (RSS)\n")
    print("| point | MB |")
    print("|---|---|")
    print(f"| fresh interpreter | {med('rss_start_mb'):.0f} |")
    print(f"| models loaded | {med('rss_loaded_mb'):.0f} |")
    print(f"| after the warm runs (these photos) | {memory['rss_after_warm_mb']:.0f} |")
    print(f"| peak | {memory['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
