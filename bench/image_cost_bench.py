"""The worst an image can cost within facegate's caps: time and peak memory to check,
decode for the engine, and fit for the strictest vendor (jumei, 1 MB).

Each case runs in a fresh interpreter so its peak RSS is its own. The inputs are the
adversarial ones the caps still allow: the most pixels in the fewest bytes (a flat PNG
or WebP at the pixel cap), and the largest JPEG the byte cap allows at the pixel cap.

Run: .venv/bin/python bench/image_cost_bench.py
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import time

CASES = ("png-flat", "webp-flat", "jpeg-noisy", "png-noise-8mb")


def make(case: str) -> bytes:
    import numpy as np
    from PIL import Image as PILImage

    from facegate import images

    side = math.isqrt(images.MAX_PIXELS)
    rng = np.random.default_rng(7)
    buf = io.BytesIO()
    if case == "png-flat":
        PILImage.new("RGB", (side, side), (200, 180, 170)).save(buf, "PNG")
    elif case == "webp-flat":
        side = min(side, 16383)  # WebP's own limit
        PILImage.new("RGB", (side, side), (200, 180, 170)).save(buf, "WEBP", lossless=True)
    elif case == "jpeg-noisy":
        # A gradient with noise, at the pixel cap, as large as the byte cap allows.
        y, x = np.mgrid[0:side, 0:side]
        base = ((x + y) * 255 // (2 * side)).astype(np.uint8)
        noise = rng.integers(0, 24, (side, side), dtype=np.uint8)
        px = np.dstack([base + noise, base, 255 - base])
        img = PILImage.fromarray(px)
        for quality in (90, 80, 70, 60, 50, 40, 30):
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=quality)
            if buf.tell() <= images.MAX_IMAGE_BYTES:
                break
    elif case == "png-noise-8mb":
        # Incompressible pixels: the byte cap, not the pixel cap, is what binds.
        n = math.isqrt(images.MAX_IMAGE_BYTES // 3) - 8
        PILImage.fromarray(rng.integers(0, 256, (n, n, 3), dtype=np.uint8)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that
    over an exec, so a child would start from its parent's peak."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def measure(path: str) -> dict:
    """In a fresh interpreter: the input is read from ``path`` so that making it
    (numpy noise, a 25 MP canvas) does not count towards the peak."""
    from facegate import images
    from facegate.vendors.jumei import JumeiVendor

    with open(path, "rb") as f:
        data = f.read()
    base_rss = peak_rss_mb()
    out: dict = {"bytes": len(data)}
    t = time.perf_counter()
    try:
        img = images.load_bytes(data)
    except Exception as e:  # refused by a cap: that is the answer for this case
        out.update(check_ms=round((time.perf_counter() - t) * 1000, 1), refused=type(e).__name__)
        out["peak_rss_mb"] = round(peak_rss_mb() - base_rss, 1)
        return out
    out.update(check_ms=round((time.perf_counter() - t) * 1000, 1), pixels=img.width * img.height)
    t = time.perf_counter()
    rgb, _ = img.engine_rgb
    out.update(engine_decode_ms=round((time.perf_counter() - t) * 1000, 1), engine_shape=list(rgb.shape[:2]))
    del rgb
    t = time.perf_counter()
    fitted = images.fit(img, JumeiVendor.limits)
    out.update(fit_ms=round((time.perf_counter() - t) * 1000, 1), fitted_bytes=len(fitted.data))
    out["peak_rss_mb"] = round(peak_rss_mb() - base_rss, 1)
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2])))
        return
    import tempfile

    from facegate import images

    print(f"caps: {images.MAX_PIXELS / 1e6:g} MP, {images.MAX_IMAGE_BYTES / 2**20:g} MiB")
    print("| case | input | check ms | engine decode ms | fit to 1 MB ms | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for case in CASES:
        with tempfile.NamedTemporaryFile(suffix=".img") as f:
            f.write(make(case))
            f.flush()
            r = json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--measure", f.name], check=True, capture_output=True, text=True
                ).stdout
            )
        what = f"{r['bytes'] / 1e6:.2f} MB" + (f", {r['pixels'] / 1e6:.1f} MP" if "pixels" in r else "")
        if "refused" in r:
            print(f"| {case} | {what} | {r['check_ms']} (refused: {r['refused']}) | – | – | {r['peak_rss_mb']} |")
        else:
            print(
                f"| {case} | {what} | {r['check_ms']} | {r['engine_decode_ms']} "
                f"(to {r['engine_shape'][1]}×{r['engine_shape'][0]}) | {r['fit_ms']} | {r['peak_rss_mb']} |"
            )


if __name__ == "__main__":
    main()
