"""A line's outcome and the API's answer, both ways (facegate.batch_jobs.outcomes): an
answer stored as a line comes back whole, and an answer rebuilt from the record the
service logged for it (what a worker that stopped before storing it recovers) is the
answer itself, but for the fields the results log is documented not to hold."""

from __future__ import annotations

import json

import pytest

from facegate.batch import ReportLine
from facegate.batch_jobs.outcomes import (
    NOT_IN_THE_RESULTS_LOG,
    VERDICT_ERROR_NOT_IN_THE_RESULTS_LOG,
    answer_from_record,
    answer_of,
    ok_line,
    recovered_line,
)
from facegate.ids import new_request_id
from facegate.models import CompareRequest, VerifyIdentityRequest

BATCH_ID = "0123456789abcdef01234567"


def ask(operation: str, line: dict):
    """What the worker does for one line: the service, as the batch's caller."""
    from facegate.service import Caller, default_service

    caller = Caller(request_id=new_request_id(), batch_id=BATCH_ID, batch_line=1)
    if operation == "compare":
        return default_service().compare(CompareRequest.model_validate(line), caller)
    return default_service().verify_identity(VerifyIdentityRequest.model_validate(line), caller)


def images(a: str = "obama.jpg", b: str = "obama2.jpg") -> dict:
    return {"image1": {"s3": {"key": f"photos/{a}"}}, "image2": {"s3": {"key": f"photos/{b}"}}}


ANSWERS = {
    "one vendor": ("compare", {"vendor": "shuxun", **images()}),
    # kuaidi100 is down here: one verdict is an answer, the other an error.
    "consensus": ("compare", {"consensus": {"vendors": ["shuxun", "kuaidi100"], "rule": "majority"}, **images()}),
    "verify_identity": ("verify_identity", None),
}


@pytest.mark.parametrize("case", ANSWERS)
def test_an_answer_survives_the_results_log_and_the_stored_line(batches, case):
    from facegate.store import default_store

    from .batchkit import verify_line

    operation, line = ANSWERS[case]
    if line is None:  # a manifest's verify_identity line, less what only a manifest has
        line = {k: v for k, v in json.loads(verify_line(1)).items() if k not in ("operation", "caller_id")}
    answer = ask(operation, line)
    assert answer.billed is True and answer.attempts  # a real answer, nothing left at its default

    # answer → stored line → answer: exact.
    stored = ReportLine.model_validate_json(ok_line(1, "c-1", answer).to_json())
    assert (stored.caller_id, stored.request_id, stored.operation) == ("c-1", answer.request_id, answer.operation)
    assert answer_of(stored) == answer

    # answer → results-log record → answer: every field named by the mapping, or
    # documented as not logged...
    record = default_store().get(answer.request_id)
    rebuilt = answer_from_record(record)
    model = type(answer)
    assert set(model.model_fields) - rebuilt.model_fields_set == NOT_IN_THE_RESULTS_LOG[model]
    # ...and equal to what the service answered, but for the time it took to log it.
    assert answer.latency_ms <= rebuilt.latency_ms <= answer.latency_ms + 1000
    expected = answer.model_dump(mode="json", exclude={"latency_ms", *NOT_IN_THE_RESULTS_LOG[model]})
    got = rebuilt.model_dump(mode="json", exclude={"latency_ms"})
    for verdict in got.get("verdicts") or []:
        if "error" in verdict:
            assert "restart" in verdict["error"]["message"]  # says it is the record's word, not the vendor's
    for verdict in [*(expected.get("verdicts") or []), *(got.get("verdicts") or [])]:
        for key in VERDICT_ERROR_NOT_IN_THE_RESULTS_LOG:
            verdict.get("error", {}).pop(key, None)
    assert got == expected
    if case == "consensus":
        assert [v.error is not None for v in rebuilt.verdicts] == [False, True]

    # The line a stopped worker recovers holds that very answer.
    recovered = recovered_line(record, 1)
    assert recovered is not None and recovered.request_id == answer.request_id
    assert recovered.result == rebuilt.model_dump(mode="json")
