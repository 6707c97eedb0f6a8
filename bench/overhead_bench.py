"""How much latency facegate adds on top of a vendor: the compare handler (validation,
image decode and fit, signing, routing, results-log write) against a Shuxun sandbox on
loopback, versus sending the same signed request straight to the sandbox.

DynamoDB is moto in-process here (a real PutItem adds ~5–10 ms in-region).
Run: .venv/bin/python bench/overhead_bench.py
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

N = 200
FACES = Path(os.environ.get("FACEGATE_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "testdata" / "faces"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main() -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="ERROR",
        FACEGATE_STAGE="bench",
        FACEGATE_RESULTS_TABLE="bench-results",
    )
    import boto3
    from moto import mock_aws

    from facegate import images
    from facegate.transport import Transport
    from facegate.vendors.base import CallContext, ImageRef
    from facegate.vendors.shuxun import ShuxunCredentials, ShuxunVendor
    from facegate_local.lambda_runtime import api_event, invoke, load_handler
    from facegate_local.sandboxes.shuxun import ShuxunSandbox

    a, b = (FACES / "obama.jpg").read_bytes(), (FACES / "obama2.jpg").read_bytes()
    with mock_aws(), ShuxunSandbox() as sandbox:
        boto3.client("dynamodb").create_table(
            TableName="bench-results",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
        )
        creds = {**ShuxunSandbox.default_credentials(), "endpoint": sandbox.url}
        boto3.client("secretsmanager").create_secret(
            Name="facegate/bench/vendors/shuxun", SecretString=json.dumps(creds)
        )

        # Direct: the same adapter's request, sent with a warm session.
        vendor = ShuxunVendor(ShuxunCredentials(**creds), Transport())
        refs = [ImageRef(image=images.load_bytes(x)) for x in (a, b)]
        direct = []
        for _ in range(N):
            ctx = CallContext(now=datetime.now(UTC), nonce="n", request_id="bench")
            t = time.perf_counter()
            vendor.compare(refs[0], refs[1], ctx)
            direct.append((time.perf_counter() - t) * 1000)

        handler = load_handler("functions/compare")
        body = json.dumps(
            {
                "vendor": "shuxun",
                "image1": {"base64": base64.b64encode(a).decode()},
                "image2": {"base64": base64.b64encode(b).decode()},
            }
        )
        headers = {"Content-Type": "application/json", "x-api-key": "k"}
        invoke(handler, api_event("POST", "/v1/compare", body, headers=headers, api_key="k"))  # warm
        api = []
        for _ in range(N):
            event = api_event("POST", "/v1/compare", body, headers=headers, api_key="k")
            t = time.perf_counter()
            status, _, out = invoke(handler, event)
            api.append((time.perf_counter() - t) * 1000)
            assert status == 200, out

    med_d, med_a = statistics.median(direct), statistics.median(api)
    print(f"direct vendor call   median {med_d:6.1f} ms  p95 {pct(direct, 0.95):6.1f} ms  (n={N})")
    print(f"through the handler  median {med_a:6.1f} ms  p95 {pct(api, 0.95):6.1f} ms  (n={N})")
    print(f"facegate overhead    median {med_a - med_d:6.1f} ms")


if __name__ == "__main__":
    main()
