"""The delivery rules one message at a time: claims and leases, retries and the last
delivery, backoff, the dead-letter drain, lines that cannot be read."""

from __future__ import annotations

import json

import boto3
import pytest

from facegate.batch import ItemMessage, ReportLine
from facegate.batch_jobs import default_jobs
from facegate.batch_jobs.context import LEASE_MARGIN_S, RetryLater
from facegate.batch_store import default_batch_store
from facegate.models import Operation

from .batchkit import compare_line


def split(batches, name: str, text: str) -> str:
    """Upload and split; the items stay on the queue. The batch id."""
    batches.upload_manifest(name, text)
    while not batches.local.meta(name) or batches.local.meta(name).status == "splitting":
        assert batches.local.splitter.poll(), "the manifest event never came"
    return batches.local.meta(name).batch_id


def take_items(batches) -> list[dict]:
    """Every item message on the queue (received: invisible for the queue's timeout)."""
    sqs = boto3.client("sqs")
    out = []
    while True:
        got = sqs.receive_message(
            QueueUrl=batches.local.queues["ItemQueue"].url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            return sorted(out, key=lambda m: json.loads(m["Body"])["line"])
        out += got


def msg(m: dict) -> ItemMessage:
    return ItemMessage.model_validate_json(m["Body"])


def test_a_line_is_claimed_once_and_finished_once(batches):
    batch_id = split(batches, "claims", compare_line(1) + "\n")
    store, now = default_batch_store(), 1_000_000.0
    first = store.claim_line(batch_id, 1, "R1", now, now + 60, expires_at=0)
    assert first.state == "claimed" and first.previous_request_ids == ()
    busy = store.claim_line(batch_id, 1, "R2", now + 1, now + 61, expires_at=0)
    assert busy.state == "busy" and busy.lease_until == pytest.approx(now + 60)
    # The holder died: once its lease is over, the next attempt takes the line and learns
    # which request ids came before it.
    later = store.claim_line(batch_id, 1, "R3", now + 61, now + 121, expires_at=0)
    assert later.state == "claimed" and later.previous_request_ids == ("R1",)

    outcome = ReportLine(
        line=1, status="ok", operation=Operation.COMPARE, request_id="R3", result={"decision": "match"}
    )
    assert store.complete_line(batch_id, outcome, now + 62, billed_calls=1, expires_at=0) is True
    again = outcome.model_copy(update={"request_id": "R4"})
    assert store.complete_line(batch_id, again, now + 63, billed_calls=1, expires_at=0) is False
    assert store.claim_line(batch_id, 1, "R5", now + 200, now + 260, expires_at=0).state == "done"

    meta = store.get_meta(batch_id)
    assert meta.done == 1 and meta.ok == 1 and meta.decisions["match"] == 1  # counted once
    line = store.get_line(batch_id, 1)
    assert line.outcome.request_id == "R3" and line.billed_calls == 1 and line.attempts == 2
    assert line.lease_until is None


def test_a_line_leased_by_another_delivery_comes_back_after_the_lease(batches):
    batch_id = split(batches, "busy", compare_line(1) + "\n")
    jobs = default_jobs()
    now = jobs.clock()
    default_batch_store().claim_line(batch_id, 1, "OTHER", now, now + 100, expires_at=0)
    (m,) = take_items(batches)
    with pytest.raises(RetryLater) as e:
        jobs.worker.process(msg(m), receive_count=1, remaining_s=60)
    assert 99 <= e.value.delay_s <= 102
    # On its last delivery a duplicate is dropped: the holder's own message answers for it.
    jobs.worker.process(msg(m), receive_count=5, remaining_s=60)
    assert default_batch_store().get_line(batch_id, 1).outcome is None
    assert batches.shuxun.requests == 0


def test_an_item_is_not_started_without_time_to_finish_it(batches):
    batch_id = split(batches, "late", compare_line(1) + "\n")
    (m,) = take_items(batches)
    with pytest.raises(RetryLater) as e:
        default_jobs().worker.process(msg(m), receive_count=1, remaining_s=2)
    assert e.value.delay_s == 0
    assert default_batch_store().get_line(batch_id, 1) is None  # not even claimed
    assert batches.shuxun.requests == 0


def test_retryable_errors_go_back_until_the_last_delivery_records_them(batches, monkeypatch):
    batch_id = split(batches, "retry", compare_line(1, vendor="kuaidi100") + "\n")
    (m,) = take_items(batches)
    jobs, store = default_jobs(), default_batch_store()
    monkeypatch.setattr(jobs.ctx.cfg, "batch_retry_base_s", 4.0)
    for receive in (1, 2, 3):
        with pytest.raises(RetryLater) as e:
            jobs.worker.process(msg(m), receive_count=receive, remaining_s=60)
        assert e.value.reason == "VENDOR_UNAVAILABLE"
        assert 2 * 2 ** (receive - 1) <= e.value.delay_s <= 4 * 2 ** (receive - 1)  # doubling, with jitter
        line = store.get_line(batch_id, 1)
        assert line.outcome is None and line.lease_until is None  # given back, not held
        assert line.last_error.code == "VENDOR_UNAVAILABLE" and line.attempts == receive
    jobs.worker.process(msg(m), receive_count=5, remaining_s=60)  # FACEGATE_BATCH_MAX_RECEIVES
    line = store.get_line(batch_id, 1)
    assert line.outcome.status == "error" and line.outcome.error.code == "VENDOR_UNAVAILABLE"
    assert line.outcome.error.retryable is True and line.outcome.caller_id == "c-1"
    assert not batches.local.finished("retry")  # the report is written once per invocation...
    jobs.worker.report_touched()
    assert batches.local.finished("retry")  # ...when the handler is done with its records


def test_the_worker_backs_off_through_the_message_visibility(batches, monkeypatch):
    split(batches, "backoff", compare_line(1, vendor="kuaidi100") + "\n")
    (m,) = take_items(batches)
    jobs = default_jobs()
    seen = []
    monkeypatch.setattr(jobs.worker, "_set_visibility", lambda arn, receipt, delay: seen.append((arn, receipt, delay)))
    monkeypatch.setattr(jobs.worker, "_backoff", lambda receive_count: 42.0)
    queue = batches.local.queues["ItemQueue"]
    with pytest.raises(RetryLater):
        jobs.worker.handle_record(m["Body"], 1, 60.0, m["ReceiptHandle"], queue.arn)
    assert seen == [(queue.arn, m["ReceiptHandle"], 42.0)]
    assert jobs.worker._queue_url(queue.arn) == queue.url  # FACEGATE_BATCH_QUEUE_URL names this queue


def test_a_retry_waits_at_least_for_the_vendors_cooldown(batches):
    class Health:
        def health(self, vendor):
            from facegate.health import VendorHealth

            return VendorHealth(vendor, "open", 5, open_until=__import__("time").time() + 25)

    from facegate.batch_jobs import BatchJobs
    from facegate.batch_jobs.context import BatchContext
    from facegate.errors import VendorUnavailable

    worker = BatchJobs(BatchContext(cooldowns=Health())).worker
    assert 24 <= worker._retry_delay(VendorUnavailable("cooling", vendor="shuxun"), 1) <= 26
    assert worker._retry_delay(VendorUnavailable("no vendor"), 1) == 0.0  # FACEGATE_BATCH_RETRY_BASE_S=0 here


def test_messages_that_are_no_item_or_of_no_batch_are_dropped(batches):
    jobs = default_jobs()
    jobs.worker.handle_record("not json", 1, 60.0, None, "arn:aws:sqs:us-east-1:123456789012:q")
    jobs.worker.process(ItemMessage(batch_id="0" * 24, line=1, start=0, end=10), receive_count=1)
    assert batches.shuxun.requests == 0


def test_lines_too_long_or_gone_become_error_lines(batches):
    big = json.dumps({"caller_id": "big", "image1": {"base64": "A" * (3 * 1024 * 1024)}, "image2": {"base64": "B"}})
    text = compare_line(1) + "\n" + big + "\n" + compare_line(3) + "\n"
    batch_id = split(batches, "gone", text)
    items = take_items(batches)
    jobs = default_jobs()
    jobs.worker.process(msg(items[1]), receive_count=1, remaining_s=60)
    line = default_batch_store().get_line(batch_id, 2)
    assert line.outcome.error.code == "INVALID_REQUEST" and "longer than 2 MiB" in line.outcome.error.message
    # The manifest is replaced mid-run: the rest of this batch cannot be read any more.
    batches.upload_manifest("gone", "different\n")
    jobs.worker.process(msg(items[2]), receive_count=1, remaining_s=60)
    line = default_batch_store().get_line(batch_id, 3)
    assert line.outcome.error.code == "MANIFEST_UNREADABLE"
    assert batches.shuxun.requests == 0


def test_the_dead_letter_drain(batches):
    batch_id = split(batches, "dead", "\n".join(compare_line(i, vendor="kuaidi100") for i in (1, 2, 3)) + "\n")
    items = take_items(batches)
    jobs, store = default_jobs(), default_batch_store()
    sqs = boto3.client("sqs")

    # Line 1 was never started (it only rode along with a crashing line): one more round.
    jobs.drain.handle_record(items[0]["Body"])
    assert store.get_line(batch_id, 1).redrives == 1
    (again,) = take_items(batches)
    assert again["Body"] == items[0]["Body"] and again["Attributes"]["ApproximateReceiveCount"] == "1"
    # Its second time in the dead-letter queue ends it.
    jobs.drain.handle_record(items[0]["Body"])
    line = store.get_line(batch_id, 1)
    assert line.outcome.error.code == "ITEM_NOT_PROCESSED" and line.outcome.caller_id == "c-1"

    # Line 2 failed on every delivery it was tried: recorded at once, naming the last error.
    with pytest.raises(RetryLater):
        jobs.worker.process(msg(items[1]), receive_count=1, remaining_s=60)
    jobs.drain.handle_record(items[1]["Body"])
    line = store.get_line(batch_id, 2)
    assert line.outcome.error.code == "ITEM_NOT_PROCESSED"
    assert "VENDOR_UNAVAILABLE" in line.outcome.error.message and line.outcome.error.vendor == "kuaidi100"

    # Line 3 is leased by a live worker: the drain waits for it rather than racing it.
    now = jobs.clock()
    store.claim_line(batch_id, 3, "LIVE", now, now + 30, expires_at=0)
    with pytest.raises(RetryLater):
        jobs.drain.handle_record(items[2]["Body"])
    jobs.clock = lambda: now + 30 + LEASE_MARGIN_S
    jobs.drain.handle_record(items[2]["Body"])
    assert store.get_line(batch_id, 3).outcome.error.code == "ITEM_NOT_PROCESSED"

    # Every line has an outcome, so the drain wrote the report.
    assert batches.local.finished("dead")
    assert [r["error"]["code"] for r in batches.report("dead")] == ["ITEM_NOT_PROCESSED"] * 3
    logged = [
        r for r in batches.results_log() if r.get("batch_id") == batch_id and r["error_code"] == "ITEM_NOT_PROCESSED"
    ]
    assert sorted(int(r["batch_line"]) for r in logged) == [1, 2, 3]
    assert not sqs.receive_message(QueueUrl=batches.local.queues["ItemQueue"].url).get("Messages")


def test_an_unexpected_failure_on_the_last_delivery_still_ends_the_line(batches, monkeypatch):
    batch_id = split(batches, "oops", compare_line(1) + "\n" + compare_line(2) + "\n")
    items = take_items(batches)
    jobs, store = default_jobs(), default_batch_store()

    def boom(request, caller):
        raise RuntimeError("a bug")

    # Line 1: a bug inside the service. Retried while deliveries remain, then recorded.
    with monkeypatch.context() as m:
        m.setattr(jobs.ctx.operations, "compare", boom)
        with pytest.raises(RuntimeError):
            jobs.worker.process(msg(items[0]), receive_count=1, remaining_s=60)
        line = store.get_line(batch_id, 1)
        assert line.outcome is None and line.lease_until is None  # given back at once
        jobs.worker.process(msg(items[0]), receive_count=5, remaining_s=60)
    line = store.get_line(batch_id, 1)
    assert line.outcome.error.code == "INTERNAL_ERROR" and line.outcome.caller_id == "c-1"

    # Line 2: the vendor answered, but storing the outcome failed on the last delivery:
    # the answer is taken from the results log rather than lost (or asked for again).
    complete_line = type(store).complete_line
    failures = []

    def flaky(self, *args, **kw):
        if not failures:
            failures.append(1)
            raise ConnectionError("DynamoDB went away")
        return complete_line(self, *args, **kw)

    monkeypatch.setattr(type(store), "complete_line", flaky)
    jobs.worker.process(msg(items[1]), receive_count=5, remaining_s=60)
    line = store.get_line(batch_id, 2)
    assert line.outcome.status == "ok" and line.recovered and line.outcome.caller_id == "c-2"
    assert batches.shuxun.billed == 1

    log = [r for r in batches.results_log() if r.get("batch_id") == batch_id]
    # The stand-in bug struck before the service could log anything: the give-up logged line 1.
    assert sorted((int(r["batch_line"]), r["status"], r.get("error_code")) for r in log) == [
        (1, "error", "INTERNAL_ERROR"),
        (2, "ok", None),
    ]


def _receive_item(batches) -> list[dict]:
    return (
        boto3.client("sqs")
        .receive_message(QueueUrl=batches.local.queues["ItemQueue"].url, AttributeNames=["All"])
        .get("Messages", [])
    )


def test_a_retried_item_is_really_hidden_for_its_backoff(batches, monkeypatch):
    """Through the worker function and moto's SQS, nothing mocked in between: the vendor
    is down (retryable), so the message must stay invisible for the backoff, then come
    back. 1 s base: a first delivery's backoff is 0.5–1 s, which SQS's whole seconds
    round up to 1 (truncated, it was 0: retried at once)."""
    import time

    batch_id = split(batches, "hidden", compare_line(1, vendor="kuaidi100") + "\n")  # kuaidi100 is a closed port here
    monkeypatch.setattr(default_jobs().ctx.cfg, "batch_retry_base_s", 1.0)
    assert batches.local.worker.poll() == 1
    hidden_at = time.monotonic()
    assert _receive_item(batches) == []  # not deleted (reported failed) and not visible yet
    assert batches.queue_depth("ItemQueue") == 1
    back: list[dict] = []
    while not back and time.monotonic() - hidden_at < 4:
        time.sleep(0.1)
        back = _receive_item(batches)
    waited = time.monotonic() - hidden_at
    assert back, "the retried item never came back"
    assert 0.9 <= waited <= 2.5
    assert back[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    line = default_batch_store().get_line(batch_id, 1)
    assert line.outcome is None and line.last_error.code == "VENDOR_UNAVAILABLE"


def test_a_failed_visibility_change_is_counted_and_the_item_still_fails(batches, monkeypatch, caplog):
    """If the backoff cannot be set, the item must still be reported failed (so SQS
    redelivers it after the queue's own timeout), and the failure must be seen."""
    from botocore.exceptions import ClientError

    import facegate.batch_jobs.work as work

    split(batches, "unhidden", compare_line(1, vendor="kuaidi100") + "\n")
    jobs = default_jobs()
    sqs = jobs.ctx.sqs

    def refuse(**kw):
        raise ClientError({"Error": {"Code": "ReceiptHandleIsInvalid", "Message": "no"}}, "ChangeMessageVisibility")

    monkeypatch.setattr(sqs, "change_message_visibility", refuse)
    counted: list[str] = []
    monkeypatch.setattr(work, "count", counted.append)
    failures: list[dict] = []
    handler = batches.local.worker.handler

    def spy(event, context):
        result = handler(event, context)
        failures.extend(result["batchItemFailures"])
        return result

    monkeypatch.setattr(batches.local.worker, "handler", spy)
    with caplog.at_level("WARNING"):
        assert batches.local.worker.poll() == 1
    assert len(failures) == 1  # reported failed: SQS redelivers it, nothing is lost
    assert "BatchVisibilityChangesFailed" in counted and "BatchItemsRetried" in counted
    assert any("could not change a message's visibility" in r.getMessage() for r in caplog.records)
    assert batches.queue_depth("ItemQueue") == 1
