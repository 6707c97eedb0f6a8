"""What the strict body checks (facegate.request_body) add to a request with a 2 MB
body of base64 images: checked_event (media type, UTF-8) and loads (strict JSON)
against plain json.loads. `.venv/bin/python bench/request_body_bench.py`"""

from __future__ import annotations

import base64
import json
import os
import statistics
import timeit

from facegate import request_body


def main() -> None:
    image = base64.b64encode(os.urandom(1_500_000)).decode()
    body = json.dumps({"image1": {"base64": image}, "image2": {"base64": image[:1000]}, "security_level": "high"})
    event = {"httpMethod": "POST", "body": body, "headers": {"Content-Type": "application/json"}}
    runs = {
        "json.loads (what Powertools did)": lambda: json.loads(body),
        "request_body.loads": lambda: request_body.loads(body),
        "request_body.checked_event": lambda: request_body.checked_event(event),
    }
    print(f"body: {len(body) / 1e6:.1f} MB")
    for name, fn in runs.items():
        times = [t / 50 * 1e3 for t in timeit.repeat(fn, number=50, repeat=15)]
        print(f"{name}: median {statistics.median(times):.3f} ms, min {min(times):.3f} ms")


if __name__ == "__main__":
    main()
