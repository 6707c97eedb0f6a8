"""template.yaml's AuthMode through the real SAM transform, and the stack-wide settings every
function, log group, table, queue and secret must carry (KMS, retention, log groups)."""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path

import pytest

from facegate_local.template import Resolver, Template, gateway_responses, routes

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"
# The SAM translator lives in the SAM CLI's virtualenv (its pydantic pin conflicts with the
# runtime's), so the transform runs there. `make lint` (which `make test` runs first) builds it.
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"

# What CloudFormation's AWS::Serverless-2016-10-31 transform does with the given parameter
# values; code locations become S3 URIs as `sam validate` makes them.
TRANSFORM = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

template = yaml_parse(open(sys.argv[1], encoding="utf-8").read())
for resource in template["Resources"].values():
    props = resource.get("Properties") or {}
    if resource["Type"] == "AWS::Serverless::Function":
        props["CodeUri"] = "s3://bucket/function.zip"
    if resource["Type"] == "AWS::Serverless::LayerVersion":
        props["ContentUri"] = "s3://bucket/layer.zip"

class NoManagedPolicies:
    def load(self):
        return {}

print(json.dumps(transform(template, json.loads(sys.argv[2]), NoManagedPolicies())))
"""


def sam_transform(parameters: dict[str, str]) -> dict:
    return json.loads(_transformed(json.dumps(parameters, sort_keys=True)))


@cache  # ~15 s a transform: once per parameter set
def _transformed(parameters: str) -> str:
    assert SAM_PYTHON.exists(), "the SAM CLI's virtualenv is missing: run `make lint` (or `make .venv-sam/.installed`)"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [str(SAM_PYTHON), "-c", TRANSFORM, str(TEMPLATE), parameters],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def rest_api_body(transformed: dict) -> dict:
    (body,) = [
        r["Properties"]["Body"] for r in transformed["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"
    ]
    return body


def template_routes() -> set[tuple[str, str]]:
    template = Template.load(TEMPLATE)
    return {(r.path, r.method.lower()) for r in routes(template, Resolver(template))}


def unless_off(value):
    """A conditional function's route as it is when its condition holds: SAM wraps it in
    ``Fn::If [condition, route, AWS::NoValue]``."""
    while isinstance(value, dict) and list(value) == ["Fn::If"]:
        value = value["Fn::If"][1]
    return value


@pytest.fixture(scope="module", params=["ApiKey", "AWS_IAM"])
def mode_and_body(request):
    return request.param, rest_api_body(sam_transform({"AuthMode": request.param}))


def test_every_route_needs_the_api_key_and_in_iam_mode_a_sigv4_signature(mode_and_body):
    mode, body = mode_and_body
    deployed = {
        (path, method): unless_off(spec)
        for path, methods in body["paths"].items()
        for method, spec in unless_off(methods).items()
    }
    # Every Api event of every function, none left out (a new route is checked as it is added).
    assert set(deployed) == template_routes()
    for route, spec in deployed.items():
        schemes = [name for entry in spec.get("security", []) for name in entry]
        if route == ("/openapi.json", "get"):  # PublishOpenApi: the spec, with neither key nor signature
            assert not {"api_key", "AWS_IAM"} & set(schemes), schemes
            continue
        expected = ["AWS_IAM", "api_key"] if mode == "AWS_IAM" else ["api_key"]
        assert sorted(schemes) == expected, route
    schemes = body["components"]["securitySchemes"]
    assert schemes["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    if mode == "AWS_IAM":
        assert schemes["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    else:
        assert "AWS_IAM" not in schemes


def test_the_usage_plan_applies_in_both_modes():
    for mode in ("ApiKey", "AWS_IAM"):
        resources = sam_transform({"AuthMode": mode})["Resources"]
        kinds = {r["Type"] for r in resources.values()}
        assert {"AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlanKey"} <= kinds


def test_the_stage_writes_access_logs_without_bodies():
    transformed = sam_transform({"AuthMode": "ApiKey"})
    (stage,) = [r for r in transformed["Resources"].values() if r["Type"] == "AWS::ApiGateway::Stage"]
    setting = stage["Properties"]["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(setting["Format"])
    assert {"requestId", "ip", "caller", "apiKeyId", "httpMethod", "resourcePath", "status"} <= set(fields)
    assert not any("body" in v.lower() or "querystring" in v.lower() for v in fields.values())
    # The API (so its deployment and stage) waits for the account's CloudWatch role when the
    # stack creates it.
    assert stage["Properties"]["RestApiId"] == {"Ref": "FacegateApi"}
    assert "ApiGatewayAccountReady" in transformed["Resources"]["FacegateApi"]["DependsOn"]


def test_iam_mode_says_an_unsigned_request_may_be_why_no_route_matched():
    template = Template.load(TEMPLATE)
    for mode, needle in (("ApiKey", '"no such route"'), ("AWS_IAM", "not signed")):
        responses = gateway_responses(template, Resolver(template, parameters={"AuthMode": mode}), "FacegateApi")
        assert needle in responses["MISSING_AUTHENTICATION_TOKEN"].templates["application/json"]
    responses = gateway_responses(template, Resolver(template), "FacegateApi")
    for kind in ("INVALID_SIGNATURE", "EXPIRED_TOKEN", "ACCESS_DENIED"):
        assert responses[kind].status == 403
        assert '"code":"FORBIDDEN"' in responses[kind].templates["application/json"]


# --- settings every resource of a kind carries -------------------------------------------

KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def resolved(kind: str, kms_key: str = "") -> dict[str, dict]:
    template = Template.load(TEMPLATE)
    resolver = Resolver(template, parameters={"KmsKeyArn": kms_key})
    out = {}
    for logical, resource in template.of_type(kind).items():
        props = dict(resource.get("Properties") or {})
        # Only the properties under test: others reference resources not emulated here.
        keep = {"SSESpecification", "KmsKeyId", "KmsMasterKeyId", "SqsManagedSseEnabled", "RetentionInDays"}
        out[logical] = resolver.resolve({k: v for k, v in props.items() if k in keep})
    assert out, kind
    return out


@pytest.mark.parametrize("kms_key", ["", KMS_KEY])
def test_a_kms_key_encrypts_every_table_queue_secret_and_log_group(kms_key):
    for table in resolved("AWS::DynamoDB::Table", kms_key).values():
        sse = table["SSESpecification"]
        assert sse["SSEEnabled"] == "true" or sse["SSEEnabled"] is True
        assert sse.get("KMSMasterKeyId") == (kms_key or None)
        assert sse.get("SSEType") == ("KMS" if kms_key else None)
    for queue in resolved("AWS::SQS::Queue", kms_key).values():
        assert queue.get("KmsMasterKeyId") == (kms_key or None)
        assert (queue.get("SqsManagedSseEnabled") in (True, "true")) is not bool(kms_key)
    for secret in resolved("AWS::SecretsManager::Secret", kms_key).values():
        assert secret.get("KmsKeyId") == (kms_key or None)
    for group in resolved("AWS::Logs::LogGroup", kms_key).values():
        assert group.get("KmsKeyId") == (kms_key or None)
        assert group["RetentionInDays"]


def test_every_function_may_use_the_kms_key_and_has_a_log_group_with_retention():
    template = Template.load(TEMPLATE)
    kms_policy = {"Fn::If": ["HasKmsKey", {"Ref": "KmsUsePolicy"}, {"Ref": "AWS::NoValue"}]}
    log_groups = {
        str(r["Properties"]["LogGroupName"]["Fn::Sub"]): r for r in template.of_type("AWS::Logs::LogGroup").values()
    }
    for logical, function in template.of_type("AWS::Serverless::Function").items():
        assert kms_policy in function["Properties"]["Policies"], logical
        group = log_groups.get(f"/aws/lambda/${{{logical}}}")
        assert group is not None, f"{logical} has no explicit log group"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_batch_inputs_expire_and_reports_live_as_long_as_the_results_log():
    (bucket,) = Template.load(TEMPLATE).of_type("AWS::S3::Bucket").values()
    rules = {r.get("Prefix"): r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    for prefix in ("batches/", "inputs/"):
        assert rules[prefix]["Status"] == "Enabled"
        assert rules[prefix]["ExpirationInDays"] == {"Ref": "BatchInputRetentionDays"}
        assert rules[prefix]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
    assert rules["results/"]["ExpirationInDays"] == {"Ref": "ResultTtlDays"}


def test_every_gateway_response_carries_x_request_id_in_aws(mode_and_body):
    """The contract says every response carries X-Request-Id; API Gateway's own answers
    only do when each gateway response maps it (a type with an entry of its own does not
    inherit DEFAULT_4XX's parameters)."""
    _, body = mode_and_body
    responses = body["x-amazon-apigateway-gateway-responses"]
    assert {"DEFAULT_4XX", "DEFAULT_5XX", "INVALID_API_KEY"} <= set(responses)
    missing = {
        kind
        for kind, response in responses.items()
        if (response.get("responseParameters") or {}).get("gatewayresponse.header.X-Request-Id") != "context.requestId"
    }
    assert missing == set()
