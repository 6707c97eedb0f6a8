"""Every fault mode of every vendor sandbox, through the real handlers.

For each vendor and operation, and each fault its sandbox can produce, one request
with that vendor alone must end in the contract error (code, HTTP status,
``retryable``, ``vendor``, ``vendor_code``) with one attempt in the results log
whose ``billed`` says what facegate can know; then the same fault with a fallback
vendor must fail over exactly when the vendor gave no answer and cannot be blamed
on the request (unavailable, rate limited, quota, auth), and must not otherwise:
after a read timeout, a malformed or an untrustworthy answer the first vendor's
error is the response and the fallback sandbox sees no request at all.
"""

from __future__ import annotations

import pytest

from facegate_local.sandboxes.base import FAULTS

from .faultkit import COMPARE_VENDORS, IDENTITY

# fault -> (code, HTTP status, retryable, the attempt's billed, fails over)
CONTRACT: dict[str, tuple[str, int, bool, bool | None, bool]] = {
    # The request went out: the vendor may have done (and billed) the work.
    "timeout": ("VENDOR_TIMEOUT", 504, True, None, False),
    # A 5xx page without the vendor's envelope: no answer; billing unknown.
    "http_500": ("VENDOR_UNAVAILABLE", 503, True, None, True),
    # A 200 whose body is cut off: an answer we cannot read, not an outage.
    "malformed": ("VENDOR_BAD_RESPONSE", 502, False, None, False),
    "rate_limit": ("VENDOR_RATE_LIMITED", 429, True, False, True),
    "quota": ("VENDOR_QUOTA_EXHAUSTED", 503, False, False, True),
    "auth": ("VENDOR_AUTH_FAILED", 502, False, False, True),
    # A signed answer whose signature does not verify: possibly tampered, never used.
    "bad_signature": ("VENDOR_BAD_RESPONSE", 502, False, None, False),
    # Connection dropped after the request was sent: no answer, but the vendor may have
    # done (and billed) the work, so, like a read timeout, it is not failed over.
    "reset": ("VENDOR_UNAVAILABLE", 503, True, None, False),
}

# The vendor's own code for each fault, as facegate reports it in ``vendor_code``.
VENDOR_CODES: dict[str, dict[str, str | None]] = {
    "shuxun": {"http_500": "500", "rate_limit": "6", "quota": "5", "auth": "10"},
    "kuaidi100": {"http_500": "500", "rate_limit": "429", "quota": "601", "auth": "503"},
    "face2": {"http_500": "500", "rate_limit": "429", "quota": "402", "auth": "9800"},
    "zoloz": {
        "http_500": "500",
        "rate_limit": "REQUEST_TRAFFIC_EXCEED_LIMIT",
        "quota": "PRODUCT_QUOTA_LIMIT",
        "auth": "SIGNATURE_INVALID",
    },
    "jumei": {"http_500": "500", "rate_limit": "429", "quota": "429", "auth": "401"},
}

# Jumei sits behind the Tencent market gateway, which answers a used-up package
# exactly like a throttle (HTTP 429, no code): facegate/vendors/jumei.py documents
# that it cannot tell them apart, so quota surfaces as a rate limit there.
OVERRIDES: dict[tuple[str, str], tuple[str, int, bool, bool | None, bool]] = {
    ("jumei", "quota"): CONTRACT["rate_limit"],
}

# Only face2 (with signed responses switched on) and ZOLOZ sign their answers; for
# the others the sandbox has no signature to break.
SIGNS_RESPONSES = {"face2", "zoloz"}
# Faults after which the sandbox itself counted the call as billed.
SANDBOX_BILLS = {"bad_signature"}

# (vendor, operation): every operation a sandbox serves.
CASES = [
    *((v, "compare") for v in COMPARE_VENDORS),
    ("face2", "detect"),
    ("face2", "features"),
    ("jumei", "verify_identity"),
]


def faults_of(vendor: str) -> list[str]:
    return [f for f in FAULTS if f != "bad_signature" or vendor in SIGNS_RESPONSES]


def expected(vendor: str, fault: str) -> tuple[str, int, bool, bool | None, bool]:
    return OVERRIDES.get((vendor, fault), CONTRACT[fault])


MATRIX = [pytest.param(v, op, f, id=f"{v}-{op}-{f}") for v, op in CASES for f in faults_of(v)]


def fallback_for(vendor: str) -> str:
    """The next compare vendor, round the ring."""
    return COMPARE_VENDORS[(COMPARE_VENDORS.index(vendor) + 1) % len(COMPARE_VENDORS)]


def body_for(gate, vendor: str, op: str, **more) -> dict:
    if op == "compare":
        return {"image1": gate.image("obama.jpg"), "image2": gate.image("obama2.jpg"), "vendor": vendor, **more}
    if op == "verify_identity":
        return {**IDENTITY, "image": gate.image("obama.jpg"), "vendor": vendor, **more}
    return {"image": gate.image("obama.jpg"), "vendor": vendor, **more}


def test_the_contract_covers_every_fault_the_sandboxes_offer():
    # A new fault mode in the sandboxes must get an expected outcome here.
    assert set(CONTRACT) == set(FAULTS)


