"""The issue's definition of done: a batch of 1,000 lines, with injected failures and
redelivery, runs end to end and yields exactly 1,000 report lines — one result or
error per line, in order — with exactly one batch-table item per line and no vendor
asked twice about a line that was done."""

from __future__ import annotations

import json
from collections import Counter

import boto3
import pytest

from facegate.batch import ItemMessage
from facegate.batch_jobs.work import Worker
from facegate.batch_store import BatchStore
from facegate_local.batch import Crash

from .batchkit import compare_line, verify_line

N = 1000
MALFORMED = {i for i in range(1, N + 1) if i % 100 == 7}
UNKNOWN_FIELD = {i for i in range(1, N + 1) if i % 100 == 13}
MISSING_IMAGE = {i for i in range(1, N + 1) if i % 100 == 21}
VERIFY = {i for i in range(1, N + 1) if i % 100 == 33}
URLS = {i for i in range(1, N + 1) if i % 100 == 42}
VENDOR_DOWN = {i for i in range(1, N + 1) if i % 250 == 77}  # kuaidi100, whose endpoint refuses connections
# The worker dies after the vendor answered (and the service logged it) but before the
# outcome is stored: the redelivery must take the answer from the results log.
CRASH_AFTER_CALL = {i for i in range(1, N + 1) if i % 97 == 5}
# Its worker dies on every delivery, after taking the line: the dead-letter drain ends
# it (and gives the lines that only rode in the same batches another round).
POISON = {500}
SPECIAL = MALFORMED | UNKNOWN_FIELD | MISSING_IMAGE | VERIFY | URLS | VENDOR_DOWN | POISON


def manifest() -> str:
    assert not CRASH_AFTER_CALL & SPECIAL
    lines = []
    for i in range(1, N + 1):
        if i in MALFORMED:
            lines.append('{"caller_id": "broken", "image1": ')
        elif i in UNKNOWN_FIELD:
            lines.append(compare_line(i, colour="blue"))
        elif i in MISSING_IMAGE:
            lines.append(compare_line(i, image2={"s3": {"key": f"photos/missing-{i}.jpg"}}))
        elif i in VERIFY:
            lines.append(verify_line(i))
        elif i in URLS:
            lines.append(compare_line(i, image1={"url": f"https://img.example/{i}.jpg"}))
        elif i in VENDOR_DOWN:
            lines.append(compare_line(i, vendor="kuaidi100"))
        else:
            lines.append(compare_line(i))
    return "\n".join(lines) + "\n"


@pytest.fixture
def failures(batches, monkeypatch):
    """Crashes, lost acknowledgements, duplicate messages and vendor faults."""
    crashed: set[int] = set()
    counts = Counter()

    complete_line = BatchStore.complete_line

    def crashing_complete(self, batch_id, outcome, now, **kw):
        if outcome.line in CRASH_AFTER_CALL and outcome.line not in crashed and not kw.get("recovered"):
            crashed.add(outcome.line)
            raise Crash(f"worker died before storing line {outcome.line}")
        return complete_line(self, batch_id, outcome, now, **kw)

    work = Worker._work

    def dying_worker(self, msg: ItemMessage, *args, **kw):
        if msg.line in POISON:
            counts["poison"] += 1
            raise Crash(f"worker died on line {msg.line}")
        return work(self, msg, *args, **kw)

    monkeypatch.setattr(BatchStore, "complete_line", crashing_complete)
    monkeypatch.setattr(Worker, "_work", dying_worker)

    sqs = boto3.client("sqs")
    item_queue = batches.local.queues["ItemQueue"].url
    handled: set[str] = set()

    def ack(message) -> bool:
        line = json.loads(message["Body"])["line"]
        first = message["MessageId"] not in handled
        handled.add(message["MessageId"])
        if first and line % 64 == 1:  # SQS delivers this one twice
            sqs.send_message(QueueUrl=item_queue, MessageBody=message["Body"])
            counts["duplicated"] += 1
        if first and line % 50 == 0:  # the delete is lost: it comes back
            counts["acks_lost"] += 1
            return False
        return True

    batches.local.worker.ack = ack

    faults = {10: ("rate_limit", 3), 20: ("http_500", 2), 30: ("timeout", 2), 40: ("quota", 1), 50: ("malformed", 1)}
    polls = Counter()

    def inject() -> None:
        polls["n"] += 1
        if polls["n"] in faults:
            fault, times = faults[polls["n"]]
            batches.shuxun.fail_next(fault, times)

    return {"crashed": crashed, "counts": counts, "inject": inject}


