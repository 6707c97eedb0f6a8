"""Shuxun signing: sha256(appKey + timestamp + appSecret), lowercase hex."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from facegate.signing import shuxun

# The doc's example values: appKey = aaa; timestamp = 1682476904289; appSecret = bbb.
DOC_APP_KEY = "aaa"
DOC_TIMESTAMP = "1682476904289"
DOC_APP_SECRET = "bbb"
# sha256("aaa1682476904289bbb"), computed once by hand with both Python's hashlib and
# coreutils' sha256sum (they agreed), and pasted here.
DOC_SIGN = "63c2023a929a582fff79da484f4a635719f362333ce826ed18a69b435d54f2ef"


def test_sign_matches_the_doc_example_known_answer():
    assert shuxun.sign(DOC_APP_KEY, DOC_TIMESTAMP, DOC_APP_SECRET) == DOC_SIGN


def test_sign_matches_an_independent_sha256_of_the_concatenation():
    expected = hashlib.sha256(b"aaa" + b"1682476904289" + b"bbb").hexdigest()
    assert shuxun.sign(DOC_APP_KEY, DOC_TIMESTAMP, DOC_APP_SECRET) == expected


def test_sign_is_lowercase_hex_of_64_chars():
    digest = shuxun.sign("Key", "1700000000000", "SECRET")
    assert len(digest) == 64
    assert digest == digest.lower()
    int(digest, 16)


def test_sign_order_is_key_timestamp_secret():
    # Swapping key and secret must change the digest: the order is part of the scheme.
    assert shuxun.sign("bbb", DOC_TIMESTAMP, "aaa") != DOC_SIGN
    assert shuxun.sign(DOC_APP_KEY, DOC_TIMESTAMP, DOC_APP_SECRET + " ") != DOC_SIGN


def test_sign_encodes_non_ascii_as_utf8():
    expected = hashlib.sha256("钥1682476904289密".encode()).hexdigest()
    assert shuxun.sign("钥", "1682476904289", "密") == expected


@pytest.mark.parametrize("bad", ["1682476904.289", "", " 1682476904289", "-1", "１６８２"])
def test_sign_refuses_a_timestamp_that_is_not_millisecond_digits(bad):
    with pytest.raises(ValueError, match="milliseconds"):
        shuxun.sign(DOC_APP_KEY, bad, DOC_APP_SECRET)


def test_auth_headers_carry_key_timestamp_and_sign():
    assert shuxun.auth_headers(DOC_APP_KEY, DOC_TIMESTAMP, DOC_APP_SECRET) == {
        "appKey": "aaa",
        "timestamp": "1682476904289",
        "sign": DOC_SIGN,
    }


def test_timestamp_ms_of_the_doc_example_instant():
    # 1682476904289 ms is 2023-04-26T02:41:44.289Z.
    now = datetime(2023, 4, 26, 2, 41, 44, 289000, tzinfo=UTC)
    assert shuxun.timestamp_ms(now) == DOC_TIMESTAMP


def test_timestamp_ms_is_the_same_instant_in_any_zone():
    now = datetime(2023, 4, 26, 10, 41, 44, 289000, tzinfo=timezone(timedelta(hours=8)))
    assert shuxun.timestamp_ms(now) == DOC_TIMESTAMP


def test_timestamp_ms_truncates_microseconds_exactly():
    # 999 µs past the millisecond stays in that millisecond (no float rounding up).
    now = datetime(2023, 4, 26, 2, 41, 44, 289999, tzinfo=UTC)
    assert shuxun.timestamp_ms(now) == DOC_TIMESTAMP


def test_timestamp_ms_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        shuxun.timestamp_ms(datetime(2023, 4, 26, 2, 41, 44))


def test_timestamp_ms_refuses_a_tzinfo_that_knows_no_offset():
    """A tzinfo whose utcoffset() is None leaves the datetime naive all the same (the
    datetime docs' own definition); found by mutmut: `or` -> `and` survived."""
    from datetime import tzinfo

    class NoOffset(tzinfo):
        def utcoffset(self, dt):
            return None

    with pytest.raises(ValueError, match="timezone-aware"):
        shuxun.timestamp_ms(datetime(2023, 4, 26, 2, 41, 44, tzinfo=NoOffset()))