@pytest.mark.parametrize(("vendor", "op", "fault"), MATRIX)
def test_a_fault_is_the_contract_error_and_fails_over_only_without_an_answer(gate, vendor, op, fault):
    code, status, retryable, billed, fails_over = expected(vendor, fault)
    box = gate.boxes[vendor]

    # --- the vendor alone: the contract error, one attempt, nothing retried -------------
    box.fail_next(fault)
    got_status, body = gate.call(op, body_for(gate, vendor, op))

    assert got_status == status, body
    assert set(body) == {"request_id", "error"}
    error = body["error"]
    assert set(error) == {"code", "message", "retryable", "vendor", "vendor_code", "vendor_message"}
    assert (error["code"], error["retryable"], error["vendor"]) == (code, retryable, vendor)
    assert error["vendor_code"] == VENDOR_CODES[vendor].get(fault)
    assert isinstance(error["message"], str) and error["message"]

    record = gate.record(body["request_id"])
    assert (record["status"], record["http_status"], record["error_code"]) == ("error", status, code)
    assert record["vendor"] == vendor
    assert record.get("vendor_code") == VENDOR_CODES[vendor].get(fault)
    # One attempt: none of these faults may be retried (each reached the vendor).
    assert gate.attempts(record) == [(vendor, code, billed)]
    assert record.get("billed") == billed
    assert box.requests == 1
    assert box.billed == (1 if fault in SANDBOX_BILLS else 0)

    # The fault was one-off, and facegate recovers at once (a dropped or timed-out
    # connection is not reused): the next call is answered and billed.
    ok_status, ok = gate.call(op, body_for(gate, vendor, op))
    assert ok_status == 200, ok
    assert gate.attempts(ok) == [(vendor, "ok", True)]
    assert box.billed == (2 if fault in SANDBOX_BILLS else 1)

    if op != "compare":
        return  # no other sandbox offers this operation: nothing to fail over to

    # --- with a fallback: failover exactly when the vendor gave no answer ------------
    gate.boxes.reset()
    other = fallback_for(vendor)
    box.fail_next(fault)
    got_status, body = gate.compare(vendor, [other])
    record = gate.record(body["request_id"])

    if fails_over:
        assert got_status == 200, body
        assert body["vendor"] == other
        assert gate.attempts(body) == [(vendor, code, billed), (other, "ok", True)]
        assert body["billed"] is True
        assert gate.attempts(record) == gate.attempts(body)
        assert (record["status"], record["vendor"]) == ("ok", other)
        assert (gate.boxes[other].requests, gate.boxes[other].billed) == (1, 1)
    else:
        assert got_status == status, body
        assert (body["error"]["code"], body["error"]["vendor"]) == (code, vendor)
        assert gate.attempts(record) == [(vendor, code, billed)]
        assert gate.boxes[other].requests == 0
    assert box.requests == 1


def test_full_size_photos_pass_every_vendor(gate):
    # The rest of the suite sends small copies; the originals must fit every vendor too.
    for vendor in COMPARE_VENDORS:
        status, body = gate.call(
            "compare",
            {
                "image1": gate.image("obama.jpg", full=True),
                "image2": gate.image("obama2.jpg", full=True),
                "vendor": vendor,
            },
        )
        assert status == 200, body
        assert gate.attempts(body) == [(vendor, "ok", True)]
    status, body = gate.call(
        "verify_identity", {**IDENTITY, "image": gate.image("obama.jpg", full=True), "vendor": "jumei"}
    )
    assert status == 200, body
    assert gate.boxes.billed() == dict.fromkeys(gate.boxes, 1)
    assert all(box.rejected == [] for box in gate.boxes.values())


def test_a_no_match_is_an_answer_not_a_reason_to_fail_over(gate, monkeypatch):
    # Shuxun scores these two photos far below its own thresholds.
    monkeypatch.setattr(gate.boxes["shuxun"], "score", 12.5)
    status, body = gate.compare("shuxun", ["kuaidi100", "face2"])
    assert status == 200, body
    assert (body["vendor"], body["decision"], body["match"]) == ("shuxun", "no_match", False)
    assert gate.attempts(body) == [("shuxun", "ok", True)]
    assert gate.boxes["kuaidi100"].requests == gate.boxes["face2"].requests == 0


def test_a_vendor_that_refuses_the_identity_is_an_answer_and_billed(gate):
    status, body = gate.verify_identity(name="李四")  # not the name on record for that number
    assert status == 422, body
    assert (body["error"]["code"], body["error"]["vendor"], body["error"]["vendor_code"]) == (
        "IDENTITY_MISMATCH",
        "jumei",
        "101",
    )
    record = gate.record(body["request_id"])
    assert gate.attempts(record) == [("jumei", "IDENTITY_MISMATCH", True)]
    assert (gate.boxes["jumei"].requests, gate.boxes["jumei"].billed) == (1, 1)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        # kuaidi100 face tokens cannot go to the fallback: refused before anything is sent.
        (
            {
                "image1": {"face_token": "0123456789abcdef"},
                "image2": {"face_token": "fedcba9876543210"},
                "vendor": "kuaidi100",
                "fallback": ["shuxun"],
            },
            "INVALID_REQUEST",
        ),
        ({"image1": {"base64": "bm90IGFuIGltYWdl"}, "vendor": "shuxun", "fallback": ["zoloz"]}, "INVALID_REQUEST"),
        (
            {"image1": {"base64": "bm90IGFuIGltYWdl"}, "image2": {"base64": "bm90IGFuIGltYWdl"}, "vendor": "shuxun"},
            "INVALID_IMAGE",
        ),
        (
            {"image1": {"base64": "AAAA"}, "image2": {"base64": "AAAA"}, "fallback": ["face2"], "vendor": "zoloz"},
            "INVALID_IMAGE",
        ),
    ],
    ids=["face-token-to-a-fallback", "missing-image", "not-an-image", "garbage-image-with-fallback"],
)
def test_caller_errors_reach_no_vendor_and_fail_over_to_none(gate, body, code):
    status, got = gate.call("compare", body)
    assert 400 <= status < 500, got
    assert got["error"]["code"] == code
    assert sum(gate.boxes.requests().values()) == 0
    record = gate.record(got["request_id"])
    assert (record["status"], record["error_code"]) == ("error", code)
    assert gate.attempts(record) == []
