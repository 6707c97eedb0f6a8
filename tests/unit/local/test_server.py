"""The pure parts of the local server: API Gateway events, proxy responses,
gateway response templates and the Lambda context."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

from facegate_local.gateway import (
    LocalApi,
    api_gateway_event,
    local_key_id,
    proxy_reply,
    render_gateway_header,
    render_gateway_template,
)
from facegate_local.lambda_context import LambdaContext
from facegate_local.template import Resolver, Route, RouteMatch, Template, gateway_responses


def event(**kw):
    args = {
        "match": RouteMatch(Route("GET", "/v1/results/{request_id}", "ResultsFunction"), {"request_id": "a%20b"}),
        "method": "GET",
        "raw_path": "/v1/results/a%20b",
        "query": "",
        "headers": [("Host", "127.0.0.1:3000"), ("x-api-key", "k"), ("User-Agent", "t/1")],
        "body": b"",
        "stage": "dev",
        "request_id": "gw-1",
        "source_ip": "127.0.0.1",
        "api_key": "k",
        "account_id": "123456789012",
    }
    return api_gateway_event(**{**args, **kw})


def test_the_event_has_the_rest_proxy_shape():
    e = event()
    assert e["resource"] == "/v1/results/{request_id}"
    assert e["path"] == "/v1/results/a%20b"  # REST APIs keep the client's encoding
    assert e["pathParameters"] == {"request_id": "a b"}  # … and decode parameters
    assert e["httpMethod"] == "GET"
    assert e["body"] is None  # an empty body is null, not ""
    assert e["isBase64Encoded"] is False
    assert e["queryStringParameters"] is None
    assert e["multiValueQueryStringParameters"] is None
    assert e["stageVariables"] is None
    ctx = e["requestContext"]
    assert ctx["resourcePath"] == "/v1/results/{request_id}"
    assert ctx["path"] == "/dev/v1/results/a%20b"
    assert (ctx["stage"], ctx["requestId"], ctx["httpMethod"]) == ("dev", "gw-1", "GET")
    assert ctx["identity"]["apiKey"] == "k"
    assert ctx["identity"]["apiKeyId"] == local_key_id("k")
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["identity"]["userAgent"] == "t/1"
    assert isinstance(ctx["requestTimeEpoch"], int)


def test_repeated_headers_and_query_parameters():
    e = event(
        headers=[("Accept", "a"), ("Accept", "b"), ("x-api-key", "k")],
        query="x=1&x=2&name=J%C3%BCrgen&empty=",
    )
    assert e["headers"]["Accept"] == "b"  # the last value, as API Gateway does
    assert e["multiValueHeaders"]["Accept"] == ["a", "b"]
    assert e["queryStringParameters"] == {"x": "2", "name": "Jürgen", "empty": ""}
    assert e["multiValueQueryStringParameters"]["x"] == ["1", "2"]


def test_bodies_are_text_unless_they_are_not_utf8():
    text = event(method="POST", body='{"a": "é"}'.encode())
    assert (text["body"], text["isBase64Encoded"]) == ('{"a": "é"}', False)
    raw = b"\xff\xd8\xff\xe0binary"
    binary = event(method="POST", body=raw)
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == raw


def test_no_api_key_means_no_key_id():
    ctx = event(api_key=None)["requestContext"]
    assert ctx["identity"]["apiKey"] is None
    assert ctx["identity"]["apiKeyId"] is None


def test_proxy_reply_merges_headers_like_api_gateway():
    r = proxy_reply(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "application/json", "X-One": "h"},
            "multiValueHeaders": {"x-one": ["m1", "m2"], "Set-Cookie": ["a=1", "b=2"]},
            "body": '{"ok": true}',
        },
        "gw-1",
    )
    assert r is not None
    assert r.status == 201
    assert r.body == b'{"ok": true}'
    assert ("x-one", "m1") in r.headers and ("x-one", "m2") in r.headers
    assert ("X-One", "h") not in r.headers  # the multi-value form wins for a name in both
    assert [v for k, v in r.headers if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert ("x-amzn-RequestId", "gw-1") in r.headers


def test_proxy_reply_decodes_base64_bodies_and_drops_hop_by_hop_headers():
    r = proxy_reply(
        {
            "statusCode": 200,
            "headers": {"Content-Length": "999", "Connection": "keep-alive"},
            "body": base64.b64encode(b"\x00\x01").decode(),
            "isBase64Encoded": True,
        },
        "gw",
    )
    assert r is not None
    assert r.body == b"\x00\x01"
    assert not [k for k, _ in r.headers if k.lower() in ("content-length", "connection")]


def test_an_invalid_proxy_response_is_none():
    assert proxy_reply(None, "gw") is None
    assert proxy_reply({"body": "no status"}, "gw") is None
    assert proxy_reply({"statusCode": "200"}, "gw") is None
    assert proxy_reply({"statusCode": 200, "body": "!!", "isBase64Encoded": True}, "gw") is None


CONTRACT = (
    '{"request_id":"$context.requestId","error":{"code":"FORBIDDEN","message":$context.error.messageString,'
    '"retryable":false,"vendor":null,"vendor_code":null,"vendor_message":null}}'
)


def test_gateway_templates_get_the_context_variables():
    rid = str(uuid.uuid4())
    out = render_gateway_template(CONTRACT, request_id=rid, message='say "hi"', response_type="INVALID_API_KEY")
    assert out is not None
    body = json.loads(out)
    assert body["request_id"] == rid
    assert body["error"]["message"] == 'say "hi"'
    inline = render_gateway_template(
        '{"m":"$context.error.message.","t":"$context.error.responseType"}',
        request_id=rid,
        message="a\nb",
        response_type="DEFAULT_4XX",
    )
    assert inline is not None
    assert json.loads(inline) == {"m": "a\nb.", "t": "DEFAULT_4XX"}


def test_gateway_templates_we_cannot_render_fall_back():
    kw = {"request_id": "r", "message": "m", "response_type": "DEFAULT_4XX"}
    assert render_gateway_template('{"k":"$input.body"}', **kw) is None
    assert render_gateway_template('#set($x = 1){"k":1}', **kw) is None
    assert render_gateway_template("not json $context.requestId", **kw) is None


def test_the_context_counts_down_from_the_timeout():
    ctx = LambdaContext(
        function_name="facegate-local-ResultsFunction",
        memory_limit_in_mb="256",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:facegate-local-ResultsFunction",
        timeout_s=10,
    )
    assert 0 < ctx.get_remaining_time_in_millis() <= 10_000
    assert ctx.log_group_name == "/aws/lambda/facegate-local-ResultsFunction"
    assert ctx.memory_limit_in_mb == "256"
    uuid.UUID(ctx.aws_request_id)
    expired = LambdaContext(function_name="f", memory_limit_in_mb="1", invoked_function_arn="a", timeout_s=0)
    assert expired.get_remaining_time_in_millis() == 0


# --- X-Request-Id on the gateway's own answers ----------------------------------------------

TEMPLATE_PATH = Path(__file__).resolve().parents[3] / "template.yaml"


def test_every_gateway_response_of_the_template_is_rendered_with_its_x_request_id():
    """Each type the template configures, and types it leaves to DEFAULT_4XX/5XX, as the
    local emulation renders them: X-Request-Id is the request id of the body."""
    template = Template.load(TEMPLATE_PATH)
    responses = gateway_responses(template, Resolver(template), "FacegateApi")
    api = LocalApi(routes=[], functions={}, api_keys=("k",), gateway_responses=responses)
    kinds = [(kind, 400) for kind in responses] + [("BAD_REQUEST_BODY", 400), ("AUTHORIZER_FAILURE", 500)]
    for kind, status in kinds:
        reply = api.gateway_error(kind, status, "INVALID_REQUEST", "m")
        headers = dict(reply.headers)
        assert headers.get("X-Request-Id") == json.loads(reply.body)["request_id"] == headers["x-amzn-RequestId"], kind


def test_gateway_header_expressions():
    assert render_gateway_header("context.requestId", request_id="r", response_type="T") == "r"
    assert render_gateway_header("'static'", request_id="r", response_type="T") == "static"
    assert render_gateway_header("context.error.responseType", request_id="r", response_type="T") == "T"
    assert render_gateway_header("method.request.header.x", request_id="r", response_type="T") is None


def test_without_a_gateway_response_the_builtin_error_still_carries_x_request_id():
    reply = LocalApi(routes=[], functions={}, api_keys=("k",)).gateway_error("THROTTLED", 429, "RATE_LIMITED", "m")
    assert dict(reply.headers)["X-Request-Id"] == json.loads(reply.body)["request_id"]
