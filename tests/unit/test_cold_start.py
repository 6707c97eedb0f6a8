"""What a new container imports, in a fresh interpreter as Lambda does: the X-Ray SDK
only when the function is traced (and then the handler still opens its segment), and
nothing an ordinary request does not need. Traced, botocore and requests are patched for
X-Ray when the process first imports them (boto3, requests), so that a real first request's
AWS and vendor calls are traced; ahead-of-time inits (SnapStart) patch at init."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
def patched():
    if "aws_xray_sdk.core" not in sys.modules:
        return None
    from aws_xray_sdk.core import patcher
    return sorted(patcher._PATCHED_MODULES)

patched_at_init = patched()
status = fn.lambda_handler(event, Context())["statusCode"]
patched_after_404 = patched()
import boto3, requests  # what the first request that needs them does
print(json.dumps({"loaded": loaded, "provider": provider, "disabled": tracer.disabled, "status": status,
                  "opened": opened, "annotations": annotations, "patched_at_init": patched_at_init,
                  "patched_after_404": patched_after_404, "patched": patched()}))
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
    of X-Ray's, annotated as Powertools does, and the AWS SDK and requests are patched as
    soon as the process imports them: not at init, nor for a request that does not need them."""
    run = _cold_start(LAMBDA_TASK_ROOT=str(ROOT), POWERTOOLS_TRACE_DISABLED="false")
    assert run["provider"].startswith("aws_xray_sdk"), run
    assert run["disabled"] is False
    assert run["loaded"]["aws_xray_sdk.core"] is True
    assert run["opened"] == ["## lambda_handler"]
    assert run["annotations"]["ColdStart"] is True and run["annotations"]["Service"] == "facegate"
    assert run["patched_at_init"] == [] and run["patched_after_404"] == []
    assert run["patched"] == ["botocore", "requests"]  # only these: not sqlite3, httplib, ...
    assert run["loaded"]["sqlite3"] is False
    assert run["status"] == 404


@pytest.mark.parametrize("init", ["snap-start", "provisioned-concurrency"])
def test_an_init_ahead_of_requests_patches_at_init(init):
    """SnapStart snapshots the init, provisioned concurrency runs it before traffic: the
    patches (and boto3 and requests, which they need) are done there, at no caller's cost."""
    run = _cold_start(
        LAMBDA_TASK_ROOT=str(ROOT), POWERTOOLS_TRACE_DISABLED="false", AWS_LAMBDA_INITIALIZATION_TYPE=init
    )
    assert run["patched_at_init"] == ["botocore", "requests"]
    assert run["opened"] == ["## lambda_handler"] and run["status"] == 404


def test_an_untraced_function_never_imports_the_x_ray_sdk_nor_idempotency():
    for env in ({"POWERTOOLS_TRACE_DISABLED": "true", "LAMBDA_TASK_ROOT": str(ROOT)}, {}):  # off; not in Lambda
        run = _cold_start(**env)
        assert run["disabled"] is True, env
        assert run["loaded"] == {"aws_xray_sdk.core": False, "facegate.idempotency": False, "sqlite3": False}, env
        assert run["status"] == 404, env  # and the handler, wrapped by the no-op tracer, still answers
        assert run["patched"] is None, env  # importing boto3 and requests did not bring it in either


