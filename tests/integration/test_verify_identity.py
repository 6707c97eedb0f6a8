"""POST /v1/verify-identity through the handler, against the jumei sandbox: the
identity is checked before any call, stored only masked (plus a peppered HMAC)."""

from __future__ import annotations

import hashlib
import hmac

import boto3
import pytest

from facegate_local.sandboxes.jumei import DEFAULT_ID_NUMBER, DEFAULT_NAME, JumeiSandbox


@pytest.fixture
def jumei(aws, monkeypatch):
    sandbox = JumeiSandbox().start()
    aws.put_secret("jumei", {**JumeiSandbox.default_credentials(), "endpoint": sandbox.url})
    arn = boto3.client("secretsmanager").create_secret(Name="facegate/test/pepper", SecretString="p" * 64)["ARN"]
    monkeypatch.setenv("FACEGATE_PEPPER_SECRET", arn)
    yield sandbox
    sandbox.stop()


def body(b64, **kw):
    return {"name": DEFAULT_NAME, "id_number": DEFAULT_ID_NUMBER, "image": {"base64": b64("obama.jpg")}, **kw}


def test_match_defaults_to_the_vendor_that_offers_the_operation(jumei, aws, call_api, b64):
    status, got = call_api("verify_identity", "POST", "/v1/verify-identity", body(b64))
    assert status == 200, got
    assert (got["vendor"], got["decision"], got["operation"]) == ("jumei", "match", "verify_identity")
    assert got["id_number_masked"] == DEFAULT_ID_NUMBER[:4] + "*" * 10 + DEFAULT_ID_NUMBER[-4:]
    assert got["name_masked"].startswith(DEFAULT_NAME[0]) and DEFAULT_NAME not in got["name_masked"]
    assert got["vendor_request_id"] and got["billed"] is True

    (record,) = aws.records()
    text = str(record)
    assert DEFAULT_ID_NUMBER not in text and DEFAULT_NAME not in text
    expected = hmac.new(b"p" * 64, DEFAULT_ID_NUMBER.encode(), hashlib.sha256).hexdigest()
    assert record["id_number_hmac"] == expected
    assert hashlib.sha256(DEFAULT_ID_NUMBER.encode()).hexdigest() not in text


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"id_number": DEFAULT_ID_NUMBER[:-1] + "0"}, "INVALID_ID_NUMBER"),  # check digit
        ({"id_number": "11010519900307123"}, "INVALID_ID_NUMBER"),  # 17 characters
        ({"id_number": "110105209903071236"}, "INVALID_ID_NUMBER"),  # born in the future
        ({"name": "张3"}, "INVALID_NAME"),
        ({"name": "<script>"}, "INVALID_NAME"),
    ],
)
def test_invalid_identities_never_reach_the_vendor(jumei, aws, call_api, b64, change, code):
    status, got = call_api("verify_identity", "POST", "/v1/verify-identity", body(b64, **change))
    assert (status, got["error"]["code"]) == (422, code)
    assert jumei.requests == 0
    for value in change.values():
        assert value not in str(got) and value not in str(aws.records())


def test_the_vendors_identity_refusal_is_a_clear_4xx(jumei, aws, call_api, b64):
    jumei.people = {DEFAULT_ID_NUMBER: "李四"}
    status, got = call_api("verify_identity", "POST", "/v1/verify-identity", body(b64))
    assert (status, got["error"]["code"], got["error"]["vendor"]) == (422, "IDENTITY_MISMATCH", "jumei")
    assert got["error"]["vendor_code"] == "101"
    (record,) = aws.records()
    assert record["billed"] is True  # the public-security check ran and was billed
    assert DEFAULT_NAME not in str(record)


def test_a_fallback_that_lacks_the_operation_is_refused(jumei, call_api, b64):
    status, got = call_api("verify_identity", "POST", "/v1/verify-identity", body(b64, fallback=["shuxun"]))
    assert (status, got["error"]["code"]) == (400, "UNSUPPORTED_OPERATION")
    assert jumei.requests == 0
