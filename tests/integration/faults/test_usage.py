"""GET /v1/usage against what the sandboxes saw: per API key, per vendor and operation,
counted per attempt (a failover counts for every vendor it tried), billed as the vendors
billed, and read back without ever scanning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from .faultkit import IDENTITY, clear_service_caches, closed_port

OTHER = "other-key-id"  # a second API key: its own tenant
PRICES = '{"shuxun": 0.1, "kuaidi100": 0.25, "jumei": 0.5}'  # face2 left out: no estimate


@pytest.fixture
def counted(gate, usage_table, monkeypatch):
    monkeypatch.setenv("FACEGATE_VENDOR_PRICES", PRICES)
    monkeypatch.setenv("FACEGATE_PRICE_CURRENCY", "CNY")
    gate.aws.reset_caches()
    clear_service_caches()
    return gate


def usage(gate, key_id: str = "test-key-id", **query: str) -> dict:
    status, body = gate.call_api("usage", "GET", "/v1/usage", query=query or None, api_key_id=key_id)
    assert status == 200, body
    return body


def rows(body: dict) -> dict[tuple[str, str], tuple]:
    return {
        (r["vendor"], r["operation"]): (r["calls"], r["billed"], r["billing_unknown"], r["errors"], r["estimated_cost"])
        for r in body["vendors"]
    }


def test_usage_counts_each_keys_attempts_as_the_vendors_billed_them(counted):
    gate = counted
    # Key A: two billed shuxun compares, one kuaidi100 compare.
    for vendor in ("shuxun", "shuxun", "kuaidi100"):
        status, body = gate.compare(vendor)
        assert status == 200, body
    # Key A: shuxun's quota is gone (an error, not billed) ...
    gate.boxes["shuxun"].fail_next("quota")
    assert gate.compare("shuxun")[0] == 503
    # ... and a read timeout: the vendor may have billed (billing unknown), no failover.
    gate.boxes["shuxun"].fail_next("timeout")
    status, body = gate.compare("shuxun", ["kuaidi100"])
    assert (status, body["error"]["code"]) == (504, "VENDOR_TIMEOUT"), body
    # Key A: a bad request reaches no vendor and counts for none.
    assert gate.call("compare", {"image1": gate.image()})[0] == 400
    # Key B: shuxun refuses connections (retried once, then failed over to kuaidi100), face2, jumei.
    good = gate.boxes.secret("shuxun")
    gate.replace_secret("shuxun", {**good, "endpoint": f"http://127.0.0.1:{closed_port()}"})
    body = {"image1": gate.image("obama.jpg"), "image2": gate.image("obama2.jpg")}
    failover = {**body, "vendor": "shuxun", "fallback": ["kuaidi100"]}
    status, got = gate.call_api("compare", "POST", "/v1/compare", failover, api_key_id=OTHER)
    assert (status, got["vendor"]) == (200, "kuaidi100"), got
    gate.replace_secret("shuxun", good)
    assert gate.call_api("compare", "POST", "/v1/compare", {**body, "vendor": "face2"}, api_key_id=OTHER)[0] == 200
    status, got = gate.call_api(
        "verify_identity",
        "POST",
        "/v1/verify-identity",
        {**IDENTITY, "image": gate.image(), "vendor": "jumei"},
        api_key_id=OTHER,
    )
    assert status == 200, got

    today = datetime.now(UTC).date()
    days = {"from": today.isoformat(), "to": today.isoformat()}
    a, b = usage(gate, **days), usage(gate, OTHER, **days)
    assert (a["from"], a["to"], a["currency"]) == (today.isoformat(), today.isoformat(), "CNY")
    # (calls, billed, billing_unknown, errors, estimated_cost)
    assert rows(a) == {
        ("shuxun", "compare"): (4, 2, 1, 2, pytest.approx(0.2)),  # the unknown one is not priced
        ("kuaidi100", "compare"): (1, 1, 0, 0, 0.25),
    }
    assert rows(b) == {
        ("shuxun", "compare"): (2, 0, 0, 2, 0.0),  # two refused connections: tried, never billed
        ("kuaidi100", "compare"): (1, 1, 0, 0, 0.25),
        ("face2", "compare"): (1, 1, 0, 0, None),  # no price for face2 on this stage
        ("jumei", "verify_identity"): (1, 1, 0, 0, 0.5),
    }
    # What the vendors themselves billed, over both keys.
    billed = {v: sum(r["billed"] for r in a["vendors"] + b["vendors"] if r["vendor"] == v) for v in gate.boxes}
    assert billed == gate.boxes.billed()
    # A key that made no calls, and days without calls, see nothing.
    assert usage(gate, "third-key-id")["vendors"] == []
    before = {"from": (today - timedelta(days=30)).isoformat(), "to": (today - timedelta(days=1)).isoformat()}
    assert usage(gate, **before)["vendors"] == []
    # Defaults: to is today, from the first of its month.
    default = usage(gate)
    assert (default["from"], default["to"]) == (today.replace(day=1).isoformat(), today.isoformat())
    assert rows(default) == rows(a)


def test_reading_usage_never_scans(counted, monkeypatch):
    gate = counted
    assert gate.compare("shuxun")[0] == 200
    import botocore.client

    calls: list[str] = []
    real = botocore.client.BaseClient._make_api_call

    def watched(self, operation_name, params):
        calls.append(operation_name)
        if operation_name == "Scan":
            raise AssertionError("GET /v1/usage scanned a table")
        return real(self, operation_name, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", watched)
    today = datetime.now(UTC).date()
    body = usage(gate, **{"from": (today - timedelta(days=91)).isoformat(), "to": today.isoformat()})
    assert rows(body) == {("shuxun", "compare"): (1, 1, 0, 0, 0.1)}
    assert calls == ["Query"]  # 92 days: still one Query (one page here)


def test_a_failed_counter_write_never_fails_the_call(counted, usage_table, monkeypatch):
    from facegate.observability import metrics

    gate = counted
    names: list[str] = []
    real = metrics.add_metric
    monkeypatch.setattr(metrics, "add_metric", lambda name, **kw: (names.append(name), real(name=name, **kw)))
    usage_table.delete()
    status, body = gate.compare("shuxun")
    assert status == 200, body
    assert gate.record(body["request_id"])["billed"] is True  # the results log still took it
    assert "UsageCountWriteFailed" in names and "ResultsLogWriteFailed" not in names
