"""The ColdStart metric: written on a handler's first invocation where metrics are on
(in Lambda), and nothing on stdout where they are off (``make run``, tests).
Powertools' own ``capture_cold_start_metric`` prints it either way; each case runs in
a fresh interpreter, since "cold" is per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Import the vendors handler as a container would and invoke it twice; an exception in
# the handler is fine (no AWS here): the metrics decorator flushes in its `finally`.
SCRIPT = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("fn", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

class Context:
    function_name = "facegate-test-VendorsFunction"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:f"
    aws_request_id = "r"

for _ in range(2):
    try:
        module.lambda_handler({"httpMethod": "OPTIONS", "path": "/v1/vendors", "headers": {}}, Context())
    except Exception:
        pass
"""


def run_handler(metrics_disabled: str) -> list[dict]:
    env = {
        **os.environ,
        "POWERTOOLS_METRICS_DISABLED": metrics_disabled,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "CRITICAL",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("POWERTOOLS_DEV", None)
    out = subprocess.run(  # noqa: S603 - our own interpreter and handler file
        [sys.executable, "-c", SCRIPT, str(ROOT / "functions/vendors/app.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]


@pytest.mark.parametrize("disabled", ["true", "1"])
def test_no_cold_start_metric_on_stdout_when_metrics_are_off(disabled):
    assert run_handler(disabled) == []


def test_cold_start_metric_once_when_metrics_are_on():
    records = [r for r in run_handler("false") if "ColdStart" in r]
    assert len(records) == 1, records
    assert records[0]["function_name"] == "facegate-test-VendorsFunction"
    assert records[0]["service"] == "facegate"
