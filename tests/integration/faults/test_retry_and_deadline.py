"""Retries, failover before anything was sent, and the request's deadline.

A retry of the same vendor is allowed only where the vendor cannot have billed: a
refused connection or a connect timeout (nothing was sent). A reset after sending,
a 5xx and a read timeout are never retried; the read timeout is not failed over
either (another vendor could bill the same check twice). A request whose Lambda is
about to run out answers VENDOR_TIMEOUT in the contract shape instead of hanging.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from facegate_local.lambda_runtime import api_event, lambda_context, load_handler
from facegate_local.sandboxes.shuxun import ShuxunSandbox

from .faultkit import closed_port


@pytest.mark.parametrize("max_retries", [0, 1, 2])
def test_a_refused_connection_is_retried_and_recorded_unbilled(gate, max_retries):
    gate.configure(max_retries=str(max_retries))
    gate.replace_secret("shuxun", {**gate.boxes.secret("shuxun"), "endpoint": f"http://127.0.0.1:{closed_port()}"})

    status, body = gate.compare("shuxun")

    assert status == 503, body
    assert (body["error"]["code"], body["error"]["vendor"], body["error"]["retryable"]) == (
        "VENDOR_UNAVAILABLE",
        "shuxun",
        True,
    )
    record = gate.record(body["request_id"])
    assert gate.attempts(record) == [("shuxun", "VENDOR_UNAVAILABLE", False)] * (max_retries + 1)
    assert record["billed"] is False
    assert sum(gate.boxes.requests().values()) == 0


def test_a_refused_connection_is_retried_then_failed_over(gate):
    gate.replace_secret("shuxun", {**gate.boxes.secret("shuxun"), "endpoint": f"http://127.0.0.1:{closed_port()}"})

    status, body = gate.compare("shuxun", ["kuaidi100"])

    assert status == 200, body
    assert body["vendor"] == "kuaidi100"
    assert gate.attempts(body) == [
        ("shuxun", "VENDOR_UNAVAILABLE", False),
        ("shuxun", "VENDOR_UNAVAILABLE", False),
        ("kuaidi100", "ok", True),
    ]
    assert gate.attempts(gate.record(body["request_id"])) == gate.attempts(body)
    assert gate.boxes.billed() == {"shuxun": 0, "kuaidi100": 1, "face2": 0, "zoloz": 0, "jumei": 0}


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: a connection attempt hangs until
    its connect timeout, so nothing is ever sent."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    try:
        yield port
    finally:
        for s in fillers:
            s.close()
        server.close()


def test_a_connect_timeout_is_retried_and_failed_over_unbilled(gate, unanswered_port):
    gate.configure(connect_timeout="0.2")
    gate.replace_secret("zoloz", {**gate.boxes.secret("zoloz"), "endpoint": f"http://127.0.0.1:{unanswered_port}"})

    status, body = gate.compare("zoloz", ["face2"])

    assert status == 200, body
    assert body["vendor"] == "face2"
    assert gate.attempts(body) == [
        ("zoloz", "VENDOR_TIMEOUT", False),
        ("zoloz", "VENDOR_TIMEOUT", False),
        ("face2", "ok", True),
    ]
    assert gate.boxes["zoloz"].requests == 0


@pytest.mark.parametrize(
    ("fault", "code", "billed", "fails_over", "status"),
    [
        # Dropped after sending: the vendor may have done (and billed) the work.
        ("reset", "VENDOR_UNAVAILABLE", None, False, 503),
        # A 5xx page is the vendor saying it is down: no answer, so the next vendor is asked.
        ("http_500", "VENDOR_UNAVAILABLE", None, True, 200),
        ("timeout", "VENDOR_TIMEOUT", None, False, 504),
    ],
)
def test_after_sending_nothing_is_retried(gate, fault, code, billed, fails_over, status):
    # Retries allowed, and the sandbox would answer a second try (the fault is one-off):
    # not retrying is facegate's choice, because the first try may have been billed.
    gate.configure(max_retries="2")
    gate.boxes["shuxun"].fail_next(fault)

    got_status, body = gate.compare("shuxun", ["kuaidi100"])

    record = gate.record(body["request_id"])
    assert gate.boxes["shuxun"].requests == 1
    assert got_status == status, body
    if fails_over:
        assert gate.attempts(record) == [("shuxun", code, billed), ("kuaidi100", "ok", True)]
    else:
        assert (body["error"]["code"], body["error"]["vendor"]) == (code, "shuxun")
        assert gate.attempts(record) == [("shuxun", code, billed)]
        assert gate.boxes["kuaidi100"].requests == 0


def test_an_unconfigured_vendor_is_skipped_for_the_fallback(gate):
    gate.replace_secret("zoloz", {"configured": False})

    status, body = gate.compare("zoloz", ["shuxun"])

    assert status == 200, body
    assert body["vendor"] == "shuxun"
    assert [(v, o) for v, o, _ in gate.attempts(body)] == [("zoloz", "VENDOR_NOT_CONFIGURED"), ("shuxun", "ok")]
    assert gate.boxes["zoloz"].requests == 0


def test_an_unconfigured_vendor_is_recorded_as_not_billed(gate):
    # Nothing was sent, so facegate knows nothing was billed: the attempt must say
    # false, not "unknown" (null), or billing reconciliation cannot trust it.
    gate.replace_secret("zoloz", {"configured": False})
    status, body = gate.compare("zoloz", ["shuxun"])
    assert status == 200, body
    assert gate.attempts(body)[0] == ("zoloz", "VENDOR_NOT_CONFIGURED", False)


# --- the deadline ------------------------------------------------------------------------


@pytest.fixture
def slow_shuxun(gate) -> Iterator[ShuxunSandbox]:
    """A Shuxun of its own that answers after 5 s (its stalled threads outlive the
    test, so they must not touch the shared sandbox's counters)."""
    box = ShuxunSandbox(latency_s=5.0).start()
    gate.replace_secret("shuxun", {**ShuxunSandbox.default_credentials(), "endpoint": box.url})
    try:
        yield box
    finally:
        box.stop()


def invoke_with_budget(gate, body: dict, budget_s: float) -> tuple[int, dict, object]:
    """POST /v1/compare with a Lambda context that has ``budget_s`` left."""
    event = api_event(
        "POST",
        "/v1/compare",
        json.dumps(body),
        headers={"Content-Type": "application/json", "x-api-key": "test-key"},
        stage="dev",
        api_key="test-key",
        api_key_id="test-key-id",
    )
    context = lambda_context("facegate-compare", timeout_s=budget_s)
    response = load_handler("functions/compare")(event, context)
    return response["statusCode"], json.loads(response["body"]), context


def compare_body(gate, **more) -> dict:
    return {"image1": gate.image("obama.jpg"), "image2": gate.image("obama2.jpg"), **more}


def test_a_slow_vendor_is_cut_off_at_the_deadline_not_at_the_read_timeout(gate, slow_shuxun):
    # The read timeout alone (20 s) would outlive the Lambda (3.5 s left): the deadline
    # (that less the 1.5 s margin) must shorten it, and the answer is a contract 504.
    gate.configure(read_timeout="20")

    body = compare_body(gate, vendor="shuxun", fallback=["kuaidi100"])
    status, body, context = invoke_with_budget(gate, body, 3.5)

    assert status == 504, body
    assert body["error"]["code"] == "VENDOR_TIMEOUT"
    assert body["error"]["vendor"] == "shuxun"
    assert set(body["error"]) == {"code", "message", "retryable", "vendor", "vendor_code", "vendor_message"}
    # Answered while the Lambda still had time: not killed mid-request.
    assert context.get_remaining_time_in_millis() > 0
    record = gate.record(body["request_id"])
    assert gate.attempts(record) == [("shuxun", "VENDOR_TIMEOUT", None)]  # it was sent: billing unknown
    assert slow_shuxun.requests == 1
    assert gate.boxes["kuaidi100"].requests == 0  # no failover after the request was sent


def test_no_attempt_starts_when_the_deadline_is_too_close(gate):
    # 2 s left, less the 1.5 s margin: not enough to ask anyone.
    status, body, _ = invoke_with_budget(gate, compare_body(gate, vendor="shuxun", fallback=["kuaidi100"]), 2.0)

    assert status == 504, body
    assert (body["error"]["code"], body["error"]["vendor"]) == ("VENDOR_TIMEOUT", "shuxun")
    record = gate.record(body["request_id"])
    assert gate.attempts(record) == [("shuxun", "VENDOR_TIMEOUT", False)]
    assert sum(gate.boxes.requests().values()) == 0
