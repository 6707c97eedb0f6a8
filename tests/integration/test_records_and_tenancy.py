"""The results log through the handlers: every operation's answer comes back whole
from GET /v1/results, to its own tenant only; the owner can erase it (and its
Idempotency-Key record); internal fields (tenant, ID-number HMAC, idempotency id)
never leave the table."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from pydantic import ValidationError

from facegate.ids import new_request_id
from facegate.models import Operation
from facegate.store import ResultRecord, ResultsStore, ResultView
from facegate_local.lambda_runtime import api_event, invoke, load_handler
from facegate_local.sandboxes.jumei import DEFAULT_ID_NUMBER, DEFAULT_NAME, JumeiSandbox
from facegate_local.sandboxes.shuxun import ShuxunSandbox

EVENTS = Path(__file__).resolve().parents[2] / "events"
INTERNAL = {"tenant", "id_number_hmac", "idempotency_id"}
# What an answer and its record share, field for field.
SHARED = (
    "request_id",
    "operation",
    "vendor",
    "decision",
    "similarity",
    "threshold",
    "security_level",
    "vendor_score",
    "vendor_request_id",
    "billed",
    "attempts",
)


def result(call_api, rid: str, method: str = "GET", **kw):
    return call_api(
        "results",
        method,
        f"/v1/results/{rid}",
        resource="/v1/results/{request_id}",
        path_parameters={"request_id": rid},
        **kw,
    )


def assert_round_trip(call_api, aws, answer: dict) -> tuple[dict, dict]:
    """GET gives the answer's own values back, without an internal field; returns
    (the view, the stored item)."""
    status, view = result(call_api, answer["request_id"])
    assert status == 200, view
    assert set(view) == set(ResultView.model_fields)  # no internal field, nothing unknown
    for name in SHARED:
        if name in answer:
            assert view[name] == answer[name], name
    assert view["status"] == "ok" and view["http_status"] == 200
    (item,) = [r for r in aws.records() if r["request_id"] == answer["request_id"]]
    assert item["tenant"] == "test-key-id"
    return view, item


@pytest.fixture
def shuxun(aws):
    sandbox = ShuxunSandbox().start()
    aws.put_secret("shuxun", {**ShuxunSandbox.default_credentials(), "endpoint": sandbox.url})
    yield sandbox
    sandbox.stop()


@pytest.fixture
def jumei(aws, monkeypatch):
    sandbox = JumeiSandbox().start()
    aws.put_secret("jumei", {**JumeiSandbox.default_credentials(), "endpoint": sandbox.url})
    arn = boto3.client("secretsmanager").create_secret(Name="facegate/test/pepper", SecretString="p" * 64)["ARN"]
    monkeypatch.setenv("FACEGATE_PEPPER_SECRET", arn)
    yield sandbox
    sandbox.stop()


def same_person(b64) -> dict:
    return {"image1": {"base64": b64("obama.jpg")}, "image2": {"base64": b64("obama2.jpg")}}


# --- every operation's record, answer -> record -> GET -------------------------------------


def test_compare_round_trip(aws, call_api, b64, shuxun):
    status, answer = call_api("compare", "POST", "/v1/compare", {**same_person(b64), "vendor": "shuxun"})
    assert status == 200, answer
    view, _ = assert_round_trip(call_api, aws, answer)
    assert view["vendor_request_id"] and view["billed"] is True and len(view["image_sha256"]) == 2
    assert view["consensus"] is None


def test_consensus_verdicts_are_kept(aws, call_api, b64, shuxun):
    # face2 has no credentials: its part is an error, and still logged.
    body = {**same_person(b64), "consensus": {"vendors": ["local", "shuxun", "face2"], "rule": "majority"}}
    status, answer = call_api("compare", "POST", "/v1/compare", body)
    assert status == 200, answer
    assert answer["vendor"] == "local+shuxun"
    view, item = assert_round_trip(call_api, aws, answer)
    assert view["consensus_rule"] == "majority"
    by_vendor = {v["vendor"]: v for v in view["consensus"]}
    assert list(by_vendor) == ["local", "shuxun", "face2"]
    for verdict in answer["verdicts"]:
        logged = by_vendor[verdict["vendor"]]
        # An answer leaves out what does not apply (an error verdict has no decision, an
        # answered one no error); the log keeps every field, null where it does not apply.
        for name in ("decision", "similarity", "threshold", "vendor_score", "vendor_request_id", "billed"):
            assert logged[name] == verdict.get(name), (verdict["vendor"], name)
        assert logged["error_code"] == (verdict["error"]["code"] if "error" in verdict else None)
    assert by_vendor["shuxun"]["vendor_request_id"] and by_vendor["shuxun"]["billed"] is True
    assert by_vendor["face2"]["error_code"] == "VENDOR_NOT_CONFIGURED" and by_vendor["face2"]["decision"] is None
    assert len(item["consensus"]) == 3  # in the table itself, not only in the answer


def test_detect_round_trip(aws, call_api, b64):
    status, answer = call_api("detect", "POST", "/v1/detect", {"image": {"base64": b64("obama.jpg")}})
    assert status == 200, answer
    view, _ = assert_round_trip(call_api, aws, answer)
    assert view["face_count"] == answer["face_count"] == 1


def test_features_round_trip(aws, call_api, b64):
    status, answer = call_api("features", "POST", "/v1/features", {"image": {"base64": b64("obama.jpg")}})
    assert status == 200, answer
    view, _ = assert_round_trip(call_api, aws, answer)
    assert view["dimension"] == answer["dimension"] == len(answer["embedding"]) == 128


def test_verify_identity_round_trip_keeps_the_hmac_internal(aws, call_api, b64, jumei):
    body = {"name": DEFAULT_NAME, "id_number": DEFAULT_ID_NUMBER, "image": {"base64": b64("obama.jpg")}}
    status, answer = call_api("verify_identity", "POST", "/v1/verify-identity", body)
    assert status == 200, answer
    view, item = assert_round_trip(call_api, aws, answer)
    assert (view["name_masked"], view["id_number_masked"]) == (answer["name_masked"], answer["id_number_masked"])
    # The HMAC is stored for correlation, and returned to no one.
    expected = hmac.new(b"p" * 64, DEFAULT_ID_NUMBER.encode(), hashlib.sha256).hexdigest()
    assert item["id_number_hmac"] == expected
    for shown in (answer, view):
        assert "id_number_hmac" not in shown and expected not in json.dumps(shown)


def test_a_batch_item_is_logged_through_the_service_and_owned_by_its_batch(aws, call_api, b64):
    # What the batch worker does for one line (facegate.batch_jobs): the service with
    # the batch's id and line, and no API caller.
    from facegate.models import CompareRequest
    from facegate.service import Caller, default_service

    caller = Caller(request_id=new_request_id(), batch_id="0123456789abcdef01234567", batch_line=7)
    answer = default_service().compare(CompareRequest.model_validate(same_person(b64)), caller).model_dump(mode="json")
    (item,) = aws.records()
    assert (item["batch_id"], int(item["batch_line"]), item["tenant"]) == (
        caller.batch_id,
        7,
        f"batch:{caller.batch_id}",
    )
    record = ResultRecord.model_validate(item)
    assert record.decision == answer["decision"] and record.similarity == answer["similarity"]
    # Read through the batch's report, not GET /v1/results: no API key owns it.
    status, got = result(call_api, caller.request_id)
    assert status == 404 and got["error"]["code"] == "NOT_FOUND"


# --- the record refuses what it does not know ------------------------------------------------


def test_a_record_with_an_unknown_field_fails_loudly(aws):
    now = datetime.now(UTC)
    fields = dict(
        request_id=new_request_id(),
        operation=Operation.COMPARE,
        status="ok",
        http_status=200,
        latency_ms=1,
        created_at=now,
        expires_at=0,
    )
    with pytest.raises(ValidationError, match="verdicts"):
        ResultRecord(**fields, verdicts=[{"vendor": "local"}])
    # And an item in the table that the model does not know is an error on read, not a silent drop.
    ResultsStore("facegate-test-results").put(ResultRecord(**fields, tenant="test-key-id"))
    aws.table.update_item(
        Key={"request_id": fields["request_id"]},
        UpdateExpression="SET surprise = :x",
        ExpressionAttributeValues={":x": 1},
    )
    with pytest.raises(ValidationError, match="surprise"):
        ResultsStore("facegate-test-results").get(fields["request_id"])


# --- tenancy ----------------------------------------------------------------------------------


def test_another_tenants_record_is_exactly_an_unknown_id(aws, call_api, b64):
    status, answer = call_api("detect", "POST", "/v1/detect", {"image": {"base64": b64("obama.jpg")}})
    assert status == 200
    rid = answer["request_id"]
    assert result(call_api, rid)[0] == 200

    theirs = result(call_api, rid, api_key_id="other-key-id")
    unknown_id = new_request_id()
    unknown = result(call_api, unknown_id, api_key_id="other-key-id")
    assert theirs[0] == unknown[0] == 404
    assert set(theirs[1]) == set(unknown[1]) == {"request_id", "error"}
    assert theirs[1]["error"] == {
        **unknown[1]["error"],
        "message": unknown[1]["error"]["message"].replace(unknown_id, rid),
    }


def test_an_iam_principal_is_its_own_tenant(aws, b64):
    arn = "arn:aws:sts::123456789012:assumed-role/kyc-backend/session-1"

    def signed(op: str, method: str, path: str, body=None, *, user_arn=arn, **kw):
        event = api_event(method, path, None if body is None else json.dumps(body), stage="dev", **kw)
        identity = event["requestContext"]["identity"]
        identity.update(userArn=user_arn, caller="AROAEXAMPLE:session-1", accessKey="ASIAEXAMPLE")
        assert identity["apiKeyId"] is None  # SigV4, no API key
        status, _, parsed = invoke(load_handler(f"functions/{op}"), event, f"facegate-{op}")
        return status, parsed

    status, answer = signed("detect", "POST", "/v1/detect", {"image": {"base64": b64("obama.jpg")}})
    assert status == 200, answer
    rid = answer["request_id"]
    (item,) = aws.records()
    assert item["tenant"] == arn
    where = {"resource": "/v1/results/{request_id}", "path_parameters": {"request_id": rid}}
    assert signed("results", "GET", f"/v1/results/{rid}", **where)[0] == 200
    other = "arn:aws:sts::123456789012:assumed-role/someone-else/session-2"
    assert signed("results", "GET", f"/v1/results/{rid}", user_arn=other, **where)[0] == 404


def test_a_record_without_a_tenant_is_readable_by_no_one(aws, call_api):
    store = ResultsStore("facegate-test-results")
    now = datetime.now(UTC)
    rid = new_request_id()
    store.put(
        ResultRecord(
            request_id=rid,
            operation=Operation.DETECT,
            status="ok",
            http_status=200,
            latency_ms=1,
            created_at=now,
            expires_at=store.expiry(now),
        )
    )
    assert result(call_api, rid)[0] == 404
    assert result(call_api, rid, "DELETE")[0] == 404
    assert store.get(rid).request_id == rid  # still there


# --- erasure ----------------------------------------------------------------------------------


def test_the_owner_erases_a_record_and_no_one_else_can(aws, call_api, b64):
    status, answer = call_api("detect", "POST", "/v1/detect", {"image": {"base64": b64("obama.jpg")}})
    assert status == 200
    rid = answer["request_id"]

    status, got = result(call_api, rid, "DELETE", api_key_id="other-key-id")
    assert status == 404 and got["error"]["code"] == "NOT_FOUND"
    assert result(call_api, rid)[0] == 200  # survived

    status, got = result(call_api, rid, "DELETE")
    assert (status, got) == (204, "")
    assert aws.records() == []
    assert result(call_api, rid)[0] == 404
    assert result(call_api, rid, "DELETE")[0] == 404  # once
    assert result(call_api, "not-a-request-id", "DELETE")[0] == 404


def test_erasure_takes_the_idempotency_record_with_it(aws, call_api, b64):
    body = {"image": {"base64": b64("obama.jpg")}}
    headers = {"Content-Type": "application/json", "x-api-key": "test-key", "Idempotency-Key": "erase-me-1"}
    status, first = call_api("detect", "POST", "/v1/detect", body, headers=headers)
    assert status == 200
    (idem,) = aws.idempotency_records()
    (item,) = aws.records()
    # The record knows its key's record by id (the hash Powertools itself computed), never the key.
    assert item["idempotency_id"] == idem["id"]
    assert "erase-me-1" not in json.dumps(item, default=str)
    assert call_api("detect", "POST", "/v1/detect", body, headers=headers)[1]["request_id"] == first["request_id"]

    assert result(call_api, first["request_id"], "DELETE")[0] == 204
    assert aws.idempotency_records() == [] and aws.records() == []
    # The key no longer replays the erased answer: the request runs again.
    status, again = call_api("detect", "POST", "/v1/detect", body, headers=headers)
    assert status == 200 and again["request_id"] != first["request_id"]


def test_the_sample_events_read_and_erase_their_record(aws):
    get_event = json.loads((EVENTS / "results.json").read_text())
    delete_event = json.loads((EVENTS / "results_delete.json").read_text())
    rid = get_event["pathParameters"]["request_id"]
    assert delete_event["pathParameters"]["request_id"] == rid and delete_event["httpMethod"] == "DELETE"
    store = ResultsStore("facegate-test-results")
    now = datetime.now(UTC)
    owner = get_event["requestContext"]["identity"]["apiKeyId"]
    store.put(
        ResultRecord(
            request_id=rid,
            operation=Operation.DETECT,
            status="ok",
            http_status=200,
            latency_ms=3,
            face_count=1,
            tenant=owner,
            created_at=now,
            expires_at=store.expiry(now),
        )
    )
    handler = load_handler("functions/results")
    status, _, got = invoke(handler, get_event, "facegate-results")
    assert status == 200 and got["face_count"] == 1
    status, headers, got = invoke(handler, delete_event, "facegate-results")
    assert (status, got) == (204, "") and headers["X-Request-Id"]
    assert invoke(handler, get_event, "facegate-results")[0] == 404
