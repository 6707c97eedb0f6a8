"""Vendor cooldowns through the handlers: repeated failures open a vendor's circuit,
requests then go to the fallback without touching the cooled vendor, and after the
cooldown one probe decides: a failure opens it again, a success closes it.

The cooldown book's clock is replaced by one the test moves, so the test does not
depend on how fast the machine is (a real 30 s cooldown, crossed in no time).
"""

from __future__ import annotations

import boto3
import pytest


class Clock:
    def __init__(self) -> None:
        self.t = 1_900_000_000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(params=["memory", "dynamodb"])
def cooling_gate(request, gate, monkeypatch):
    """The gate with a 3-failure, 30 s cooldown, kept in memory or (as deployed) in a
    DynamoDB table shared by every container; its clock is the test's."""
    env = {"cooldown_failures": "3", "cooldown_window_s": "60", "cooldown_s": "30"}
    if request.param == "dynamodb":
        from facegate.health import DynamoHealthBook

        boto3.client("dynamodb").create_table(
            TableName="facegate-test-state",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        env["state_table"] = "facegate-test-state"
        monkeypatch.setattr(DynamoHealthBook, "CACHE_S", 0.0)  # read the table every time
    gate.configure(**env)
    gate.vendors()  # builds the service
    from facegate.service import default_service

    clock = Clock()
    monkeypatch.setattr(default_service().health, "clock", clock)
    return gate, clock


def state(gate, vendor: str) -> str:
    return gate.vendors()[vendor]["health"]["state"]


def test_a_cooldown_opens_skips_the_vendor_and_closes_after_a_good_probe(cooling_gate):
    gate, clock = cooling_gate
    shuxun, kuaidi100 = gate.boxes["shuxun"], gate.boxes["kuaidi100"]
    shuxun.fail_always("http_500")

    for n in range(3):
        assert state(gate, "shuxun") == "closed"
        status, body = gate.compare("shuxun")
        assert (status, body["error"]["code"]) == (503, "VENDOR_UNAVAILABLE")
        assert gate.vendors()["shuxun"]["health"]["recent_failures"] == n + 1
    assert state(gate, "shuxun") == "open"
    assert {v: state(gate, v) for v in ("kuaidi100", "face2", "zoloz", "jumei")} == dict.fromkeys(
        ("kuaidi100", "face2", "zoloz", "jumei"), "closed"
    )
    assert shuxun.requests == 3

    # Open: the fallback answers; the cooled vendor is not even asked.
    status, body = gate.compare("shuxun", ["kuaidi100"])
    assert status == 200, body
    assert body["vendor"] == "kuaidi100"
    assert gate.attempts(body) == [("shuxun", "VENDOR_COOLING_DOWN", False), ("kuaidi100", "ok", True)]
    assert gate.attempts(gate.record(body["request_id"])) == gate.attempts(body)
    # Without a fallback the caller is told the vendor is unavailable, and may retry later.
    status, body = gate.compare("shuxun")
    assert status == 503, body
    assert (body["error"]["code"], body["error"]["vendor"], body["error"]["retryable"]) == (
        "VENDOR_UNAVAILABLE",
        "shuxun",
        True,
    )
    assert gate.attempts(gate.record(body["request_id"])) == [("shuxun", "VENDOR_COOLING_DOWN", False)]
    assert shuxun.requests == 3
    assert (kuaidi100.requests, kuaidi100.billed) == (1, 1)

    # After the cooldown one probe is let through; it fails, and the circuit opens again.
    clock.advance(31)
    assert state(gate, "shuxun") == "half_open"
    status, body = gate.compare("shuxun", ["kuaidi100"])
    assert status == 200, body
    assert gate.attempts(body) == [("shuxun", "VENDOR_UNAVAILABLE", None), ("kuaidi100", "ok", True)]
    assert shuxun.requests == 4
    assert state(gate, "shuxun") == "open"
    status, body = gate.compare("shuxun", ["kuaidi100"])
    assert gate.attempts(body)[0] == ("shuxun", "VENDOR_COOLING_DOWN", False)
    assert shuxun.requests == 4

    # The vendor recovers; after the next cooldown the probe succeeds and closes it.
    shuxun.fail_always(None)
    clock.advance(31)
    assert state(gate, "shuxun") == "half_open"
    status, body = gate.compare("shuxun", ["kuaidi100"])
    assert status == 200, body
    assert (body["vendor"], gate.attempts(body)) == ("shuxun", [("shuxun", "ok", True)])
    assert gate.vendors()["shuxun"]["health"] == {"state": "closed", "recent_failures": 0, "open_until": None}
    status, body = gate.compare("shuxun", ["kuaidi100"])
    assert gate.attempts(body) == [("shuxun", "ok", True)]
    assert (shuxun.requests, shuxun.billed) == (6, 2)


def test_answers_and_caller_errors_do_not_open_a_cooldown(cooling_gate):
    gate, _ = cooling_gate
    # A rejected identity is the vendor answering about the request: it is healthy.
    for _ in range(4):
        status, body = gate.verify_identity(name="李四")
        assert (status, body["error"]["code"]) == (422, "IDENTITY_MISMATCH")
    assert state(gate, "jumei") == "closed"
    # Interleaved successes keep resetting the count: failures must be consecutive-ish.
    for _ in range(3):
        gate.boxes["zoloz"].fail_next("rate_limit")
        status, _ = gate.compare("zoloz")
        assert status == 429
        status, _ = gate.compare("zoloz")
        assert status == 200
    assert state(gate, "zoloz") == "closed"
