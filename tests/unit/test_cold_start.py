"""What a new container imports, in a fresh interpreter as Lambda does: the X-Ray SDK
only when the function is traced (and then the handler still opens its segment), and
nothing an ordinary request does not need."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Imports functions/compare/app.py, records the subsegments the tracer's provider opens,
# invokes the handler once (an unknown route: no vendor, no store) and reports.
PROBE = """
import contextlib, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("fn", sys.argv[1])
fn = importlib.util.module_from_spec(spec); sys.modules["fn"] = fn; spec.loader.exec_module(fn)
loaded = {m: m in sys.modules for m in ("aws_xray_sdk.core", "facegate.idempotency", "sqlite3")}
from facegate.observability import tracer
opened, annotations = [], {}

class Segment:
    def put_annotation(self, key, value): annotations[key] = value
    def put_metadata(self, *a, **k): pass
    def add_exception(self, *a, **k): pass

@contextlib.contextmanager
def in_subsegment(name=None, **kwargs):
    opened.append(name); yield Segment()

provider = type(tracer.provider).__module__
tracer.provider.in_subsegment = in_subsegment

class Context:
    function_name = "compare"; memory_limit_in_mb = 512; aws_request_id = "r-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:compare"
    def get_remaining_time_in_millis(self): return 10_000

event = {"httpMethod": "GET", "path": "/v1/nowhere", "headers": {}, "requestContext": {}}
status = fn.lambda_handler(event, Context())["statusCode"]
patched = []
if loaded["aws_xray_sdk.core"]:
    from aws_xray_sdk.core import patcher
    patched = sorted(patcher._PATCHED_MODULES)
print(json.dumps({"loaded": loaded, "provider": provider, "disabled": tracer.disabled, "status": status,
                  "opened": opened, "annotations": annotations, "patched": patched}))
"""


def _cold_start(**env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "LAMBDA_", "AWS_SAM"))}
    base |= {"PYTHONPATH": str(ROOT / "layers" / "facegate"), "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run(  # noqa: S603 - our python, our probe, our handler
        [sys.executable, "-c", PROBE, str(ROOT / "functions" / "compare" / "app.py")],
        capture_output=True,
        text=True,
        env=base | env,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_traced_function_still_emits_its_handler_segment_through_x_ray():
    """template.yaml: Tracing: Active. In Lambda, the handler's invocation is a subsegment
    of X-Ray's, annotated as Powertools does, and the AWS SDK and requests are patched."""
    run = _cold_start(LAMBDA_TASK_ROOT=str(ROOT), POWERTOOLS_TRACE_DISABLED="false")
    assert run["provider"].startswith("aws_xray_sdk"), run
    assert run["disabled"] is False
    assert run["loaded"]["aws_xray_sdk.core"] is True
    assert run["opened"] == ["## lambda_handler"]
    assert run["annotations"]["ColdStart"] is True and run["annotations"]["Service"] == "facegate"
    assert {"botocore", "requests"} <= set(run["patched"])
    assert "sqlite3" not in run["patched"] and run["loaded"]["sqlite3"] is False
    assert run["status"] == 404


def test_an_untraced_function_never_imports_the_x_ray_sdk_nor_idempotency():
    for env in ({"POWERTOOLS_TRACE_DISABLED": "true", "LAMBDA_TASK_ROOT": str(ROOT)}, {}):  # off; not in Lambda
        run = _cold_start(**env)
        assert run["disabled"] is True, env
        assert run["loaded"] == {"aws_xray_sdk.core": False, "facegate.idempotency": False, "sqlite3": False}, env
        assert run["status"] == 404, env  # and the handler, wrapped by the no-op tracer, still answers
