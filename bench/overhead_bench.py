"""How much latency facegate adds on top of a vendor, and where it goes.

Two photo pairs: obama.jpg + obama2.jpg (280 + 184 KB, ~2x230 KB) to Shuxun, and the
same photos re-encoded by Pillow to ~1 MB each (2x1 MB) to Kuaidi100 (Shuxun takes at
most 1,000,000 characters of base64 an image). The vendor sandboxes run in a process of
their own on loopback (facegate_local.sandboxes), so their work never shares this
process's interpreter lock.

1. In process: the compare handler (``functions/compare``) invoked with an API Gateway
   event, versus the same adapter's signed request sent straight to the sandbox (build,
   sign, send, parse) with a warm session. Each step of the handler's request is timed
   inside the real handler run (the functions are wrapped, nothing is re-run): the body
   checks, JSON parse, base64, image check, fingerprint, fit, encode and sign, transport,
   parse and the results-log write (moto's DynamoDB, in-process: reported on its own
   line, a real PutItem costs ~5-10 ms in-region); the validation of the parsed body is
   timed on its own. "Rest" is everything else (Powertools' routing, the response).
2. Through ``make run``: ``facegate_local.server``'s runtime and HTTP server (the
   template's tables, secrets and environment, moto), the request sent over HTTP with a
   warm keep-alive session, versus the signed
   request sent straight to the sandbox from here. The server runs on a thread of this
   process (the client only waits on its socket meanwhile), so that its DynamoDB calls
   (results log, usage counters, vendor health: moto) can be timed and reported apart.

Both parts also count every DynamoDB API call a request makes (botocore's ``_make_api_call``
wrapped: operation and table), a figure the machine's load does not move.

Paths are interleaved request by request, so a burst of load on the shared machine hits
both alike; the figure is the difference of medians of one run.

Run: .venv/bin/python bench/overhead_bench.py [N]
"""

from __future__ import annotations

import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This tree's code, whatever the venv's editable install points at (so a copy of the
# script measures an older tree too).
sys.path[:0] = [str(ROOT / "layers" / "facegate"), str(ROOT)]

N = 60
FACES = Path(os.environ.get("FACEGATE_SHARED", ROOT.parent / "shared")) / "testdata" / "faces"
API_KEY = "bench-key"

# Starts the sandboxes in their own process; prints their credentials, serves until stdin closes.
SANDBOX_PROCESS = """
import json, sys
from facegate_local.sandboxes.shuxun import ShuxunSandbox
from facegate_local.sandboxes.kuaidi100 import Kuaidi100Sandbox
boxes = {"shuxun": ShuxunSandbox().start(), "kuaidi100": Kuaidi100Sandbox().start()}
print(json.dumps({v: {**b.default_credentials(), "endpoint": b.url} for v, b in boxes.items()}), flush=True)
sys.stdin.read()
"""


def photos_1mb() -> tuple[bytes, bytes]:
    """obama.jpg and obama2.jpg upscaled and re-encoded at quality 95 to ~1 MB each."""
    from PIL import Image

    out = []
    for name in ("obama.jpg", "obama2.jpg"):
        img = Image.open(FACES / name).convert("RGB")
        lo, hi = 1.0, 4.0
        for _ in range(12):  # bisect the scale for 0.97-1.0 MB
            k = (lo + hi) / 2
            buf = io.BytesIO()
            img.resize((int(img.width * k), int(img.height * k)), Image.LANCZOS).save(buf, "JPEG", quality=95)
            if buf.tell() > 1_000_000:
                hi = k
            elif buf.tell() < 970_000:
                lo = k
            else:
                break
        out.append(buf.getvalue())
    return out[0], out[1]


def direct_and_through(cls, vendor: str, creds: dict, a: bytes, b: bytes) -> tuple:
    """The two ways one pair is sent: the vendor's adapter with the images' refs (signed
    straight to the sandbox), and facegate's request body for the same pair."""
    from facegate import images
    from facegate.transport import Transport
    from facegate.vendors.base import ImageRef

    adapter = cls(cls.credentials_model(**creds[vendor]), Transport())
    refs = [ImageRef(image=images.load_bytes(x)) for x in (a, b)]
    body = json.dumps(
        {
            "vendor": vendor,
            "image1": {"base64": base64.b64encode(a).decode()},
            "image2": {"base64": base64.b64encode(b).decode()},
        }
    )
    return adapter, refs, body


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.95))]


