"""A line's outcome and the API's answers, mapped field by field, both ways.

A line's stored outcome is a ``ReportLine``; when ok, its ``result`` is the API's
answer as JSON (``ok_line`` writes it, ``answer_of`` reads the model back). An answer a
worker got but never stored is recovered from the results log: ``answer_from_record``
names every field of the answer and where in the record it comes from, so a field
added to the answer without a source here fails the mapping's test instead of
vanishing. What the results log does not hold is named in ``NOT_IN_THE_RESULTS_LOG``.
"""

from __future__ import annotations

from facegate.batch import ReportLine, error_body
from facegate.batch_jobs.context import retryable_codes
from facegate.errors import FacegateError, InternalError
from facegate.manifest import ParsedLine
from facegate.models import (
    CompareResponse,
    Decision,
    ErrorBody,
    Operation,
    SecurityLevel,
    VendorVerdict,
    VerifyIdentityResponse,
)
from facegate.store import ConsensusVote, ResultRecord

Answer = CompareResponse | VerifyIdentityResponse

ANSWERS: dict[Operation, type[Answer]] = {
    Operation.COMPARE: CompareResponse,
    Operation.VERIFY_IDENTITY: VerifyIdentityResponse,
}

# Fields of an answer the results log has no place for: a recovered line goes without them.
NOT_IN_THE_RESULTS_LOG: dict[type[Answer], frozenset[str]] = {
    CompareResponse: frozenset({"face_tokens"}),  # Kuaidi100's tokens are handed to the caller, never logged
    VerifyIdentityResponse: frozenset(),
}
# Nor the words of a consensus vendor's error: the log keeps its codes only.
VERDICT_ERROR_NOT_IN_THE_RESULTS_LOG = frozenset({"message", "vendor_message"})

RECOVERED = "recorded before a worker restart"


# --- answer ⇄ stored outcome ----------------------------------------------------------------


def ok_line(line: int, caller_id: str | None, answer: Answer) -> ReportLine:
    return ReportLine(
        line=line,
        caller_id=caller_id,
        status="ok",
        operation=answer.operation,
        request_id=answer.request_id,
        result=answer.model_dump(mode="json"),
    )


def answer_of(outcome: ReportLine) -> Answer:
    """The API's answer an ok line holds, as its model."""
    if outcome.status != "ok" or outcome.operation not in ANSWERS:
        raise ValueError(f"line {outcome.line} holds no answer")
    return ANSWERS[outcome.operation].model_validate(outcome.result)


def error_line(line: int, parsed: ParsedLine, request_id: str, e: FacegateError) -> ReportLine:
    return ReportLine(
        line=line,
        caller_id=parsed.caller_id,
        status="error",
        operation=parsed.operation,
        request_id=request_id,
        error=error_body(e),
    )


# --- results-log record → answer -------------------------------------------------------------


def answer_from_record(record: ResultRecord) -> Answer:
    """The answer the service gave, rebuilt from the record it logged: validated, as a
    record's fields are optional where the answer's are not (an ok record has them)."""
    if record.status != "ok" or record.operation not in ANSWERS:
        raise ValueError("the record holds no compare or verify_identity answer")
    common: dict[str, object] = {
        "request_id": record.request_id,
        "operation": record.operation,
        "vendor": record.vendor,
        "latency_ms": record.latency_ms,
        "vendor_request_id": record.vendor_request_id,
        "billed": record.billed,
        "attempts": record.attempts,
        "decision": record.decision,
        "match": is_match(record.decision),
        "similarity": record.similarity,
        "threshold": record.threshold,
        "security_level": record.security_level,
        "vendor_score": record.vendor_score,
    }
    if record.operation == Operation.VERIFY_IDENTITY:
        return VerifyIdentityResponse.model_validate(
            {**common, "name_masked": record.name_masked, "id_number_masked": record.id_number_masked}
        )
    return CompareResponse.model_validate(
        {
            **common,
            "consensus_rule": record.consensus_rule,
            "verdicts": None
            if record.consensus is None
            else [verdict_from_vote(v, record.security_level) for v in record.consensus],
        }
    )


def verdict_from_vote(vote: ConsensusVote, security_level: SecurityLevel | None) -> VendorVerdict:
    """One consensus vendor's part. Every vendor of a consensus decides at the request's
    security level, so the record's level is each answering vendor's."""
    answered = vote.decision is not None
    return VendorVerdict(
        vendor=vote.vendor,
        decision=vote.decision,
        match=is_match(vote.decision),
        similarity=vote.similarity,
        threshold=vote.threshold,
        security_level=security_level if answered else None,
        vendor_score=vote.vendor_score,
        vendor_request_id=vote.vendor_request_id,
        billed=vote.billed,
        error=None
        if vote.error_code is None
        else ErrorBody(
            code=vote.error_code,
            message=f"the vendor failed with {vote.error_code} ({RECOVERED})",
            retryable=retryable_codes().get(vote.error_code, False),
            vendor=vote.vendor,
            vendor_code=vote.vendor_code,
        ),
    )


def is_match(decision: Decision | None) -> bool | None:
    return None if decision in (None, "uncertain") else decision == "match"


def recovered_line(record: ResultRecord, line: int) -> ReportLine | None:
    """The line's outcome as the record says, or None when the record's error is not
    final (a retryable one, or our own): then the line is tried again. The caller id is
    not in the results log: the line's own is added by whoever reads the line."""
    outcome = ReportLine(line=line, status=record.status, operation=record.operation, request_id=record.request_id)
    if record.status == "ok":
        outcome.result = answer_from_record(record).model_dump(mode="json")
        return outcome
    code = record.error_code or InternalError.code
    if retryable_codes().get(code, True) or code == InternalError.code:
        return None
    outcome.error = ErrorBody(
        code=code,
        message=f"the request failed with {code} ({RECOVERED})",
        retryable=False,
        vendor=record.vendor,
        vendor_code=record.vendor_code,
    )
    return outcome
