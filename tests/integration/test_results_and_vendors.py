"""GET /v1/results/{request_id} and GET /v1/vendors through the handlers."""

from __future__ import annotations

from datetime import UTC, datetime

from facegate.ids import new_request_id
from facegate.models import Operation
from facegate.store import ResultRecord, ResultsStore


def test_store_round_trip_and_ttl(aws):
    store = ResultsStore("facegate-test-results", ttl_days=30)
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    rid = new_request_id()
    record = ResultRecord(
        request_id=rid,
        operation=Operation.COMPARE,
        status="ok",
        http_status=200,
        vendor="local",
        decision="match",
        similarity=0.7123,
        vendor_score=0.3452,
        latency_ms=812,
        image_sha256=["a" * 64, "b" * 64],
        created_at=created,
        expires_at=store.expiry(created),
    )
    store.put(record)
    assert store.get(rid) == record
    assert record.expires_at - int(created.timestamp()) == 30 * 86400


def test_a_request_id_is_written_once(aws):
    import pytest
    from botocore.exceptions import ClientError

    store = ResultsStore("facegate-test-results")
    now = datetime.now(UTC)
    rec = ResultRecord(
        request_id=new_request_id(),
        operation=Operation.DETECT,
        status="ok",
        http_status=200,
        latency_ms=1,
        created_at=now,
        expires_at=store.expiry(now),
    )
    store.put(rec)
    with pytest.raises(ClientError):
        store.put(rec)


def test_results_route_returns_a_logged_failure(aws, call_api):
    status, failed = call_api(
        "compare", "POST", "/v1/compare", {"image1": {"base64": "@@@"}, "image2": {"base64": "@@@"}}
    )
    assert status == 422
    rid = failed["request_id"]

    status, got = call_api(
        "results",
        "GET",
        f"/v1/results/{rid}",
        resource="/v1/results/{request_id}",
        path_parameters={"request_id": rid},
    )
    assert status == 200
    assert got["request_id"] == rid
    assert (got["operation"], got["status"], got["error_code"], got["http_status"]) == (
        "compare",
        "error",
        "INVALID_IMAGE",
        422,
    )
    # The owner is stored, not shown: the view carries no internal field.
    assert "tenant" not in got and "api_key_id" not in got
    (item,) = aws.records()
    assert item["tenant"] == "test-key-id"


def test_unknown_result_is_404_in_contract_shape(aws, call_api):
    for rid in (new_request_id(), "not-a-request-id"):
        status, got = call_api(
            "results",
            "GET",
            f"/v1/results/{rid}",
            resource="/v1/results/{request_id}",
            path_parameters={"request_id": rid},
        )
        assert status == 404
        assert got["error"]["code"] == "NOT_FOUND"
        assert set(got) == {"request_id", "error"}


def test_vendors_lists_every_vendor_and_which_are_configured(aws, call_api):
    aws.put_secret("shuxun", {"app_key": "k", "app_secret": "s"})
    aws.put_secret("zoloz", {"configured": False})
    status, got = call_api("vendors", "GET", "/v1/vendors")
    assert status == 200
    by_id = {v["id"]: v for v in got["vendors"]}
    assert set(by_id) == {"local", "shuxun", "kuaidi100", "face2", "zoloz", "jumei"}
    assert by_id["local"]["configured"] and by_id["local"]["default"]
    assert by_id["shuxun"]["configured"]
    assert not by_id["zoloz"]["configured"]  # the stack's placeholder
    assert not by_id["kuaidi100"]["configured"]  # no secret at all
    assert by_id["jumei"]["operations"] == ["verify_identity"]
    assert set(by_id["face2"]["operations"]) == {"compare", "detect", "features"}