def test_a_thousand_lines_with_failures_and_redelivery(batches, failures):
    batches.upload_manifest("thousand", manifest())
    meta = batches.run("thousand", between_polls=failures["inject"], timeout_s=600)
    assert meta.status == "done" and meta.total == N and meta.done == N

    # --- the report: exactly one line per manifest line, in order, result xor error ---
    report = batches.report("thousand")
    assert len(report) == N
    assert [r["line"] for r in report] == list(range(1, N + 1))
    for r in report:
        assert (r["status"] == "ok") == ("result" in r) != ("error" in r), r
    by_line = {r["line"]: r for r in report}
    codes = Counter(r["error"]["code"] for r in report if r["status"] == "error")
    assert {by_line[i]["error"]["code"] for i in MALFORMED} == {"MALFORMED_JSON"}
    assert {by_line[i]["error"]["code"] for i in UNKNOWN_FIELD} == {"INVALID_REQUEST"}
    assert all("colour" in by_line[i]["error"]["message"] for i in UNKNOWN_FIELD)
    assert {by_line[i]["error"]["code"] for i in MISSING_IMAGE} == {"IMAGE_UNAVAILABLE"}
    assert {by_line[i]["error"]["code"] for i in VENDOR_DOWN} == {"VENDOR_UNAVAILABLE"}
    assert {by_line[i]["error"]["code"] for i in POISON} == {"ITEM_NOT_PROCESSED"}
    assert all(by_line[i]["status"] == "ok" for i in VERIFY | URLS)
    # The injected faults: retryable ones were retried to success, the others recorded.
    assert codes == {
        "MALFORMED_JSON": len(MALFORMED),
        "INVALID_REQUEST": len(UNKNOWN_FIELD),
        "IMAGE_UNAVAILABLE": len(MISSING_IMAGE),
        "VENDOR_UNAVAILABLE": len(VENDOR_DOWN),
        "ITEM_NOT_PROCESSED": len(POISON),
        "VENDOR_QUOTA_EXHAUSTED": 1,
        "VENDOR_BAD_RESPONSE": 1,
    }
    assert all(by_line[i]["caller_id"] == f"c-{i}" for i in CRASH_AFTER_CALL)

    # --- the batch table: exactly one item per line, each finished ---
    items = batches.line_items(meta.batch_id)
    assert len(items) == N
    assert sorted(int(i["sk"].removeprefix("line#")) for i in items) == list(range(1, N + 1))
    assert all("outcome" in i and "lease_until" not in i for i in items)

    # --- nothing asked twice: one ok call per ok line, and billing adds up ---
    crashed = failures["crashed"]
    assert crashed == CRASH_AFTER_CALL  # every planned crash happened...
    log = [r for r in batches.results_log() if r.get("batch_id") == meta.batch_id]
    assert {int(r["batch_line"]) for r in log} == set(range(1, N + 1))  # every line is in the results log
    ok_calls = Counter(int(r["batch_line"]) for r in log if r["status"] == "ok")
    ok_lines = {r["line"] for r in report if r["status"] == "ok"}
    assert set(ok_calls) == ok_lines and set(ok_calls.values()) == {1}
    for i in CRASH_AFTER_CALL:  # ...and the reported answer is the one the vendor gave before the crash
        (record,) = [r for r in log if int(r["batch_line"]) == i and r["status"] == "ok"]
        assert by_line[i]["request_id"] == record["request_id"]

    summary = batches.summary("thousand")
    assert summary["total"] == N and summary["ok"] == len(ok_lines) and summary["errors"] == N - len(ok_lines)
    assert summary["error_codes"] == dict(sorted(codes.items()))
    assert sum(summary["decisions"].values()) == summary["ok"]
    assert summary["billed_calls"] == batches.shuxun.billed + batches.jumei.billed
    assert summary["billed_calls"] == sum(1 for r in report if r["status"] == "ok" and r["result"]["billed"])
    assert summary["recovered"] == len(CRASH_AFTER_CALL)
    counts = failures["counts"]
    assert counts["duplicated"] > 0 and counts["acks_lost"] > 0
    assert counts["poison"] == 5  # BatchMaxReceiveCount deliveries, then the dead-letter queue
    assert any(int(i.get("redrives", 0)) for i in items)  # its batchmates were redriven, not failed
    assert summary["deliveries"] > N

    # --- late duplicates (lost acks, double deliveries) change nothing once it is done ---
    billed = batches.shuxun.billed + batches.jumei.billed
    report_text = batches.report_text("thousand")
    batches.local.worker.ack = None
    while batches.local.pump_once():
        pass
    for queue in ("ManifestQueue", "ItemQueue", "ItemDLQ", "ManifestDLQ"):
        assert batches.queue_depth(queue) == 0, queue
    assert batches.shuxun.billed + batches.jumei.billed == billed
    assert batches.report_text("thousand") == report_text
