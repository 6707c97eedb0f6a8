"""The local server in-process, against a small template with stand-in handlers:
routing, the API key, limits, events, contexts, environments and secrets, both
through ``LocalApi.handle`` and over real HTTP on loopback."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from facegate_local.gateway import MAX_BODY_BYTES, local_key_id
from facegate_local.httpd import make_http_server
from facegate_local.runtime import Runtime, StartupError, build_runtime

KEY = "test-key"
GATEWAY_403 = (
    '{"request_id":"$context.requestId","error":{"code":"FORBIDDEN","message":"missing or invalid API key",'
    '"retryable":false,"vendor":null,"vendor_code":null,"vendor_message":null}}'
)

TEMPLATE = f"""
Parameters:
  Stage: {{Type: String, Default: dev}}
  Level: {{Type: String, Default: INFO}}
Globals:
  Function:
    Handler: app.lambda_handler
    Timeout: 5
    MemorySize: 256
    Environment:
      Variables:
        FACEGATE_STAGE: !Ref Stage
        FACEGATE_RESULTS_TABLE: !Ref Table
        FACEGATE_DEFAULT_VENDOR: shuxun
        POWERTOOLS_LOG_LEVEL: !Ref Level
        LOCALTEST_FROM_TEMPLATE: template
        LOCALTEST_SHELL_WINS: template
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: !Ref Stage
      Auth: {{ApiKeyRequired: true}}
      GatewayResponses:
        INVALID_API_KEY:
          StatusCode: 403
          ResponseTemplates:
            application/json: '{GATEWAY_403}'
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{{AttributeName: request_id, AttributeType: S}}]
      KeySchema: [{{AttributeName: request_id, KeyType: HASH}}]
  ShuxunSecret:
    Type: AWS::SecretsManager::Secret
    Properties:
      Name: !Sub "facegate/${{Stage}}/vendors/shuxun"
      SecretString: '{{"configured": false}}'
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Timeout: 7
      Environment:
        Variables:
          LOCALTEST_ECHO_ONLY: "yes"
          LOCALTEST_MODELS: /opt/models-that-do-not-exist
      Events:
        Get: {{Type: Api, Properties: {{RestApiId: !Ref Api, Path: "/v1/echo/{{id}}", Method: get}}}}
        Post: {{Type: Api, Properties: {{RestApiId: !Ref Api, Path: "/v1/echo/{{id}}", Method: post}}}}
        Open:
          Type: Api
          Properties: {{RestApiId: !Ref Api, Path: /health, Method: get, Auth: {{ApiKeyRequired: false}}}}
  CrashFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: crash/
      Events:
        Post: {{Type: Api, Properties: {{RestApiId: !Ref Api, Path: /v1/crash, Method: post}}}}
  BadFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: bad/
      Events:
        Get: {{Type: Api, Properties: {{RestApiId: !Ref Api, Path: /v1/bad, Method: get}}}}
"""

ECHO = """
import json
import os

import boto3

NAMES = ("FACEGATE_STAGE", "FACEGATE_RESULTS_TABLE", "FACEGATE_DEFAULT_VENDOR", "POWERTOOLS_LOG_LEVEL",
         "LOCALTEST_FROM_TEMPLATE", "LOCALTEST_SHELL_WINS", "LOCALTEST_ECHO_ONLY", "LOCALTEST_MODELS",
         "FACEGATE_ALLOW_HTTP_URLS")


def lambda_handler(event, context):
    stage = os.environ["FACEGATE_STAGE"]
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=f"facegate/{stage}/vendors/shuxun")
    table = boto3.client("dynamodb").describe_table(TableName=os.environ["FACEGATE_RESULTS_TABLE"])
    body = {
        "event": event,
        "context": {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "aws_request_id": context.aws_request_id,
        },
        "env": {n: os.environ.get(n) for n in NAMES},
        "secret": json.loads(secret["SecretString"]),
        "table_status": table["Table"]["TableStatus"],
    }
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
"""

CRASH = """
def lambda_handler(event, context):
    raise ValueError("could not read " + event["body"])
"""

BAD = """
def lambda_handler(event, context):
    return "not a proxy response"
