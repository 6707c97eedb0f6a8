"""Idempotency-Key on the POST operations, through the handlers against moto: a
repeat returns the first answer without calling a vendor or logging again; the
same key with another body, a concurrent repeat, a bad key and a missing or
failing store each get their own answer in the contract's error shape."""

from __future__ import annotations

import json
import time

import pytest

from facegate import config
from facegate.errors import VendorUnavailable
from facegate.vendors.local import LocalVendor
from facegate_local.lambda_runtime import api_event, invoke, load_handler

PATHS = {
    "compare": "/v1/compare",
    "detect": "/v1/detect",
    "features": "/v1/features",
    "verify_identity": "/v1/verify-identity",
}
ERROR_FIELDS = {"code", "message", "retryable", "vendor", "vendor_code", "vendor_message"}


def post(op: str, body, *, key: str | None = None, header: str = "Idempotency-Key", api_key_id="key-a", **extra):
    """POST to an operation's handler; (status, headers, parsed body)."""
    headers = {"Content-Type": "application/json", "x-api-key": "test-key", **extra}
    if key is not None:
        headers[header] = key
    event = api_event(
        "POST",
        PATHS[op],
        body if isinstance(body, str) else json.dumps(body),
        headers=headers,
        stage="dev",
        api_key="test-key",
        api_key_id=api_key_id,
    )
    return invoke(load_handler(f"functions/{op}"), event, f"facegate-{op}")


def assert_contract_error(status: int, body: dict, expected_status: int, code: str) -> dict:
    assert (status, body["error"]["code"]) == (expected_status, code), body
    assert set(body) == {"request_id", "error"}
    assert set(body["error"]) == ERROR_FIELDS
    assert body["error"]["message"]
    return body["error"]


@pytest.fixture
def engine_calls(monkeypatch):
    """Every call into the built-in engine (the vendor here), by operation."""
    calls: list[str] = []
    for op in ("compare", "detect", "features"):
        original = getattr(LocalVendor, op)

        def spy(self, *args, _op=op, _original=original, **kw):
            calls.append(_op)
            return _original(self, *args, **kw)

        monkeypatch.setattr(LocalVendor, op, spy)
    return calls


@pytest.fixture
def same_person(b64):
    return {"image1": {"base64": b64("obama.jpg")}, "image2": {"base64": b64("obama2.jpg")}}


def test_a_repeat_returns_the_first_answer_without_a_vendor_call_or_a_second_record(
    aws, engine_calls, same_person, b64
):
    status, headers, first = post("compare", same_person, key="order-42:check-1")
    assert status == 200, first
    assert first["decision"] == "match"
    assert headers["X-Request-Id"] == first["request_id"]
    assert "Idempotent-Replay" not in headers

    # The header's name in any case is the same header.
    again_status, again_headers, again = post("compare", same_person, key="order-42:check-1", header="idempotency-key")

    assert again_status == 200
    assert again == first  # the same answer: request_id, similarity, latency_ms, attempts
    assert again_headers["X-Request-Id"] == first["request_id"]
    assert again_headers["Idempotent-Replay"] == "true"
    assert engine_calls == ["compare"]
    (record,) = aws.records()
    assert record["request_id"] == first["request_id"]

    (item,) = aws.idempotency_records()
    assert item["status"] == "COMPLETED"
    assert item["id"].startswith("facegate.compare#")
    assert "order-42" not in item["id"] and "key-a" not in item["id"]  # only hashes
    stored = json.loads(item["data"])
    assert stored["statusCode"] == 200
    assert json.loads(stored["body"]) == first
    assert b64("obama.jpg")[:200] not in json.dumps(item, default=str)
    day = 24 * 3600
    assert time.time() + day - 120 < int(item["expiration"]) <= time.time() + day


def test_the_same_key_with_another_body_is_a_422_and_runs_nothing(aws, engine_calls, same_person):
    status, _, first = post("compare", same_person, key="k-reused")
    assert status == 200, first

    status, headers, got = post("compare", {**same_person, "security_level": "high"}, key="k-reused")

    error = assert_contract_error(status, got, 422, "IDEMPOTENCY_KEY_REUSED")
    assert error["retryable"] is False
    assert got["request_id"] != first["request_id"]
    assert headers["X-Request-Id"] == got["request_id"]
    assert engine_calls == ["compare"]
    # The refused call is a call: it has its own record, and the first answer is kept.
    assert {r["request_id"]: r.get("error_code") for r in aws.records()} == {
        first["request_id"]: None,
        got["request_id"]: "IDEMPOTENCY_KEY_REUSED",
    }
    assert post("compare", same_person, key="k-reused")[2] == first


