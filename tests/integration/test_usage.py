"""GET /v1/usage's query parameters: a bad day, a reversed or too long range is the
caller's 400 in the contract's shape (no table is read); no usage table is a 501."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"from": "2026-13-01", "to": "2026-12-01"}, "from must be a date, YYYY-MM-DD"),
        ({"from": "20261101"}, "from must be a date, YYYY-MM-DD"),
        ({"to": "2026-11-31"}, "to must be a date, YYYY-MM-DD"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "from must not be after to"),
        ({"from": "2026-01-01", "to": "2026-04-03"}, "at most 92 days"),  # 93 days
    ],
)
def test_bad_ranges_are_the_callers_400(usage_table, call_api, query, says):
    status, body = call_api("usage", "GET", "/v1/usage", query=query)
    assert status == 400, body
    assert body["error"]["code"] == "INVALID_REQUEST" and says in body["error"]["message"]
    assert body["request_id"]


def test_the_longest_range_is_92_days(usage_table, call_api):
    status, body = call_api("usage", "GET", "/v1/usage", query={"from": "2026-01-01", "to": "2026-04-02"})
    assert status == 200, body
    assert body == {"from": "2026-01-01", "to": "2026-04-02", "currency": "CNY", "vendors": []}


def test_a_stage_without_a_usage_table_says_so(aws, call_api):
    status, body = call_api("usage", "GET", "/v1/usage")
    assert (status, body["error"]["code"]) == (501, "USAGE_NOT_CONFIGURED"), body
