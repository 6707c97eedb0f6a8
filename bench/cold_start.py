"""Cold start of each handler: a fresh interpreter imports functions/<op>/app.py, as a
new Lambda container does before its first invocation: in Lambda with tracing on (as
deployed), and with tracing off.

Reported as a ratio to the floor every handler stands on, measured in the same run: a
fresh interpreter importing Powertools' event handler alone. The machine is shared, so
absolute milliseconds drift from run to run; the ratio of medians does much less, and the
ratio of CPU time (``time.process_time``: what the import itself computed, without the
time other processes held the core) less again.
Also lists which heavy modules the import pulled in (they should load only when used)
and the largest self-times of `python -X importtime` for the compare handler.

Run: .venv/bin/python bench/cold_start.py [runs]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 9
OPS = ("compare", "detect", "features", "verify_identity", "results", "vendors")
HEAVY = ("dlib", "numpy", "PIL", "requests", "boto3", "botocore.session", "cryptography", "gmssl", "aws_xray_sdk.core")
# This tree's facegate, whatever the venv's editable install points at.
BASE_ENV = {"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "layers" / "facegate")}
SCENARIOS = {
    # A deployed function (template.yaml: Tracing: Active): Powertools traces only in Lambda.
    "in Lambda, tracing on": {"LAMBDA_TASK_ROOT": str(ROOT), "POWERTOOLS_TRACE_DISABLED": "false"},
    "tracing off (local, or POWERTOOLS_TRACE_DISABLED=true)": {"POWERTOOLS_TRACE_DISABLED": "true"},
}

PROBE = """
import importlib.util, json, sys, time
t, cpu = time.perf_counter(), time.process_time()
if sys.argv[1] == "-":
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
else:
    spec = importlib.util.spec_from_file_location("fn", sys.argv[1])
    m = importlib.util.module_from_spec(spec); sys.modules["fn"] = m; spec.loader.exec_module(m)
ms, cpu_ms = (time.perf_counter() - t) * 1000, (time.process_time() - cpu) * 1000
print(json.dumps({"ms": ms, "cpu": cpu_ms, "heavy": [h for h in HEAVY if h in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def probe(target: str, env: dict[str, str], extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *extra, "-c", PROBE, target], capture_output=True, text=True, env=env, check=True
    )


def top_self_times(target: str, env: dict[str, str], n: int = 12) -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, module) of the largest self-times, from one -X importtime run."""
    rows = []
    for line in probe(target, env, ("-X", "importtime")).stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        rows.append((int(self_us), int(cum_us), name.strip()))
    return sorted(rows, reverse=True)[:n]


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    targets = {"event handler alone": "-"} | {op: str(ROOT / "functions" / op / "app.py") for op in OPS}
    for scenario, scenario_env in SCENARIOS.items():
        env = BASE_ENV | scenario_env
        samples: dict[str, list[float]] = {name: [] for name in targets}
        cpu: dict[str, list[float]] = {name: [] for name in targets}
        heavy: dict[str, list[str]] = {}
        for _ in range(runs):  # interleaved, so a burst of load on the machine hits every target alike
            for name, target in targets.items():
                result = json.loads(probe(target, env).stdout.strip().splitlines()[-1])
                samples[name].append(result["ms"])
                cpu[name].append(result["cpu"])
                heavy[name] = result["heavy"]
        floor = statistics.median(samples["event handler alone"])
        cpu_floor = statistics.median(cpu["event handler alone"])
        print(f"{scenario}: median import time of {runs} fresh interpreters each")
        print(f"{'target':20} {'median ms':>9} {'ratio':>6} {'CPU ms':>7} {'ratio':>6}  heavy modules loaded")
        for name in targets:
            ms, cpu_ms = statistics.median(samples[name]), statistics.median(cpu[name])
            print(
                f"{name:20} {ms:9.0f} {ms / floor:5.2f}x {cpu_ms:7.0f} {cpu_ms / cpu_floor:5.2f}x  "
                f"{', '.join(heavy[name]) or '-'}"
            )
        print(f"\ncompare handler ({scenario}), -X importtime, largest self-times (one run):")
        print(f"{'self ms':>8} {'cumul ms':>8}  module")
        for self_us, cum_us, name in top_self_times(targets["compare"], env):
            print(f"{self_us / 1000:8.1f} {cum_us / 1000:8.1f}  {name}")
        print()


if __name__ == "__main__":
    main()