def test_a_concurrent_repeat_is_a_retryable_409_while_the_first_runs(aws, monkeypatch, same_person):
    seen: dict = {}
    original = LocalVendor.compare

    def compare_while_repeated(self, *args, **kw):
        if not seen:  # the same request arrives again while the first is with the vendor
            seen["reply"] = post("compare", same_person, key="k-concurrent")
            seen["items"] = aws.idempotency_records()
            seen["now_ms"] = time.time() * 1000
        return original(self, *args, **kw)

    monkeypatch.setattr(LocalVendor, "compare", compare_while_repeated)
    status, _, first = post("compare", same_person, key="k-concurrent")

    assert status == 200, first
    repeat_status, _, repeat = seen["reply"]
    error = assert_contract_error(repeat_status, repeat, 409, "IDEMPOTENCY_IN_PROGRESS")
    assert error["retryable"] is True
    assert repeat["request_id"] != first["request_id"]
    # The lock ends with the invocation (the Lambda context's remaining time, 28 s here).
    (item,) = seen["items"]
    assert item["status"] == "INPROGRESS"
    assert seen["now_ms"] < int(item["in_progress_expiration"]) <= seen["now_ms"] + 28_000
    # Once the first has finished, a repeat gets its answer.
    assert post("compare", same_person, key="k-concurrent")[2] == first


