"""The pure parts of facegate.idempotency: reading the key, hashing the body, and
which answers are kept for repeats."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from facegate.errors import InvalidRequest
from facegate.idempotency import body_sha256, is_final, requested_key


def test_the_key_is_read_from_either_header_field_in_any_case():
    assert requested_key({"headers": {"IDEMPOTENCY-KEY": "k1"}}) == "k1"
    assert requested_key({"headers": None, "multiValueHeaders": {"idempotency-key": ["k2"]}}) == "k2"
    # API Gateway repeats a header in both fields: that is one key, not two.
    both = {"headers": {"Idempotency-Key": "k3"}, "multiValueHeaders": {"Idempotency-Key": ["k3"]}}
    assert requested_key(both) == "k3"
    assert requested_key({"headers": {"X-Other": "k"}, "multiValueHeaders": None}) is None
    assert requested_key({}) is None


def test_two_different_keys_are_refused():
    with pytest.raises(InvalidRequest, match="one Idempotency-Key"):
        requested_key({"multiValueHeaders": {"Idempotency-Key": ["a", "b"]}})


def test_a_refused_key_is_not_echoed():
    with pytest.raises(InvalidRequest) as caught:
        requested_key({"headers": {"Idempotency-Key": "secret value!"}})
    assert "secret value" not in caught.value.message


def test_the_body_hash_is_of_the_bytes_sent_whichever_way_they_came():
    raw = b'{"image": {"base64": "abc"}}'
    plain = {"body": raw.decode(), "isBase64Encoded": False}
    encoded = {"body": base64.b64encode(raw).decode(), "isBase64Encoded": True}

    assert body_sha256(plain) == body_sha256(encoded) == hashlib.sha256(raw).hexdigest()
    assert body_sha256({"body": None}) == hashlib.sha256(b"").hexdigest()
    assert body_sha256({"body": raw.decode() + " "}) != body_sha256(plain)


def _answer(status: int, retryable: bool | None = None) -> dict:
    body = {"request_id": "r"} if retryable is None else {"request_id": "r", "error": {"retryable": retryable}}
    return {"statusCode": status, "body": json.dumps(body)}


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        (_answer(200), True),
        (_answer(400, False), True),
        (_answer(422, False), True),
        (_answer(409, True), False),  # an error the caller is told to retry
        (_answer(429, True), False),
        (_answer(429, False), False),
        (_answer(500, False), False),
        (_answer(503, False), False),  # e.g. a vendor not configured yet
        (_answer(504, True), False),
        ({"statusCode": 400, "body": "not json"}, True),
    ],
)
def test_only_final_answers_are_kept(answer, kept):
    assert is_final(answer) is kept


def test_the_key_hash_is_pinned_to_sha256():
    """A known answer: SHA-256 of the JSON of [tenant, key] (`printf '%s' '["tenant-a", "order-17"]' |
    sha256sum`). Stored ids are hashed keys, never the keys; a weaker or different hash (MD5, say)
    would also orphan every stored record. tests/integration/test_records_and_tenancy.py holds
    ``record_id`` equal to the id Powertools really stores."""
    from facegate.idempotency import record_id
    from facegate.models import Operation

    assert record_id(Operation.COMPARE, "tenant-a", "order-17") == (
        "facegate.compare#33a3497b223df4c4b64ec853cfdc95e25174284ced7cac8f794d1ced809e8f1a"
    )
