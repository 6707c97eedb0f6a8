"""Cold start of each handler: a fresh interpreter imports functions/<op>/app.py, as a
new Lambda container does before its first invocation (tracing on, as deployed).
Also lists which heavy modules the import pulled in: they should load only when used.

Run: .venv/bin/python bench/cold_start.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 7
HEAVY = ("dlib", "numpy", "PIL", "requests", "boto3", "cryptography", "gmssl", "aws_xray_sdk")

PROBE = """
import importlib.util, json, sys, time
t = time.perf_counter()
spec = importlib.util.spec_from_file_location("fn", sys.argv[1])
m = importlib.util.module_from_spec(spec); sys.modules["fn"] = m; spec.loader.exec_module(m)
ms = (time.perf_counter() - t) * 1000
print(json.dumps({"ms": ms, "heavy": [h for h in HEAVY if h in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def main() -> None:
    env = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "false", "PATH": "/usr/bin:/bin"}
    for op in ("compare", "detect", "features", "verify_identity", "results", "vendors"):
        runs = []
        for _ in range(RUNS):
            out = subprocess.run(
                [sys.executable, "-c", PROBE, str(ROOT / "functions" / op / "app.py")],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        ms = statistics.median(r["ms"] for r in runs)
        print(f"{op:16} import median {ms:5.0f} ms over {RUNS} runs; heavy modules loaded: {runs[0]['heavy']}")


if __name__ == "__main__":
    main()
