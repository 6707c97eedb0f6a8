"""Tencent Cloud marketplace key-pair signing: known answers and the X-Date format.

The expected signatures were computed outside Python, e.g.::

    printf 'x-date: Mon, 19 Mar 2018 12:08:40 GMT\\nx-source: market' \\
        | openssl dgst -sha1 -hmac 'test-secret-key' -binary | base64
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from facegate.signing import tencent_market as tm

DOC_DATE = "Mon, 19 Mar 2018 12:08:40 GMT"  # the date in the vendor doc's example


@pytest.mark.parametrize(
    ("secret_key", "x_date", "source", "expected"),
    [
        ("test-secret-key", DOC_DATE, "market", "Ug4I5m9nAyqwW0iuNj9fiIEBHQE="),
        ("sandbox-secret-key", "Sat, 29 Feb 2020 23:59:59 GMT", "market", "xsGNmpPjn4gUczE1d/3zglWEUCs="),
        ("密钥", DOC_DATE, "market", "vFBgj8lgQLENIaDH9+m5JUv3wyo="),  # key taken as UTF-8
    ],
)
def test_signature_known_answers(secret_key, x_date, source, expected):
    assert tm.signature(secret_key, x_date, source) == expected


def test_string_to_sign_is_the_documented_two_lines():
    assert tm.string_to_sign(DOC_DATE, "market") == f"x-date: {DOC_DATE}\nx-source: market"


def test_authorization_header_is_spelled_like_the_doc_samples():
    auth = tm.authorization("AKIDexample", "test-secret-key", DOC_DATE, "market")
    assert auth == (
        'hmac id="AKIDexample", algorithm="hmac-sha1", headers="x-date x-source", '
        'signature="Ug4I5m9nAyqwW0iuNj9fiIEBHQE="'
    )


def test_headers_at_a_given_instant():
    now = datetime(2018, 3, 19, 20, 8, 40, 987654, tzinfo=timezone(timedelta(hours=8)))  # Beijing time
    assert tm.headers("AKIDexample", "test-secret-key", "market", now) == {
        "X-Source": "market",
        "X-Date": DOC_DATE,
        "Authorization": (
            'hmac id="AKIDexample", algorithm="hmac-sha1", headers="x-date x-source", '
            'signature="Ug4I5m9nAyqwW0iuNj9fiIEBHQE="'
        ),
    }


def test_x_date_of_the_doc_example():
    assert tm.x_date(datetime(2018, 3, 19, 12, 8, 40, tzinfo=UTC)) == DOC_DATE


def test_x_date_converts_to_gmt_and_pads_the_day():
    eastern = timezone(timedelta(hours=-5))
    assert tm.x_date(datetime(2024, 1, 1, 1, 2, 3, tzinfo=eastern)) == "Mon, 01 Jan 2024 06:02:03 GMT"
    # Beijing 07:00 on 1 March is still 29 February in GMT (a leap day, a Thursday).
    beijing = timezone(timedelta(hours=8))
    assert tm.x_date(datetime(2024, 3, 1, 7, 0, 0, tzinfo=beijing)) == "Thu, 29 Feb 2024 23:00:00 GMT"


# Independent English tables (not the calendar module's, which follow the locale).
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@pytest.mark.parametrize("month", range(1, 13))
def test_x_date_every_month_and_weekday(month):
    for day in range(1, 8):  # seven consecutive days: every weekday once
        dt = datetime(2023, month, day, 9, 5, 7, tzinfo=UTC)
        expected = f"{DAYS[dt.weekday()]}, {day:02d} {MONTHS[month - 1]} 2023 09:05:07 GMT"
        assert tm.x_date(dt) == expected


class _ChineseLocaleDatetime(datetime):
    """A datetime whose strftime behaves as under LC_TIME=zh_CN (which this machine
    may not have installed): day and month names come out in Chinese."""

    def strftime(self, fmt):
        return datetime.strftime(self, fmt.replace("%a", "周一").replace("%b", "3月"))

    def __format__(self, fmt):
        return self.strftime(fmt)


def test_x_date_does_not_use_locale_dependent_formatting(monkeypatch):
    import time

    # time.strftime follows LC_TIME too: make it visibly wrong as well.
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: fmt.replace("%a", "周一").replace("%b", "3月"))
    now = _ChineseLocaleDatetime(2018, 3, 19, 20, 8, 40, tzinfo=timezone(timedelta(hours=8)))
    assert now.astimezone(UTC).strftime("%a %b") == "周一 3月"  # the fake does what it claims
    assert tm.x_date(now) == DOC_DATE


def test_x_date_refuses_naive_datetimes():
    with pytest.raises(ValueError, match="timezone-aware"):
        tm.x_date(datetime(2018, 3, 19, 12, 8, 40))


@pytest.mark.parametrize("bad", ['a"b', "a,b", "a\nb", "", "市场", "a\\b"])
def test_header_breaking_ids_and_sources_are_refused(bad):
    with pytest.raises(ValueError, match="secret_id must be") as exc:
        tm.authorization(bad, "k", DOC_DATE, "market")
    if bad:
        assert bad not in str(exc.value)
    with pytest.raises(ValueError, match="source must be"):
        tm.authorization("AKID", "k", DOC_DATE, bad)