class Steps:
    """Wraps functions so the time spent in each is added to the current request's row."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.current: dict[str, float] | None = None
        self.active: set[str] = set()
        self.calls: list[Counter[tuple[str, str]]] = []  # per request: (operation, table) -> calls
        self.current_calls: Counter[tuple[str, str]] = Counter()

    def wrap(self, owner, attr: str, step: str) -> None:
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            if self.current is None or step in self.active:  # not timing, or inside this step already
                return original(*args, **kwargs)
            self.active.add(step)
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.active.discard(step)
                if self.current is not None:
                    self.current[step] = self.current.get(step, 0.0) + (time.perf_counter() - t) * 1000

        setattr(owner, attr, timed)

    def start(self) -> None:
        self.current = defaultdict(float)
        self.current_calls = Counter()

    def stop(self) -> None:
        assert self.current is not None
        self.rows.append(dict(self.current))
        self.calls.append(self.current_calls)
        self.current = None

    def clear(self) -> None:
        self.rows.clear()
        self.calls.clear()

    def count_dynamodb_calls(self) -> None:
        """Count each DynamoDB API call made while a request is timed, by operation and table
        (whichever thread makes it: make run's server runs on a thread of this process)."""
        from botocore.client import BaseClient

        original = BaseClient._make_api_call

        def counted(client, operation: str, params: dict):
            if self.current is not None and client.meta.service_model.service_name == "dynamodb":
                tables = [params["TableName"]] if "TableName" in params else sorted(params.get("RequestItems", {}))
                for table in tables:
                    self.current_calls[(operation, table)] += 1
            return original(client, operation, params)

        BaseClient._make_api_call = counted

    def print_calls(self, skip: int) -> None:
        """The DynamoDB calls per request (mean over the measured requests), by operation and table."""
        calls = self.calls[skip:]
        total: Counter[tuple[str, str]] = Counter()
        for c in calls:
            total.update(c)
        print("| DynamoDB call (operation, table) | calls per request |")
        print("|---|---|")
        for (operation, table), k in sorted(total.items()):
            print(f"| {operation} {table} | {k / len(calls):.2f} |")
        print(f"| **all DynamoDB calls** | **{sum(total.values()) / len(calls):.2f}** |\n")


STEPS = (
    ("body checks (media type, UTF-8)", "checked_event"),
    ("JSON parse", "loads"),
    ("validation (CompareRequest, timed on its own)", "validate"),
    ("base64 decode", "b64"),
    ("image check (load_bytes)", "check"),
    ("fingerprint (SHA-256)", "fingerprint"),
    ("fit to the vendor's limits", "fit"),
    ("encode and sign (build_compare)", "build"),
    ("transport (send, sandbox's own time included)", "send"),
    ("parse the vendor's answer", "parse"),
    ("results-log write (moto DynamoDB PutItem)", "put"),
)


def in_process(pairs: dict[str, tuple[bytes, bytes]], creds: dict[str, dict], n: int) -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="ERROR",
        FACEGATE_STAGE="bench",
        FACEGATE_RESULTS_TABLE="bench-results",
        FACEGATE_ALLOW_HTTP_URLS="true",
    )
    import warnings

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    import boto3
    from moto import mock_aws

    from facegate import images, inputs, request_body
    from facegate.models import CompareRequest
    from facegate.store import ResultsStore
    from facegate.transport import Transport
    from facegate.vendors.base import CallContext
    from facegate.vendors.kuaidi100 import Kuaidi100Vendor
    from facegate.vendors.shuxun import ShuxunVendor
    from facegate_local.lambda_runtime import api_event, invoke, load_handler

    classes = {"shuxun": ShuxunVendor, "kuaidi100": Kuaidi100Vendor}
    steps = Steps()
    steps.count_dynamodb_calls()
    steps.wrap(request_body, "checked_event", "checked_event")
    steps.wrap(images, "decode_base64", "b64")
    steps.wrap(images, "load_bytes", "check")
    steps.wrap(images, "fit", "fit")
    steps.wrap(inputs.RequestImages, "_fingerprint", "fingerprint")
    steps.wrap(Transport, "send", "send")
    steps.wrap(ResultsStore, "put", "put")
    for cls in classes.values():
        steps.wrap(cls, "build_compare", "build")
        steps.wrap(cls, "parse_compare", "parse")
    # The resolver holds the deserializer it was created with: wrap before the handler loads.
    steps.wrap(request_body, "loads", "loads")

    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="bench-results",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
        )
        sm = boto3.client("secretsmanager")
        for vendor in pairs:
            sm.create_secret(Name=f"facegate/bench/vendors/{vendor}", SecretString=json.dumps(creds[vendor]))
        handler = load_handler(str(ROOT / "functions" / "compare"))
        headers = {"Content-Type": "application/json", "x-api-key": API_KEY}

        for vendor, (a, b) in pairs.items():
            adapter, refs, body = direct_and_through(classes[vendor], vendor, creds, a, b)
            parsed = json.loads(body)
            direct, total, validate = [], [], []
            steps.clear()
            for i in range(n + 2):  # the first two warm both paths up
                ctx = CallContext(now=datetime.now(UTC), nonce="n", request_id="bench")
                steps.current = None
                t = time.perf_counter()
                adapter.compare(refs[0], refs[1], ctx)
                d = (time.perf_counter() - t) * 1000

                event = api_event("POST", "/v1/compare", body, headers=headers, api_key=API_KEY)
                steps.start()
                t = time.perf_counter()
                status, _, out = invoke(handler, event)
                h = (time.perf_counter() - t) * 1000
                steps.stop()
                assert status == 200, out

                t = time.perf_counter()
                CompareRequest.model_validate(parsed)
                v = (time.perf_counter() - t) * 1000
                if i >= 2:
                    direct.append(d)
                    total.append(h)
                    validate.append(v)
            rows = steps.rows[2:]
            per_step = {key: [r.get(key, 0.0) for r in rows] for _, key in STEPS if key != "validate"}
            per_step["validate"] = validate
            print(f"### In process, {vendor}, 2 x {len(a) // 1024} + {len(b) // 1024} KB (n={n})\n")
            print("| step | median ms |")
            print("|---|---|")
            accounted = 0.0
            for label, key in STEPS:
                m = med(per_step[key])
                accounted += m
                print(f"| {label} | {m:.2f} |")
            print(f"| rest (Powertools routing, the response, logging) | {med(total) - accounted:.2f} |")
            put = med(per_step["put"])
            # Per request, robust to the sandbox's own swings: the handler less what the direct
            # call does too (build and sign, send, parse).
            own = [
                t - r.get("send", 0.0) - r.get("build", 0.0) - r.get("parse", 0.0)
                for t, r in zip(total, rows, strict=True)
            ]
            own_less_put = [o - r.get("put", 0.0) for o, r in zip(own, rows, strict=True)]
            print(f"| **the handler, end to end** (p95 {p95(total):.1f}) | **{med(total):.2f}** |")
            print(f"| the vendor call alone: build, sign, send, parse (p95 {p95(direct):.1f}) | {med(direct):.2f} |")
            print(f"| **facegate's overhead** | **{med(total) - med(direct):.2f}** |")
            print(f"| of which the emulated DynamoDB write | {put:.2f} |")
            print(f"| **overhead without the DynamoDB write** | **{med(total) - med(direct) - put:.2f}** |")
            print(f"| facegate's own time per request (handler less build, send, parse) | {med(own):.2f} |")
            print(f"| **the same, without the DynamoDB write** | **{med(own_less_put):.2f}** |\n")
            steps.print_calls(skip=2)