def test_an_answer_worth_retrying_is_not_kept(aws, monkeypatch, same_person):
    calls = []
    original = LocalVendor.compare

    def down_once(self, *args, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise VendorUnavailable("the engine is down", vendor="local")
        return original(self, *args, **kw)

    monkeypatch.setattr(LocalVendor, "compare", down_once)

    status, _, failed = post("compare", same_person, key="k-retry")
    error = assert_contract_error(status, failed, 503, "VENDOR_UNAVAILABLE")
    assert error["retryable"] is True
    assert aws.idempotency_records() == []

    status, headers, answered = post("compare", same_person, key="k-retry")
    assert status == 200, answered
    assert "Idempotent-Replay" not in headers
    assert answered["request_id"] != failed["request_id"]
    assert len(calls) == 2
    assert len(aws.records()) == 2

    _, headers, replayed = post("compare", same_person, key="k-retry")
    assert replayed == answered and headers["Idempotent-Replay"] == "true"
    assert len(calls) == 2


@pytest.mark.parametrize("op", list(PATHS))
def test_every_operation_replays_a_caller_error(aws, engine_calls, op):
    status, _, first = post(op, {}, key="k-caller-error")
    assert_contract_error(status, first, 400, "INVALID_REQUEST")

    status, headers, again = post(op, {}, key="k-caller-error")

    assert (status, again) == (400, first)
    assert headers["Idempotent-Replay"] == "true"
    assert headers["X-Request-Id"] == first["request_id"]
    assert [r["request_id"] for r in aws.records()] == [first["request_id"]]
    (item,) = aws.idempotency_records()
    assert item["id"].startswith(f"facegate.{op}#")
    assert engine_calls == []


def test_keys_are_scoped_by_api_key_and_operation(aws, engine_calls, same_person, b64):
    _, _, as_a = post("compare", same_person, key="shared-key", api_key_id="key-a")
    status, headers, as_b = post("compare", same_person, key="shared-key", api_key_id="key-b")

    assert status == 200, as_b
    assert "Idempotent-Replay" not in headers
    assert as_b["request_id"] != as_a["request_id"]
    assert engine_calls == ["compare", "compare"]
    assert post("compare", same_person, key="shared-key", api_key_id="key-a")[2] == as_a
    assert post("compare", same_person, key="shared-key", api_key_id="key-b")[2] == as_b

    # The same key on another operation, with another body, is another request (not a 422).
    status, _, detected = post("detect", {"image": {"base64": b64("obama.jpg")}}, key="shared-key")
    assert status == 200, detected
    assert detected["face_count"] == 1
    assert engine_calls == ["compare", "compare", "detect"]
    assert len(aws.idempotency_records()) == 3


@pytest.mark.parametrize(
    "key",
    ["", "a" * 129, "has space", "slash/es", "ünïcode", "semi;colon", "quote'"],
    ids=["empty", "129-chars", "space", "slash", "non-ascii", "semicolon", "quote"],
)
def test_a_malformed_key_is_a_400_and_runs_nothing(aws, engine_calls, same_person, key):
    status, _, got = post("compare", same_person, key=key)

    error = assert_contract_error(status, got, 400, "INVALID_REQUEST")
    assert "Idempotency-Key" in error["message"]
    assert engine_calls == []
    assert aws.idempotency_records() == []
    (record,) = aws.records()
    assert record["error_code"] == "INVALID_REQUEST"


def test_two_different_keys_in_one_request_are_a_400(aws, engine_calls, same_person):
    status, _, got = post("compare", same_person, key="one", **{"IDEMPOTENCY-KEY": "two"})

    error = assert_contract_error(status, got, 400, "INVALID_REQUEST")
    assert "one Idempotency-Key" in error["message"]
    assert engine_calls == []


@pytest.mark.parametrize("key", ["a" * 128, "Az09_.:-", "7d1c5a52-1f0e-4c8e-9a53-2b0d3c6f2e11"])
def test_the_longest_key_and_every_allowed_character_are_accepted(aws, key):
    status, _, got = post("compare", {}, key=key)  # a caller error: quick, and kept like any answer

    assert status == 400
    assert "Idempotency-Key" not in got["error"]["message"]
    assert len(aws.idempotency_records()) == 1


def test_without_the_header_nothing_is_kept_and_a_repeat_runs_again(aws, engine_calls, same_person):
    _, _, first = post("compare", same_person)
    status, headers, second = post("compare", same_person)

    assert status == 200
    assert "Idempotent-Replay" not in headers
    assert second["request_id"] != first["request_id"]
    assert engine_calls == ["compare", "compare"]
    assert aws.idempotency_records() == []


def test_routes_other_than_the_operations_ignore_the_header(aws):
    event = api_event(
        "GET",
        "/v1/vendors",
        headers={"x-api-key": "test-key", "Idempotency-Key": "not a valid key!"},
        stage="dev",
        api_key="test-key",
        api_key_id="key-a",
    )
    status, _, got = invoke(load_handler("functions/vendors"), event, "facegate-vendors")

    assert status == 200, got
    assert aws.idempotency_records() == []


def test_the_ttl_is_configurable(aws, monkeypatch):
    monkeypatch.setenv("FACEGATE_IDEMPOTENCY_TTL_S", "600")
    config.settings.cache_clear()

    post("compare", {}, key="k-ttl")

    (item,) = aws.idempotency_records()
    assert time.time() + 600 - 120 < int(item["expiration"]) <= time.time() + 600


def test_the_header_without_a_configured_table_is_refused_not_ignored(aws, monkeypatch, engine_calls, same_person):
    monkeypatch.delenv("FACEGATE_IDEMPOTENCY_TABLE")
    config.settings.cache_clear()

    status, _, got = post("compare", same_person, key="k-no-table")

    error = assert_contract_error(status, got, 501, "IDEMPOTENCY_NOT_CONFIGURED")
    assert error["retryable"] is False
    assert engine_calls == []
    # Without the header the operation works as ever.
    assert post("compare", same_person)[0] == 200


def test_a_failing_store_before_the_run_is_a_retryable_503_and_runs_nothing(
    aws, monkeypatch, engine_calls, same_person
):
    monkeypatch.setenv("FACEGATE_IDEMPOTENCY_TABLE", "no-such-table")
    config.settings.cache_clear()

    status, _, got = post("compare", same_person, key="k-store-down")

    error = assert_contract_error(status, got, 503, "IDEMPOTENCY_UNAVAILABLE")
    assert error["retryable"] is True
    assert engine_calls == []
    (record,) = aws.records()
    assert (record["request_id"], record["error_code"]) == (got["request_id"], "IDEMPOTENCY_UNAVAILABLE")


def test_a_failing_store_after_the_run_still_answers_and_keeps_the_key_locked(
    aws, monkeypatch, engine_calls, same_person
):
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    def update_fails(self, data_record):
        raise RuntimeError("DynamoDB is unavailable")

    monkeypatch.setattr(DynamoDBPersistenceLayer, "_update_record", update_fails)

    status, _, got = post("compare", same_person, key="k-store-fails-late")

    assert status == 200, got  # the engine (or a vendor, which may have billed) has answered
    assert engine_calls == ["compare"]
    assert [r["request_id"] for r in aws.records()] == [got["request_id"]]
    # The key stays locked until the in-progress lock ends: a repeat cannot run it twice.
    status, _, repeat = post("compare", same_person, key="k-store-fails-late")
    assert_contract_error(status, repeat, 409, "IDEMPOTENCY_IN_PROGRESS")
    assert engine_calls == ["compare"]
