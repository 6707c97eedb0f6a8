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
import contextlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
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


def run_once(
    items: int, latency: float, qps: float, workers: int, retry_base: float, pacing: bool, emulation: str
) -> dict:
    """One batch. ``emulation``: "in-process" (moto mocked in this process, workers as
    threads: ``facegate_local.batch`` as the tests use it) or "processes" (moto's
    server in a process of its own, each worker a process: ``facegate_local.batch_processes``)."""
    from facegate_local.batch import LocalBatches, reset_caches
    from facegate_local.batch_processes import MotoServers, WorkerProcesses, cpu_seconds

    sandbox = RemoteSandbox(latency, qps)
    saved = dict(os.environ)
    server = None
    pool = None
    try:
        with contextlib.ExitStack() as stack:
            if emulation == "processes":
                server = MotoServers()
                stack.callback(server.stop)
                os.environ.update(server.environment())
            else:
                from moto import mock_aws

                stack.enter_context(mock_aws())
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
            if server is not None:
                pool = stack.enter_context(WorkerProcesses(local, workers))
            marks: dict[str, float] = {}

            def between_polls() -> None:
                if pool is not None:
                    pool.check()
                if "queued" not in marks:
                    meta = local.meta("bench")
                    if meta is not None and meta.status != "splitting":
                        marks["queued"] = time.perf_counter()

            cpu0 = {
                "driver": time.process_time(),
                "moto": server.cpu_seconds() if server else 0.0,
                "sandbox": cpu_seconds(sandbox.proc.pid),
            }
            if server is not None:
                server.costs()  # from here on
            t0, uploaded_at = time.perf_counter(), time.time()
            local.upload("batches/bench.jsonl", manifest(items))
            meta = local.run(
                "bench",
                workers=workers,
                poll_items=pool is None,
                timeout_s=1800,
                between_polls=between_polls,
                # The driver only watches here (splitter, dead-letter queues): rarely.
                idle_s=1.0 if pool is not None else 0.1,
            )
            done = time.perf_counter()
            moto_calls = server.costs() if server is not None else {}
            cpu = {
                "driver": time.process_time() - cpu0["driver"],
                "moto": (server.cpu_seconds() if server else 0.0) - cpu0["moto"],
                "sandbox": cpu_seconds(sandbox.proc.pid) - cpu0["sandbox"],
                "workers": sum(w["cpu_s"] for w in pool.stop()) if pool is not None else 0.0,
            }
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
            # What the uploader waits: upload to report, the split included. The report's
            # own time, not when this process noticed it (it looks every idle_s).
            seconds = (meta.finished_at - uploaded_at) if meta.finished_at else done - t0
            return {
                "emulation": emulation,
                "qps": qps,
                "workers": workers,
                "pacing": pacing,
                "items": items,
                "status": meta.status,
                "seconds": seconds,
                "split_s": marks.get("queued", t0) - t0,
                "items_per_s": items / seconds,
                "share": items / seconds / qps if qps else 0.0,
                "steady_per_s": steady,
                "steady_share": steady / qps if qps else 0.0,
                "ok": summary["ok"],
                "errors": summary["errors"],
                "error_codes": summary["error_codes"],
                "lost": lost,
                "vendor_requests": sandbox.requests,
                "billed": sandbox.billed,
                "rate_limited": sandbox.requests - sandbox.billed,
                "deliveries": summary["deliveries"],
                "cpu_ms_per_item": {k: v * 1000 / items for k, v in cpu.items()},
                "load": os.getloadavg()[0],
                "moto_calls": moto_calls,
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
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    cpus = os.cpu_count()
    out = [
        "## Batches",
        "",
        f"Measured {when} UTC on {platform.processor() or platform.machine()}, {cpus} CPUs, "
        f"Python {platform.python_version()}. `.venv/bin/python bench/batch_bench.py --items {args.items} "
        f"--latency {args.latency} --qps {' '.join(f'{q:g}' for q in args.qps)} "
        f"--workers {' '.join(map(str, args.workers or ['(default)']))} "
        f"--item-seconds {args.item_seconds:g} --retry-base {args.retry_base:g} --pacing {args.pacing} "
        f"--emulation {args.emulation}`.",
        "",
        f"{args.items} compare items against a Shuxun sandbox answering after {args.latency * 1000:.0f} ms and "
        "refusing calls over the cap per second (its rate-limit body, code 6). Throughput counts from the "
        "upload of the manifest to the report; steady: vendor answers per second over the middle 90 % of them. "
        "CPU ms per item: process CPU time over the run divided by the items (driver: this process, with the "
        "splitter; in-process, everything).",
        "",
        "| cap | emulation | workers | pacing | items/s, end to end | share of the cap | steady share | lost | "
        "rate-limited calls | deliveries | errors | CPU ms/item: moto / workers / driver | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        errors = ", ".join(f"{k} {v}" for k, v in r["error_codes"].items()) or "none"
        pacing = "on" if r["pacing"] else "off"
        c = r["cpu_ms_per_item"]
        out.append(
            f"| {r['qps']:g}/s | {r['emulation']} | {r['workers']} | {pacing} | {r['items_per_s']:.1f} | "
            f"**{r['share'] * 100:.0f} %** | {r['steady_share'] * 100:.0f} % | {r['lost']} | "
            f"{r['rate_limited']} | {r['deliveries']} | {errors} | "
            f"{c['moto']:.0f} / {c['workers']:.0f} / {c['driver']:.0f} | {r['load']:.1f} |"
        )
    calls: dict[str, list[float]] = {}
    counted = [r for r in results if r["moto_calls"]]
    for r in counted:
        for action, (n, seconds) in r["moto_calls"].items():
            entry = calls.setdefault(action, [0, 0.0, 0])
            entry[0] += n
            entry[1] += seconds
    if counted:
        items = sum(r["items"] for r in counted)
        out += [
            "",
            f"moto's time per action (processes runs, {items} items; wall time inside moto's app, one "
            "request at a time per server):",
            "",
            "| action | calls per item | ms per call | ms per item |",
            "|---|---|---|---|",
        ]
        for action, (n, seconds, _) in sorted(calls.items(), key=lambda kv: -kv[1][1]):
            out.append(f"| {action} | {n / items:.2f} | {seconds * 1000 / n:.1f} | {seconds * 1000 / items:.1f} |")
    return "\n".join(out) + "\n"


def default_workers(qps: float, item_s: float) -> int:
    """Instances enough for the cap, and a number that divides it: each paced instance
    has at most cap // instances calls within any second (``Pacer``), so 10/s over 3
    instances is 9/s at best, over 5 the whole 10/s. Each of those calls takes ``item_s``
    (the item's AWS calls and service work and the vendor's latency), and they must fit
    within the second."""
    cap = max(1, math.floor(qps))
    divisors = [n for n in range(1, cap + 1) if cap % n == 0]
    return next((n for n in divisors if (cap // n) * item_s <= 1.0), cap)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05, help="the vendor's answer time, seconds")
    parser.add_argument(
        "--qps", type=float, nargs="+", default=[10.0, 20.0, 50.0], help="the vendor's rate limit(s), calls per second"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", help="worker instances (default: enough for each cap, see default_workers)"
    )
    parser.add_argument(
        "--item-seconds",
        type=float,
        default=0.5,
        help="an item's time in a worker, for the default number of workers (this emulation on 2 busy vCPUs: "
        "~0.3-0.6 s)",
    )
    parser.add_argument(
        "--retry-base", type=float, default=0.5, help="FACEGATE_BATCH_RETRY_BASE_S: backoff of rate-limited items"
    )
    parser.add_argument(
        "--pacing", choices=["on", "off", "both"], default="on", help="pace calls to the cap (BatchVendorRates)"
    )
    parser.add_argument(
        "--emulation",
        choices=["in-process", "processes", "both"],
        default="both",
        help="in-process: moto mocked and worker threads in this process (before); processes: moto server and "
        "each worker in its own process (after)",
    )
    args = parser.parse_args(argv)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[name] = value
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]  # never another emulator's or a real endpoint
    results = []
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.pacing]
    emulations = {"in-process": ["in-process"], "processes": ["processes"], "both": ["in-process", "processes"]}[
        args.emulation
    ]
    plan = [
        (qps, workers, pacing, emulation)
        for qps in args.qps
        for workers in (args.workers or [default_workers(qps, args.item_seconds)])
        for pacing in modes
        for emulation in emulations  # before and after side by side, minutes apart at most
    ]
    for qps, workers, pacing, emulation in plan:
        r = run_once(args.items, args.latency, qps, workers, args.retry_base, pacing, emulation)
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_ms_per_item"].items())
        print(
            f"{emulation} cap={qps:g} workers={workers} pacing={'on' if pacing else 'off'}: "
            f"{r['items_per_s']:.1f} items/s = {r['share'] * 100:.1f} % (steady {r['steady_share'] * 100:.1f} %), "
            f"lost {r['lost']}, rate-limited {r['rate_limited']}, deliveries {r['deliveries']}, "
            f"errors {r['error_codes'] or 'none'} ({r['seconds']:.1f} s after a {r['split_s']:.2f} s split); "
            f"CPU ms/item: {cpu}; load {r['load']:.1f}",
            file=sys.stderr,
            flush=True,
        )
        results.append(r)
    print(markdown(results, args))
    return 0 if all(r["lost"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
