"""Strategies through the handlers, against vendor sandboxes of different prices and
latencies: ``cheapest`` asks the cheap one first, ``fastest`` the fast one once latencies
are observed (in memory, or as deployed in the shared state table), each attempt says why,
and a request naming no known strategy is refused before any vendor is asked."""

from __future__ import annotations

import boto3
import pytest

from .faultkit import IDENTITY

PRICES = '{"shuxun": 0.3, "kuaidi100": 0.1, "face2": 0.2}'  # zoloz left out: no price
SLOW_S = 1.0  # the slow sandbox's delay; the read timeout is raised above it


@pytest.fixture(params=["memory", "dynamodb"])
def priced_gate(request, gate, monkeypatch):
    # Every answer's latency written (no sample interval): the reasons below count them.
    env = {"vendor_prices": PRICES, "price_currency": "CNY", "read_timeout": "3", "latency_sample_interval_s": "0"}
    if request.param == "dynamodb":
        from facegate.latency import DynamoLatencyBook

        boto3.client("dynamodb").create_table(
            TableName="facegate-test-state",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        env["state_table"] = "facegate-test-state"
        monkeypatch.setattr(DynamoLatencyBook, "CACHE_S", 0.0)  # read the table every time
    gate.configure(**env)
    return gate


def asked(gate) -> list[str]:
    """The vendors the sandboxes saw, in the order they saw them."""
    return [d.vendor for d in gate.boxes.ledger.settle()]


def reasons(body) -> list[tuple[str, str, str]]:
    return [(a["vendor"], a["outcome"], a["reason"]) for a in body["attempts"]]


def test_cheapest_asks_the_cheapest_vendor_first_and_says_why(priced_gate):
    gate = priced_gate
    status, body = gate.compare("zoloz", ["shuxun", "face2", "kuaidi100"], strategy="cheapest")
    assert status == 200, body
    assert body["vendor"] == "kuaidi100"
    assert asked(gate) == ["kuaidi100"]
    assert reasons(body) == [("kuaidi100", "ok", "cheapest: 0.1 CNY per call, 1st of 4")]
    # The results log keeps the same reasons.
    assert [a["reason"] for a in gate.record(body["request_id"])["attempts"]] == [
        "cheapest: 0.1 CNY per call, 1st of 4"
    ]

    # No answer from the cheapest: the next cheapest, then on; the unpriced vendor is last.
    gate.boxes.ledger.clear()
    gate.boxes["kuaidi100"].fail_next("quota")
    gate.boxes["face2"].fail_next("quota")
    gate.boxes["shuxun"].fail_next("quota")
    status, body = gate.compare("zoloz", ["shuxun", "face2", "kuaidi100"], strategy="cheapest")
    assert status == 200, body
    assert asked(gate) == ["kuaidi100", "face2", "shuxun", "zoloz"]
    assert reasons(body) == [
        ("kuaidi100", "VENDOR_QUOTA_EXHAUSTED", "cheapest: 0.1 CNY per call, 1st of 4"),
        ("face2", "VENDOR_QUOTA_EXHAUSTED", "cheapest: 0.2 CNY per call, 2nd of 4"),
        ("shuxun", "VENDOR_QUOTA_EXHAUSTED", "cheapest: 0.3 CNY per call, 3rd of 4"),
        ("zoloz", "ok", "cheapest: no price set (after priced vendors, stated order), 4th of 4"),
    ]


def test_the_default_is_the_stated_order(priced_gate):
    gate = priced_gate
    status, body = gate.compare("shuxun", ["face2", "kuaidi100"])
    assert (status, body["vendor"]) == (200, "shuxun"), body
    assert reasons(body) == [("shuxun", "ok", "ordered: as stated, 1st of 3")]
    assert asked(gate) == ["shuxun"]


def test_fastest_asks_the_fast_vendor_once_latencies_are_observed(priced_gate):
    gate = priced_gate
    gate.boxes["shuxun"].latency_s = SLOW_S
    candidates = ("shuxun", ["kuaidi100"])

    # Nothing observed yet: the stated order, and it says so.
    status, body = gate.compare(*candidates, strategy="fastest")
    assert (status, body["vendor"]) == (200, "shuxun"), body
    assert reasons(body) == [
        ("shuxun", "ok", "fastest: no latency observed yet (after observed vendors, stated order), 1st of 2")
    ]
    # shuxun is now observed (slow), kuaidi100 not: the observed one still comes first.
    status, body = gate.compare(*candidates, strategy="fastest")
    assert body["vendor"] == "shuxun"
    assert body["attempts"][0]["reason"].startswith("fastest: median ")
    # Any answered call is observed, whatever its strategy: an ordered call to kuaidi100.
    assert gate.compare("kuaidi100")[0] == 200

    gate.boxes.ledger.clear()
    status, body = gate.compare(*candidates, strategy="fastest")
    assert (status, body["vendor"]) == (200, "kuaidi100"), body
    assert asked(gate) == ["kuaidi100"]
    (reason,) = [a["reason"] for a in body["attempts"]]
    assert reason.startswith("fastest: median ") and reason.endswith("over its last sampled answer, 1st of 2"), reason
    fast_ms = int(reason.split()[2])
    assert fast_ms < SLOW_S * 1000

    # The fast one in trouble: failover is unchanged, to the slower one.
    gate.boxes.ledger.clear()
    gate.boxes["kuaidi100"].fail_next("quota")
    status, body = gate.compare(*candidates, strategy="fastest")
    assert (status, body["vendor"]) == (200, "shuxun"), body
    assert asked(gate) == ["kuaidi100", "shuxun"]
    slow = body["attempts"][1]["reason"]
    assert slow.endswith("over its last 2 sampled answers, 2nd of 2") and int(slow.split()[2]) >= SLOW_S * 1000, slow


@pytest.mark.parametrize(
    ("op", "body"),
    [
        ("compare", {"vendor": "shuxun", "fallback": ["kuaidi100"]}),
        ("detect", {"vendor": "face2"}),
        ("features", {"vendor": "face2"}),
        ("verify_identity", {"vendor": "jumei", **IDENTITY}),
    ],
)
def test_every_operation_takes_a_strategy_and_refuses_an_unknown_one(priced_gate, op, body):
    gate = priced_gate
    images = (
        {"image1": gate.image(), "image2": gate.image("obama2.jpg")} if op == "compare" else {"image": gate.image()}
    )
    status, got = gate.call(op, {**images, **body, "strategy": "cheapest"})
    assert status == 200, got
    assert got["attempts"][0]["reason"].startswith("cheapest: ")
    gate.boxes.ledger.clear()
    status, got = gate.call(op, {**images, **body, "strategy": "random"})
    assert (status, got["error"]["code"]) == (400, "INVALID_REQUEST"), got
    assert "strategy" in got["error"]["message"]
    assert asked(gate) == []


def test_a_consensus_refuses_an_order_and_says_its_vendors_were_asked_at_once(priced_gate):
    gate = priced_gate
    body = {
        "image1": gate.image(),
        "image2": gate.image("obama2.jpg"),
        "consensus": {"vendors": ["shuxun", "kuaidi100"]},
    }
    status, got = gate.call("compare", {**body, "strategy": "cheapest"})
    assert (status, got["error"]["code"]) == (400, "INVALID_REQUEST"), got
    assert "consensus asks all its vendors at once" in got["error"]["message"]
    assert asked(gate) == []
    status, got = gate.call("compare", body)
    assert status == 200, got
    assert {a["reason"] for a in got["attempts"]} == {"consensus: asked at once with the others"}
