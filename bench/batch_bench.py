"""Benchmark of batches: how close a batch runs to a vendor's rate limit, and whether
anything is lost on the way.

    .venv/bin/python bench/batch_bench.py [--items 1000] [--latency 0.05] [--qps 50]
                                          [--workers 2 3 4 5] [--retry-base 0.5]

A Shuxun sandbox on loopback answers each call after ``--latency`` seconds and
refuses (with its documented rate-limit body) any call over ``--qps`` in the last
second. The batch runs through the real splitter and worker handlers against the
template's bucket, queues and tables in moto (``facegate_local.batch``): ``--workers``
threads poll the item queue at once, standing for the Lambda instances an SQS event
source with ``MaximumConcurrency`` = workers would run. Each run starts from a fresh
emulated stack and a fresh sandbox.

Throughput is items reported per second, from the upload of the manifest to the moment
the report is written (workers start while the splitter still queues), as a share of the cap; and, steady, the rate
of vendor answers over the middle 90 % of them (the results log's timestamps), which
leaves out the ramp and the tail. Lost is the number
of manifest lines without exactly one report line (the goal: none). Prints a markdown
section for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("FACEGATE_SHARED", ROOT.parent / "shared")) / "testdata" / "faces"
STAGE = "bench"


def small_jpeg(name: str) -> bytes:
    from PIL import Image

    img = Image.open(FACES / name).convert("RGB")
    img.thumbnail((160, 160))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def manifest(items: int) -> bytes:
    pairs = [("obama.jpg", "obama2.jpg"), ("obama.jpg", "biden.jpg")]
    lines = []
    for i in range(1, items + 1):
        a, b = pairs[i % 2]
        lines.append(
            json.dumps(
                {
                    "caller_id": f"b-{i}",
                    "vendor": "shuxun",
                    "image1": {"s3": {"key": f"photos/{a}"}},
                    "image2": {"s3": {"key": f"photos/{b}"}},
                }
            )
        )
    return ("\n".join(lines) + "\n").encode()


# The sandbox runs in a process of its own, as a vendor would: its request parsing and
# checks must not compete for this process's interpreter lock with the workers.
_SANDBOX = """
import json, sys
from facegate_local.sandboxes.shuxun import ShuxunSandbox
box = ShuxunSandbox(latency_s=float(sys.argv[1]), qps=float(sys.argv[2])).start()
print(json.dumps({"url": box.url, "credentials": box.default_credentials()}), flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
print(json.dumps({"requests": box.requests, "billed": box.billed}), flush=True)
box.stop()
"""


class RemoteSandbox:
    def __init__(self, latency: float, qps: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SANDBOX, str(latency), str(qps)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        hello = json.loads(self.proc.stdout.readline())
        self.url = hello["url"]
        self.credentials = hello["credentials"]
        self.requests = self.billed = 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            out, _ = self.proc.communicate("", timeout=30)
            counts = json.loads(out.strip().splitlines()[-1])
            self.requests, self.billed = counts["requests"], counts["billed"]


def run_once(items: int, latency: float, qps: float, workers: int, retry_base: float, pacing: bool) -> dict:
    from moto import mock_aws

    from facegate_local.batch import LocalBatches, reset_caches

    sandbox = RemoteSandbox(latency, qps)
    saved = dict(os.environ)
    try:
        with mock_aws():
            creds = {**sandbox.credentials, "endpoint": sandbox.url}
            local = LocalBatches(
                stage=STAGE,
                region="us-east-1",
                secret_values={f"facegate/{STAGE}/vendors/shuxun": json.dumps(creds)},
                env_overrides={
                    "FACEGATE_BATCH_RETRY_BASE_S": str(retry_base),
                    "POWERTOOLS_LOG_LEVEL": "ERROR",
                    # BatchVendorRates and BatchMaxConcurrency, as the template passes them.
                    "FACEGATE_BATCH_VENDOR_RATES": json.dumps({"shuxun": qps} if pacing else {}),
                    "FACEGATE_BATCH_CONCURRENCY": str(workers),
                },
            )
            for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
                local.upload(f"photos/{name}", small_jpeg(name))
            marks: dict[str, float] = {}

            def mark() -> None:
                if "queued" not in marks:
                    meta = local.meta("bench")
                    if meta is not None and meta.status != "splitting":
                        marks["queued"] = time.perf_counter()

            t0 = time.perf_counter()
            local.upload("batches/bench.jsonl", manifest(items))
            meta = local.run("bench", workers=workers, timeout_s=1800, between_polls=mark)
            done = time.perf_counter()
            report = local.report("bench")
            summary = local.summary("bench")
            sandbox.stop()
            answered_at = sorted(
                datetime.fromisoformat(r["created_at"]).timestamp()
                for r in scan(local.results_table)
                if r.get("batch_id") == meta.batch_id and r["status"] == "ok"
            )
            # The middle 90 % of the answers: neither the ramp while the splitter still
            # queues nor the tail of the last retries and the report.
            lo, hi = int(len(answered_at) * 0.05), int(len(answered_at) * 0.95) - 1
            steady = (hi - lo) / (answered_at[hi] - answered_at[lo]) if hi > lo else 0.0
            lines = [r["line"] for r in report]
            answered = [r for r in report if ("result" in r) != ("error" in r)]
            lost = items - len(set(lines) & set(range(1, items + 1))) + (len(lines) - len(set(lines)))
            lost += len(report) - len(answered)
            seconds = done - t0  # what the uploader waits: upload to report, the split included
            return {
                "workers": workers,
                "pacing": pacing,
                "items": items,
                "status": meta.status,
                "seconds": seconds,
                "split_s": marks.get("queued", t0) - t0,
                "items_per_s": items / seconds,
                "share": items / seconds / qps,
                "steady_per_s": steady,
                "steady_share": steady / qps,
                "ok": summary["ok"],
                "errors": summary["errors"],
                "error_codes": summary["error_codes"],
                "lost": lost,
                "vendor_requests": sandbox.requests,
                "billed": sandbox.billed,
                "rate_limited": sandbox.requests - sandbox.billed,
                "deliveries": summary["deliveries"],
            }
    finally:
        sandbox.stop()
        os.environ.clear()
        os.environ.update(saved)
        reset_caches()


def scan(table_name: str) -> list[dict]:
    import boto3

    table = boto3.resource("dynamodb").Table(table_name)
    items, kwargs = [], {}
    while True:
        page = table.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    cpus = os.cpu_count()
    out = [
        "## Batches",
        "",
        f"Measured {when} on {platform.processor() or platform.machine()}, {cpus} CPUs, "
        f"Python {platform.python_version()}. `.venv/bin/python bench/batch_bench.py --items {args.items} "
        f"--latency {args.latency} --qps {args.qps:g} --workers {' '.join(map(str, args.workers))} "
        f"--retry-base {args.retry_base:g} --pacing {args.pacing}`.",
        "",
        f"{args.items} compare items against a Shuxun sandbox answering after {args.latency * 1000:.0f} ms and "
        f"refusing calls over {args.qps:g} per second (its rate-limit body, code 6). Throughput counts from the "
        "upload of the manifest to the report; steady: vendor answers per second over the middle 90 % of them.",
        "",
        "| workers (MaximumConcurrency) | pacing (BatchVendorRates) | items/s, end to end | share of the cap | "
        "vendor answers/s, steady | share of the cap | lost | rate-limited calls | deliveries | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        errors = ", ".join(f"{k} {v}" for k, v in r["error_codes"].items()) or "none"
        pacing = f"{args.qps:g}/s" if r["pacing"] else "off"
        out.append(
            f"| {r['workers']} | {pacing} | {r['items_per_s']:.1f} | **{r['share'] * 100:.0f} %** | "
            f"{r['steady_per_s']:.1f} | {r['steady_share'] * 100:.0f} % | {r['lost']} | "
            f"{r['rate_limited']} | {r['deliveries']} | {errors} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05, help="the vendor's answer time, seconds")
    parser.add_argument("--qps", type=float, default=50.0, help="the vendor's rate limit, calls per second")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument(
        "--retry-base", type=float, default=0.5, help="FACEGATE_BATCH_RETRY_BASE_S: backoff of rate-limited items"
    )
    parser.add_argument(
        "--pacing", choices=["on", "off", "both"], default="both", help="pace calls to the cap (BatchVendorRates)"
    )
    args = parser.parse_args(argv)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[name] = value
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    results = []
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.pacing]
    for workers, pacing in [(w, p) for p in modes for w in args.workers]:
        r = run_once(args.items, args.latency, args.qps, workers, args.retry_base, pacing)
        print(
            f"workers={workers} pacing={'on' if pacing else 'off'}: {r['items_per_s']:.1f} items/s = "
            f"{r['share'] * 100:.1f} % of {args.qps:g}/s (steady {r['steady_share'] * 100:.1f} %), "
            f"lost {r['lost']}, rate-limited {r['rate_limited']}, deliveries {r['deliveries']}, "
            f"errors {r['error_codes'] or 'none'} ({r['seconds']:.1f} s after a {r['split_s']:.2f} s split)",
            file=sys.stderr,
            flush=True,
        )
        results.append(r)
    print(markdown(results, args))
    return 0 if all(r["lost"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
