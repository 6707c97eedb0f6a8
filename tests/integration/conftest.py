"""Handlers in-process against moto: the results table and vendor secrets as the
template defines them."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from moto import mock_aws

TABLE = "facegate-test-results"
IDEMPOTENCY_TABLE = "facegate-test-idempotency"
STAGE = "test"
PLACEHOLDER = {"configured": False}  # template.yaml's vendor secrets, as the stack creates them


def _reset_caches() -> None:
    from aws_lambda_powertools.utilities import parameters

    from facegate import config, idempotency, service, store

    config.settings.cache_clear()
    idempotency.persistence_layer.cache_clear()
    service.default_service.cache_clear()
    store.default_store.cache_clear()
    parameters.clear_caches()


@pytest.fixture
def aws(monkeypatch):
    """Emulated AWS with the results and idempotency tables; yields a helper to put vendor secrets."""
    monkeypatch.setenv("FACEGATE_STAGE", STAGE)
    monkeypatch.setenv("FACEGATE_RESULTS_TABLE", TABLE)
    monkeypatch.setenv("FACEGATE_DEFAULT_VENDOR", "local")
    monkeypatch.setenv("FACEGATE_IDEMPOTENCY_TABLE", IDEMPOTENCY_TABLE)
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.create_table(  # as template.yaml's IdempotencyTable (Powertools' attribute names)
            TableName=IDEMPOTENCY_TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        _reset_caches()
        sm = boto3.client("secretsmanager")

        class Aws:
            table = boto3.resource("dynamodb").Table(TABLE)
            reset_caches = staticmethod(_reset_caches)  # after changing FACEGATE_* variables

            @staticmethod
            def put_secret(vendor: str, value: dict) -> None:
                """As in a deployed stage: the stack's placeholder, then (unless the value is the
                placeholder itself) the operator's put-secret-value."""
                name = f"facegate/{STAGE}/vendors/{vendor}"
                sm.create_secret(Name=name, SecretString=json.dumps(PLACEHOLDER))
                if value != PLACEHOLDER:
                    sm.put_secret_value(SecretId=name, SecretString=json.dumps(value))

            def records(self) -> list[dict]:
                items, kw = [], {"ConsistentRead": True}
                while True:  # every page: a large run spans several
                    page = self.table.scan(**kw)
                    items += page["Items"]
                    if "LastEvaluatedKey" not in page:
                        return items
                    kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]

            @staticmethod
            def idempotency_records() -> list[dict]:
                return boto3.resource("dynamodb").Table(IDEMPOTENCY_TABLE).scan(ConsistentRead=True)["Items"]

        yield Aws()
        _reset_caches()


@pytest.fixture
def b64(face_bytes):
    def encode(name: str) -> str:
        return base64.b64encode(face_bytes(name)).decode()

    return encode


@pytest.fixture
def call_api():
    """call_api(op, method, path, body=None, raw_body=None, headers=None, **event_kw) -> (status, body).
    The caller is API key id ``test-key-id`` unless ``api_key_id`` says otherwise."""
    import json as _json

    from facegate_local.lambda_runtime import api_event, invoke, load_handler

    def call(op, method, path, body=None, *, raw_body=None, headers=None, **kw):
        text = raw_body if raw_body is not None else (None if body is None else _json.dumps(body))
        hdrs = {"Content-Type": "application/json", "x-api-key": "test-key"} if headers is None else headers
        kw.setdefault("api_key_id", "test-key-id")
        event = api_event(method, path, text, headers=hdrs, stage="dev", api_key="test-key", **kw)
        status, _, parsed = invoke(load_handler(f"functions/{op}"), event, f"facegate-{op}")
        return status, parsed

    return call


USAGE_TABLE = "facegate-test-usage"


@pytest.fixture
def usage_table(aws, monkeypatch):
    """The usage counters table (template.yaml's UsageTable) on top of ``aws``; yields a
    helper that reads GET /v1/usage as a given API key id."""
    monkeypatch.setenv("FACEGATE_USAGE_TABLE", USAGE_TABLE)
    boto3.client("dynamodb").create_table(
        TableName=USAGE_TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    _reset_caches()
    return boto3.resource("dynamodb").Table(USAGE_TABLE)