"""


@pytest.fixture
def environ():
    """build_runtime sets the functions' environment process-wide: put it back."""
    saved = dict(os.environ)
    modules = set(sys.modules)
    yield os.environ
    os.environ.clear()
    os.environ.update(saved)
    for name in set(sys.modules) - modules:
        if name.startswith("facegate_fn_"):
            del sys.modules[name]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "template.yaml").write_text(textwrap.dedent(TEMPLATE))
    for name, code in (("echo", ECHO), ("crash", CRASH), ("bad", BAD)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(textwrap.dedent(code))
    (tmp_path / "credentials.json").write_text(json.dumps({"shuxun": {"app_key": "k", "app_secret": "s"}}))
    return tmp_path


def start(project: Path, environ, **env) -> tuple[Runtime, io.StringIO]:
    environ.pop("FACEGATE_STAGE", None)
    environ.pop("FACEGATE_DEFAULT_VENDOR", None)
    environ.pop("POWERTOOLS_LOG_LEVEL", None)
    environ.update(FACEGATE_API_KEY=KEY, LOCALTEST_SHELL_WINS="shell", **env)
    log = io.StringIO()
    return build_runtime(environ, template_path=project / "template.yaml", log=log), log


@pytest.fixture
def runtime(project, environ):
    rt, log = start(project, environ, FACEGATE_CREDENTIALS=str(project / "credentials.json"))
    rt.log = log
    yield rt
    rt.close()


def call(rt: Runtime, method: str, target: str, body: bytes = b"", headers: dict | None = None):
    """(status, headers, parsed body); a header given as None is left out."""
    headers = {"x-api-key": KEY} if headers is None else headers
    hdrs = [(k, v) for k, v in headers.items() if v is not None]
    reply = rt.api.handle(method, target, hdrs, body)
    return reply.status, dict(reply.headers), json.loads(reply.body) if reply.body else None


def assert_contract_error(body: dict, code: str) -> None:
    assert set(body) == {"request_id", "error"}
    assert set(body["error"]) == {"code", "message", "retryable", "vendor", "vendor_code", "vendor_message"}
    assert body["error"]["code"] == code
    assert body["request_id"]


# --- routing, key, limits ----------------------------------------------------------------


def test_a_request_reaches_its_handler_with_an_api_gateway_event(runtime):
    status, headers, body = call(runtime, "GET", "/v1/echo/a%20b?x=1&x=2", headers={"x-api-key": KEY, "A": "1"})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    event = body["event"]
    assert event["resource"] == "/v1/echo/{id}"
    assert event["path"] == "/v1/echo/a%20b"
    assert event["pathParameters"] == {"id": "a b"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["requestContext"]["stage"] == "dev"  # the API's StageName
    assert event["requestContext"]["identity"]["apiKeyId"] == local_key_id(KEY)
    assert headers["x-amzn-RequestId"] == event["requestContext"]["requestId"]


def test_the_context_comes_from_the_template(runtime):
    _, _, body = call(runtime, "GET", "/v1/echo/1")
    ctx = body["context"]
    assert ctx["function_name"] == "facegate-local-EchoFunction"
    assert ctx["memory_limit_in_mb"] == "256"  # Globals; a string, as in the Python runtime
    assert ctx["invoked_function_arn"].endswith(":function:facegate-local-EchoFunction")
    assert 0 < ctx["remaining_ms"] <= 7000  # the function's own Timeout, not Globals'


def test_the_environment_is_template_then_local_defaults_then_shell(runtime):
    _, _, body = call(runtime, "GET", "/v1/echo/1")
    env = body["env"]
    assert env["FACEGATE_STAGE"] == "dev"
    assert env["FACEGATE_RESULTS_TABLE"] == "facegate-local-Table"  # Ref → the emulated table
    assert env["LOCALTEST_FROM_TEMPLATE"] == "template"
    assert env["LOCALTEST_ECHO_ONLY"] == "yes"  # a function's own variable
    assert env["FACEGATE_DEFAULT_VENDOR"] == "local"  # local default beats the template
    assert env["POWERTOOLS_LOG_LEVEL"] == "WARNING"
    assert env["LOCALTEST_SHELL_WINS"] == "shell"  # the shell beats both
    assert env["LOCALTEST_MODELS"] is None  # a path into Lambda's layer mount is dropped
    assert env["FACEGATE_ALLOW_HTTP_URLS"] is None  # only with sandboxes
    assert "LOCALTEST_MODELS" in runtime.log.getvalue()


def test_aws_is_emulated_with_the_credentials_file_in_the_secret(runtime):
    _, _, body = call(runtime, "GET", "/v1/echo/1")
    assert body["secret"] == {"app_key": "k", "app_secret": "s"}
    assert body["table_status"] == "ACTIVE"


def test_the_api_key_is_enforced_with_the_templates_gateway_response(runtime):
    for headers in ({"x-api-key": None}, {"x-api-key": "wrong"}):
        status, _, body = call(runtime, "GET", "/v1/echo/1", headers=headers)
        assert status == 403
        assert_contract_error(body, "FORBIDDEN")
        assert body["error"]["message"] == "missing or invalid API key"  # the template's text


def test_each_key_of_FACEGATE_API_KEYS_is_its_own_tenant(project, environ):
    rt, _ = start(project, environ, FACEGATE_API_KEYS=" key-b , key-c,,")
    try:
        ids = {}
        for key in (KEY, "key-b", "key-c"):
            status, _, body = call(rt, "GET", "/v1/echo/1", headers={"x-api-key": key})
            assert status == 200
            identity = body["event"]["requestContext"]["identity"]
            assert identity["apiKey"] == key
            ids[key] = identity["apiKeyId"]
        assert len(set(ids.values())) == 3  # one tenant per key
        assert all(key not in key_id for key, key_id in ids.items())  # an id, not the key
        # Stable: the same key gets the same id on the next request (and the next start).
        assert (
            call(rt, "GET", "/v1/echo/1", headers={"x-api-key": "key-b"})[2]["event"]["requestContext"]["identity"][
                "apiKeyId"
            ]
            == ids["key-b"]
            == local_key_id("key-b")
        )
        for wrong in ("key-d", "", "key-b,key-c"):
            assert call(rt, "GET", "/v1/echo/1", headers={"x-api-key": wrong})[0] == 403
    finally:
        rt.close()


def test_a_route_without_a_key_requirement_needs_none(runtime):
    status, _, body = call(runtime, "GET", "/health", headers={"x-api-key": None})
    assert status == 200
    assert body["event"]["requestContext"]["identity"]["apiKey"] is None


def test_unknown_routes_and_wrong_methods(runtime):
    status, _, body = call(runtime, "GET", "/v1/nothing")
    assert status == 404
    assert_contract_error(body, "NOT_FOUND")
    status, headers, body = call(runtime, "DELETE", "/v1/echo/1")
    assert status == 405
    assert headers["Allow"] == "GET, POST"
    assert_contract_error(body, "METHOD_NOT_ALLOWED")


def test_bodies_over_api_gateways_limit_are_refused(runtime):
    status, _, body = call(runtime, "POST", "/v1/echo/1", body=b"x" * (MAX_BODY_BYTES + 1))
    assert status == 413
    assert_contract_error(body, "IMAGE_TOO_LARGE")
    status, _, body = call(runtime, "POST", "/v1/echo/1", body=b"x" * 1000)
    assert status == 200
    assert body["event"]["body"] == "x" * 1000


def test_a_crashing_handler_is_a_502_and_its_traceback_is_logged_without_image_data(runtime):
    image = base64.b64encode(os.urandom(300)).decode()
    status, _, body = call(runtime, "POST", "/v1/crash", body=image.encode())
    assert status == 502
    assert_contract_error(body, "INTERNAL_ERROR")
    log = runtime.log.getvalue()
    assert "ValueError: could not read <redacted>" in log
    assert image[:64] not in log


def test_an_invalid_proxy_response_is_a_502(runtime):
    status, _, body = call(runtime, "GET", "/v1/bad")
    assert status == 502
    assert_contract_error(body, "INTERNAL_ERROR")


# --- startup ----------------------------------------------------------------------------------


def test_credentials_for_a_secret_the_template_lacks_are_reported(project, environ):
    (project / "credentials.json").write_text(json.dumps({"zoloz": {"client_id": "c"}}))
    rt, log = start(project, environ, FACEGATE_CREDENTIALS=str(project / "credentials.json"))
    rt.close()
    assert "credentials for facegate/dev/vendors/zoloz not loaded" in log.getvalue()
    assert '"c"' not in log.getvalue()


def test_a_bad_credentials_file_stops_startup_without_echoing_it(project, environ):
    (project / "credentials.json").write_text('{"shuxun": {"app_secret": "s3cr3t"')
    with pytest.raises(StartupError, match="not readable JSON") as e:
        start(project, environ, FACEGATE_CREDENTIALS=str(project / "credentials.json"))
    assert "s3cr3t" not in str(e.value)
    with pytest.raises(StartupError, match="does not exist"):
        start(project, environ, FACEGATE_CREDENTIALS=str(project / "missing.json"))


def test_the_stage_comes_from_facegate_stage(project, environ):
    rt, _ = start(project, environ, FACEGATE_STAGE="qa")
    try:
        _, _, body = call(rt, "GET", "/v1/echo/1")
        assert body["env"]["FACEGATE_STAGE"] == "qa"
        assert body["event"]["requestContext"]["stage"] == "qa"
        assert body["secret"] == {"configured": False}  # facegate/qa/vendors/shuxun, the placeholder
    finally:
        rt.close()


def test_sandbox_mode_points_unconfigured_vendors_at_their_sandboxes(project, environ):
    from facegate_local.sandboxes.shuxun import ShuxunSandbox

    rt, log = start(project, environ, FACEGATE_SANDBOXES="1")
    try:
        assert set(rt.sandboxes) == {"shuxun", "kuaidi100", "face2", "zoloz", "jumei"}
        _, _, body = call(rt, "GET", "/v1/echo/1")
        secret = body["secret"]
        assert secret["endpoint"] == rt.sandboxes["shuxun"].url
        assert {k: v for k, v in secret.items() if k != "endpoint"} == ShuxunSandbox.default_credentials()
        assert body["env"]["FACEGATE_ALLOW_HTTP_URLS"] == "true"
        lines = [line for line in log.getvalue().splitlines() if line.startswith("sandbox shuxun")]
        assert lines == [f"sandbox shuxun listening on {rt.sandboxes['shuxun'].url.removeprefix('http://')}"]
        assert "http://" not in log.getvalue()  # only the ready line names a URL
    finally:
        rt.close()


# --- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
def served(runtime):
    access = io.StringIO()
    httpd = make_http_server(runtime.api, 0, log=access)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], access
    httpd.shutdown()
    httpd.server_close()


def test_http_keeps_connections_alive_and_logs_without_bodies_or_queries(served):
    port, access = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/echo/1?name=secret-name", body=b'{"image":"QUJD"}', headers={"x-api-key": KEY})
        first = conn.getresponse()
        assert first.status == 200
        assert json.loads(first.read())["event"]["body"] == '{"image":"QUJD"}'
        conn.request("HEAD", "/v1/echo/2", headers={"x-api-key": KEY})  # same connection
        head = conn.getresponse()
        assert head.status == 405
        assert head.read() == b""
    finally:
        conn.close()
    lines = access.getvalue().splitlines()
    assert lines[0].startswith("POST /v1/echo/1 200 ")
    assert lines[1].startswith("HEAD /v1/echo/2 405 ")
    assert "secret-name" not in access.getvalue()
    assert "QUJD" not in access.getvalue()


def test_http_refuses_a_large_body_before_reading_it(served):
    port, _ = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", "/v1/echo/1")
        conn.putheader("x-api-key", KEY)
        conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        conn.endheaders()  # and no body: the server must answer from the header alone
        r = conn.getresponse()
        assert r.status == 413
        assert r.getheader("Connection") == "close"
        assert json.loads(r.read())["error"]["code"] == "IMAGE_TOO_LARGE"
    finally:
        conn.close()


def test_a_template_that_cannot_run_locally_stops_startup_with_a_reason(project, environ):
    template = project / "template.yaml"
    template.write_text(template.read_text().replace("Timeout: 7", "Timeout: !ImportValue shared-timeout"))
    with pytest.raises(StartupError, match="cannot be served locally: Unresolvable: Fn::ImportValue"):
        start(project, environ)
    template.write_text("Resources: [unclosed\n")
    with pytest.raises(StartupError, match=r"cannot be served locally: (ParserError|ScannerError)"):
        start(project, environ)
