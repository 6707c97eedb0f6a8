"""facegate.service.CallLog: exactly one results-log record per call, whoever records it.

End to end (the API edge and the service writing to DynamoDB) this is tested in
tests/integration/test_records_and_tenancy.py and the fault matrix; these pin the
protocol itself with an in-memory store.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from facegate.errors import InvalidRequest, VendorUnavailable
from facegate.models import CompareResponse, Operation
from facegate.service import Call, Caller


class MemoryStore:
    def __init__(self, fail: bool = False):
        self.records, self.fail = [], fail

    def expiry(self, created_at: datetime) -> int:
        return int(created_at.timestamp()) + 86400

    def put(self, record) -> None:
        if self.fail:
            raise RuntimeError("table unavailable")
        self.records.append(record)


def answer(request_id: str) -> CompareResponse:
    return CompareResponse(
        decision="match",
        match=True,
        similarity=0.91,
        threshold=0.6,
        security_level="normal",
        vendor_score=None,
        request_id=request_id,
        operation=Operation.COMPARE,
        vendor="local",
        latency_ms=5,
        billed=False,
        attempts=[],
    )


def test_only_the_first_outcome_is_written():
    store, caller = MemoryStore(), Caller("req-1", tenant="key-1")
    call = Call(Operation.COMPARE, caller)
    assert caller.log.record(call, answer("req-1"), store) is True
    # The edge sees the service's error go by and records it too: no second record.
    assert caller.log.record(Call(Operation.COMPARE, caller), InvalidRequest("late"), store) is False
    assert caller.log.record(call, answer("req-1"), store) is False
    (record,) = store.records
    assert (record.request_id, record.status, record.decision, record.tenant) == ("req-1", "ok", "match", "key-1")


def test_a_failure_is_recorded_from_the_error_and_the_calls_bookkeeping():
    store, caller = MemoryStore(), Caller("req-2", batch_id="b1", batch_line=7)
    call = Call(Operation.DETECT, caller, fingerprints=["ab" * 32])
    caller.log.record(call, VendorUnavailable("down", vendor="shuxun", vendor_code="503"), store)
    (record,) = store.records
    assert (record.status, record.http_status, record.error_code) == ("error", 503, "VENDOR_UNAVAILABLE")
    assert (record.vendor, record.vendor_code, record.decision) == ("shuxun", "503", None)
    assert (record.tenant, record.batch_id, record.batch_line) == ("batch:b1", "b1", 7)
    assert record.image_sha256 == ["ab" * 32]


def test_each_caller_has_its_own_record():
    store = MemoryStore()
    first, second = Caller("req-a"), Caller("req-b")
    first.log.record(Call(Operation.COMPARE, first), InvalidRequest("x"), store)
    second.log.record(Call(Operation.COMPARE, second), InvalidRequest("y"), store)
    assert [r.request_id for r in store.records] == ["req-a", "req-b"]


def test_a_failed_write_is_not_the_callers_problem_and_not_retried():
    store, caller = MemoryStore(fail=True), Caller("req-3")
    assert caller.log.record(Call(Operation.COMPARE, caller), answer("req-3"), store) is True
    store.fail = False
    assert caller.log.record(Call(Operation.COMPARE, caller), InvalidRequest("x"), store) is False
    assert store.records == []


def test_a_record_that_cannot_be_built_leaves_the_call_unrecorded():
    """As before the CallLog: only a built record counts as written, so the edge's
    fallback record still gets in."""
    store, caller = MemoryStore(), Caller("req-4")
    call = Call(Operation.COMPARE, caller, fingerprints=[object()])  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        caller.log.record(call, answer("req-4"), store)
    assert caller.log.record(Call(Operation.COMPARE, caller), InvalidRequest("x"), store) is True
    assert [r.status for r in store.records] == ["error"]