# Imports one function's app.py as a new container does, then says whether pydantic
# searched the installed distributions for plugins while the import built its models.
PLUGIN_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("fn", sys.argv[1])
fn = importlib.util.module_from_spec(spec); sys.modules["fn"] = fn; spec.loader.exec_module(fn)
loader = sys.modules.get("pydantic.plugin._loader")
print(json.dumps({"searched": loader is not None and loader._plugins is not None}))
"""
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))


def _globals_variable(name: str) -> str:
    from facegate_local.template import Template

    variables = Template.load(ROOT / "template.yaml").globals["Function"]["Environment"]["Variables"]
    return str(variables[name])


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_function_searches_the_installed_distributions_for_pydantic_plugins(function):
    """The template's Globals set PYDANTIC_DISABLE_PLUGINS: pydantic would otherwise read every
    installed distribution's metadata when a process builds its first model (Powertools builds
    one at import), tens of ms of a cold start, for plugins facegate does not use. In the
    template, not in code, so it holds whichever module a function imports first (the usage
    function imports Powertools' OpenAPI params, which build a model, before any of ours)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "LAMBDA_", "AWS_SAM", "PYDANTIC"))}
    base |= {"PYTHONPATH": str(ROOT / "layers" / "facegate"), "AWS_DEFAULT_REGION": "us-east-1"}

    def searched(env: dict[str, str]) -> bool:
        out = subprocess.run(  # noqa: S603 - our python, our probe, our handler
            [sys.executable, "-c", PLUGIN_PROBE, str(ROOT / "functions" / function / "app.py")],
            capture_output=True,
            text=True,
            env=base | env,
            check=True,
            timeout=120,
        )
        return bool(json.loads(out.stdout.strip().splitlines()[-1])["searched"])

    setting = {"PYDANTIC_DISABLE_PLUGINS": _globals_variable("PYDANTIC_DISABLE_PLUGINS")}
    assert searched(setting) is False
    if function == "usage":  # the probe can see a search: without the setting, this import makes one
        assert searched({}) is True


# A traced container's first request, a real compare: Secrets Manager and DynamoDB in moto's
# server (a process of its own, so boto3 is imported by the request, as in Lambda), Shuxun
# played by its sandbox. X-Ray's emitter is replaced by one that keeps what would be sent.
FIRST_COMPARE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("fn", sys.argv[1])
fn = importlib.util.module_from_spec(spec); sys.modules["fn"] = fn; spec.loader.exec_module(fn)
imported_at_init = [m for m in ("boto3", "requests") if m in sys.modules]
from aws_xray_sdk.core import patcher, xray_recorder
sent = []

class Emitter:
    def send_entity(self, entity): sent.append(entity.to_dict())
    def set_daemon_address(self, address): pass

xray_recorder.configure(emitter=Emitter())

class Context:
    function_name = "compare"; memory_limit_in_mb = 1769; aws_request_id = "r-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:compare"
    def get_remaining_time_in_millis(self): return 29_000

response = fn.lambda_handler(json.loads(open(sys.argv[2]).read()), Context())

def names(entity):
    yield entity["name"], entity.get("namespace")
    for child in entity.get("subsegments", []):
        yield from names(child)

print(json.dumps({"status": response["statusCode"], "imported_at_init": imported_at_init,
                  "patched": sorted(patcher._PATCHED_MODULES), "sent": [n for e in sent for n in names(e)]}))
"""


def test_a_traced_first_request_traces_its_aws_and_vendor_calls(tmp_path, faces):
    import boto3

    from facegate_local.batch_processes import MotoServer
    from facegate_local.lambda_runtime import api_event
    from facegate_local.sandboxes.shuxun import ShuxunSandbox

    server, sandbox = MotoServer(), ShuxunSandbox().start()
    try:
        aws = server.environment() | {"AWS_DEFAULT_REGION": "us-east-1"}
        session = boto3.Session(
            aws_access_key_id=aws["AWS_ACCESS_KEY_ID"], aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"]
        )
        session.client("dynamodb", endpoint_url=server.url, region_name="us-east-1").create_table(
            TableName="t-results",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
        )
        session.client("secretsmanager", endpoint_url=server.url, region_name="us-east-1").create_secret(
            Name="facegate/t/vendors/shuxun",
            SecretString=json.dumps({**sandbox.default_credentials(), "endpoint": sandbox.url}),
        )
        body = {"vendor": "shuxun"} | {
            f"image{i}": {"base64": base64.b64encode((faces / name).read_bytes()).decode()}
            for i, name in ((1, "obama.jpg"), (2, "obama2.jpg"))
        }
        event = tmp_path / "event.json"
        event.write_text(json.dumps(api_event("POST", "/v1/compare", json.dumps(body), api_key="k")))
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "LAMBDA_", "AWS_", "FACEGATE_"))
        }
        env = (
            base
            | aws
            | {
                "PYTHONPATH": str(ROOT / "layers" / "facegate"),
                "LAMBDA_TASK_ROOT": str(ROOT),
                "POWERTOOLS_TRACE_DISABLED": "false",
                "POWERTOOLS_METRICS_DISABLED": "true",
                "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
                "FACEGATE_STAGE": "t",
                "FACEGATE_RESULTS_TABLE": "t-results",
            }
        )
        out = subprocess.run(  # noqa: S603 - our python, our probe, our handler
            [sys.executable, "-c", FIRST_COMPARE, str(ROOT / "functions" / "compare" / "app.py"), str(event)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=120,
        )
    finally:
        sandbox.stop()
        server.stop()
    run = json.loads(out.stdout.strip().splitlines()[-1])
    assert run["status"] == 200, out.stdout[-2000:]
    assert run["imported_at_init"] == []  # boto3 and requests came with the request
    assert run["patched"] == ["botocore", "requests"]
    sent = set(map(tuple, run["sent"]))
    assert {("secretsmanager", "aws"), ("dynamodb", "aws"), ("127.0.0.1", "remote")} <= sent, sent
    assert ("## lambda_handler", "local") in sent