def dynamodb_timer(steps: Steps) -> None:
    """facegate's DynamoDB work (the results log and its usage counters, the vendor health
    book, the latency samples), timed as the step "dynamodb"."""
    from facegate.health import DynamoHealthBook
    from facegate.latency import DynamoLatencyBook
    from facegate.store import ResultsStore

    steps.wrap(ResultsStore, "put", "dynamodb")
    for method in ("_read", "_claim_probe", "record_success", "record_failure"):
        steps.wrap(DynamoHealthBook, method, "dynamodb")
    for method in ("_read", "_write"):  # the fastest strategy's latency samples, one write per sample interval
        steps.wrap(DynamoLatencyBook, method, "dynamodb")


def through_make_run(pairs: dict[str, tuple[bytes, bytes]], creds: dict[str, dict], n: int) -> None:
    """``make run``'s server (facegate_local.server: the template's tables, secrets and
    environment, moto) on a thread of this process, so its DynamoDB calls can be timed;
    the client waits on its socket meanwhile."""
    import requests

    from facegate.vendors.base import CallContext
    from facegate.vendors.kuaidi100 import Kuaidi100Vendor
    from facegate.vendors.shuxun import ShuxunVendor
    from facegate_local.batch import reset_caches
    from facegate_local.server import build_runtime, make_http_server

    classes = {"shuxun": ShuxunVendor, "kuaidi100": Kuaidi100Vendor}
    steps = Steps()
    steps.count_dynamodb_calls()
    dynamodb_timer(steps)
    log = open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "w")  # noqa: SIM115 - closed below
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(creds, f)
        f.flush()
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("FACEGATE_", "POWERTOOLS_", "AWS_"))} | {
            "FACEGATE_API_KEY": API_KEY,
            "FACEGATE_CREDENTIALS": f.name,
            "FACEGATE_ALLOW_HTTP_URLS": "true",
        }
        os.environ.clear()
        os.environ.update(environ)
        # The in-process run's settings, service and store (its own table, its own moto) are
        # cached in this process: rebuilt from make run's environment, as a new container would.
        reset_caches()
        runtime = build_runtime(os.environ, log=log)
    httpd = make_http_server(runtime.api, 0, log=log)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        session = requests.Session()
        for vendor, (a, b) in pairs.items():
            adapter, refs, text = direct_and_through(classes[vendor], vendor, creds, a, b)
            body = text.encode()
            headers = {"Content-Type": "application/json", "x-api-key": API_KEY}
            direct, api = [], []
            steps.clear()
            for i in range(n + 2):
                ctx = CallContext(now=datetime.now(UTC), nonce="n", request_id="bench")
                t = time.perf_counter()
                adapter.compare(refs[0], refs[1], ctx)
                d = (time.perf_counter() - t) * 1000
                steps.start()
                t = time.perf_counter()
                r = session.post(f"{url}/v1/compare", data=body, headers=headers, timeout=60)
                h = (time.perf_counter() - t) * 1000
                steps.stop()
                assert r.status_code == 200, r.text
                if i >= 2:
                    direct.append(d)
                    api.append(h)
            dynamo = [row.get("dynamodb", 0.0) for row in steps.rows[2:]]
            kb = f"{len(a) // 1024} + {len(b) // 1024} KB"
            print(f"### Through `make run`, {vendor}, 2 x {kb} (n={n})\n")
            print("| path | median ms | p95 ms |")
            print("|---|---|---|")
            print(f"| signed request straight to the sandbox | {med(direct):.1f} | {p95(direct):.1f} |")
            print(f"| through facegate (`make run`) | {med(api):.1f} | {p95(api):.1f} |")
            print(f"| **facegate's overhead** | **{med(api) - med(direct):.1f}** | |")
            print(
                "| of which emulated DynamoDB (results log and usage counters, vendor health, latency samples) "
                f"| {med(dynamo):.1f} | |"
            )
            print(f"| **overhead without DynamoDB** | **{med(api) - med(direct) - med(dynamo):.1f}** | |\n")
            steps.print_calls(skip=2)
    finally:
        httpd.shutdown()
        httpd.server_close()
        runtime.close()
        log.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N
    pairs = {
        "shuxun": ((FACES / "obama.jpg").read_bytes(), (FACES / "obama2.jpg").read_bytes()),
        "kuaidi100": photos_1mb(),
    }
    sandboxes = subprocess.Popen(
        [sys.executable, "-c", SANDBOX_PROCESS],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        creds = json.loads(sandboxes.stdout.readline())
        in_process(pairs, creds, n)
        through_make_run(pairs, creds, n)
    finally:
        sandboxes.stdin.close()
        sandboxes.wait(timeout=10)


if __name__ == "__main__":
    main()
