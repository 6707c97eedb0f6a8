"""Peak memory (RSS) of a warm loop, per kind of function, each in a fresh interpreter:

* vendor compare: the compare handler, 2 x 1 MB JPEGs to a Kuaidi100 sandbox;
* engine compare: the compare handler, vendor ``local`` (dlib), obama.jpg + obama2.jpg;
* batch worker: the batch functions (splitter and worker) over a manifest of full-size
  photo pairs in S3, Shuxun sandbox, one worker (``facegate_local.batch``);
* the emulation alone: moto and its tables over boto3 and facegate.store, without any
  handler: what every row above carries that a Lambda container does not; the last
  column subtracts it.

Peak is the process's VmHWM over the warm loop only (reset through /proc/self/clear_refs
after warm-up); "after warm-up" is VmRSS then. The sandboxes run in a process of their own.

Run: .venv/bin/python bench/memory_bench.py [N]
"""

from __future__ import annotations

import base64
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "layers" / "facegate"), str(ROOT)]
from overhead_bench import FACES, SANDBOX_PROCESS, photos_1mb  # noqa: E402

N = 20
STAGE = "bench"
KINDS = {
    "vendor compare (Kuaidi100, 2 x 1 MB)": "vendor",
    "engine compare (local, 2 x 230 KB)": "engine",
    "batch worker (Shuxun, full-size pairs)": "batch",
    "the emulation alone (moto + tables; after warm-up: boto3 + facegate.store)": "emulation",
}


def status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def environment() -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="ERROR",
        FACEGATE_STAGE=STAGE,
        FACEGATE_RESULTS_TABLE="bench-results",
        FACEGATE_ALLOW_HTTP_URLS="true",
    )
    import warnings

    warnings.filterwarnings("ignore", message="No application metrics to publish")


def tables(creds: dict[str, dict]) -> None:
    import boto3

    boto3.client("dynamodb").create_table(
        TableName="bench-results",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
    )
    sm = boto3.client("secretsmanager")
    for vendor, c in creds.items():
        sm.create_secret(Name=f"facegate/{STAGE}/vendors/{vendor}", SecretString=json.dumps(c))


def compare_loop(vendor: str, a: bytes, b: bytes, n: int) -> tuple[float, float]:
    from facegate_local.lambda_runtime import api_event, invoke, load_handler

    handler = load_handler(str(ROOT / "functions" / "compare"))
    body = json.dumps(
        {
            "vendor": vendor,
            "image1": {"base64": base64.b64encode(a).decode()},
            "image2": {"base64": base64.b64encode(b).decode()},
        }
    )
    del a, b
    headers = {"Content-Type": "application/json", "x-api-key": "k"}

    def once() -> None:
        status_code, _, out = invoke(handler, api_event("POST", "/v1/compare", body, headers=headers, api_key="k"))
        assert status_code == 200, out

    for _ in range(2):
        once()
    ready = status("VmRSS")
    reset_peak()
    for _ in range(n):
        once()
    return ready, status("VmHWM")


def measure(kind: str, n: int, creds: dict[str, dict]) -> dict[str, float]:
    fresh = status("VmRSS")
    environment()
    if kind == "emulation":  # moto's own part: what boto3 alone would not hold
        import boto3  # noqa: F401

        import facegate.store  # noqa: F401

        without = status("VmRSS")
        from moto import mock_aws

        with mock_aws():
            tables(creds)
            return {"fresh": fresh, "ready": without, "peak": status("VmRSS")}
    from moto import mock_aws

    with mock_aws():
        if kind == "vendor":
            tables(creds)
            a, b = photos_1mb()
            ready, peak = compare_loop("kuaidi100", a, b, n)
        elif kind == "engine":
            tables({})
            ready, peak = compare_loop(
                "local", (FACES / "obama.jpg").read_bytes(), (FACES / "obama2.jpg").read_bytes(), max(3, n // 4)
            )
        else:
            ready, peak = batch_loop(creds, n)
    return {"fresh": fresh, "ready": ready, "peak": peak}


def batch_loop(creds: dict[str, dict], n: int) -> tuple[float, float]:
    from facegate_local.batch import LocalBatches

    local = LocalBatches(
        stage=STAGE,
        region="us-east-1",
        secret_values={f"facegate/{STAGE}/vendors/shuxun": json.dumps(creds["shuxun"])},
        env_overrides={"POWERTOOLS_LOG_LEVEL": "ERROR"},
    )
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        local.upload(f"photos/{name}", (FACES / name).read_bytes())

    def manifest(items: int) -> bytes:
        pairs = [("obama.jpg", "obama2.jpg"), ("obama.jpg", "biden.jpg")]
        return "".join(
            json.dumps(
                {
                    "caller_id": f"m-{i}",
                    "vendor": "shuxun",
                    "image1": {"s3": {"key": f"photos/{pairs[i % 2][0]}"}},
                    "image2": {"s3": {"key": f"photos/{pairs[i % 2][1]}"}},
                }
            )
            + "\n"
            for i in range(items)
        ).encode()

    local.upload("batches/warm.jsonl", manifest(4))
    assert local.run("warm", timeout_s=600).status == "done"
    ready = status("VmRSS")
    reset_peak()
    local.upload("batches/bench.jsonl", manifest(n * 2))
    meta = local.run("bench", timeout_s=1800)
    assert meta.status == "done", meta
    return ready, status("VmHWM")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--kind":  # one measurement, in this fresh interpreter
        kind, n, creds = sys.argv[2], int(sys.argv[3]), json.loads(sys.stdin.readline())
        print(json.dumps(measure(kind, n, creds)))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N
    sandboxes = subprocess.Popen(
        [sys.executable, "-c", SANDBOX_PROCESS],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        creds = sandboxes.stdout.readline()
        rows = {}
        for label, kind in KINDS.items():
            done = subprocess.run(
                [sys.executable, __file__, "--kind", kind, str(n)],
                input=creds,
                capture_output=True,
                text=True,
                check=True,
            )
            rows[label] = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        sandboxes.stdin.close()
        sandboxes.wait(timeout=10)
    e = rows[next(k for k, v in KINDS.items() if v == "emulation")]
    emulation = e["peak"] - e["ready"]  # moto and its tables, over boto3 and facegate.store
    print(f"Python {platform.python_version()}, {platform.machine()}; {n} warm requests", end=" ")
    print(f"(engine: {max(3, n // 4)}; batch: {n * 2} items)\n")
    print("| function kind | fresh MB | after warm-up MB | peak of the warm loop MB | peak less the emulation MB |")
    print("|---|---|---|---|---|")
    for label, r in rows.items():
        less = f"({emulation:.0f} MB)" if KINDS[label] == "emulation" else f"{r['peak'] - emulation:.0f}"
        print(f"| {label} | {r['fresh']:.0f} | {r['ready']:.0f} | {r['peak']:.0f} | {less} |")


if __name__ == "__main__":
    main()
