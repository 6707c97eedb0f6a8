"""Upload a manifest → S3 notification (moto) → ManifestQueue → splitter → ItemQueue →
worker (batches of 10, partial failures) → report and summary; plus the progress API,
duplicate S3 events, CSV manifests and manifests that are not manifests."""

from __future__ import annotations

import json
import os

import boto3

from facegate.batch import ManifestRef

from .batchkit import compare_line, verify_line


def test_a_small_batch_end_to_end_with_progress(batches):
    lines = [
        compare_line(1),
        "",  # blank lines are not items
        verify_line(3),
        "{not json",
        compare_line(5, image2={"s3": {"key": "photos/nobody.jpg"}}),
        compare_line(6, image2={"url": "https://img.example/b.jpg"}),
    ]
    batches.upload_manifest("small", "\n".join(lines) + "\n")
    meta = batches.run("small")

    assert meta.status == "done" and meta.total == 5 and meta.done == 5
    report = batches.report("small")
    assert [r["line"] for r in report] == [1, 3, 4, 5, 6]
    by_line = {r["line"]: r for r in report}
    assert by_line[1]["status"] == "ok" and by_line[1]["caller_id"] == "c-1"
    assert by_line[1]["result"]["vendor"] == "shuxun" and by_line[1]["result"]["decision"] == "match"
    assert by_line[3]["operation"] == "verify_identity" and by_line[3]["result"]["name_masked"] == "张*"
    assert by_line[4]["error"]["code"] == "MALFORMED_JSON" and "result" not in by_line[4]
    assert by_line[5]["error"]["code"] == "IMAGE_UNAVAILABLE" and by_line[5]["caller_id"] == "c-5"
    assert by_line[6]["status"] == "ok"
    # Identities appear masked only, anywhere the batch wrote.
    text = batches.report_text("small") + json.dumps(batches.line_items(meta.batch_id), default=str)
    assert "张三" not in text and "110105199003071239" not in text

    summary = batches.summary("small")
    assert summary["status"] == "done" and summary["batch_id"] == meta.batch_id
    assert summary["total"] == 5 and summary["ok"] == 3 and summary["errors"] == 2
    assert summary["decisions"] == {"match": 3, "no_match": 0, "uncertain": 0}
    assert summary["error_codes"] == {"IMAGE_UNAVAILABLE": 1, "MALFORMED_JSON": 1}
    assert summary["operations"] == {"compare": 3, "verify_identity": 1}  # line 4 names none
    assert summary["billed_calls"] == batches.shuxun.billed + batches.jumei.billed == 3
    assert summary["report"] == "results/small.jsonl"

    # Every item's outcome is in the results log, under its batch id and line.
    logged = {(r.get("batch_id"), int(r["batch_line"])) for r in batches.results_log() if r.get("batch_id")}
    assert logged == {(meta.batch_id, n) for n in (1, 3, 4, 5, 6)}

    status, body = batches.get_batch(meta.batch_id)
    assert status == 200
    assert body["status"] == "done" and body["total"] == 5 and body["done"] == 5 and body["percent"] == 100.0
    assert body["ok"] == 3 and body["errors"] == 2 and body["decisions"]["match"] == 3
    assert body["report"] == "results/small.jsonl" and body["summary"] == "results/small.summary.json"
    # Not by the manifest's name: a name is guessable, the id is the handle.
    status, by_name = batches.get_batch("small")
    assert status == 404 and by_name["error"]["code"] == "NOT_FOUND"
    assert by_name["error"]["message"] == "no batch with id 'small'"


def test_progress_while_it_runs_and_404_for_an_unknown_batch(batches):
    batches.upload_manifest("progress", "\n".join(compare_line(i) for i in range(1, 41)) + "\n")
    seen = []

    def look():
        meta = batches.local.meta("progress")
        if meta is not None and meta.total and 0 < meta.done < meta.total and not seen:
            seen.append(batches.get_batch(meta.batch_id))

    meta = batches.run("progress", between_polls=look)
    assert meta.status == "done"
    assert seen, "never looked while items were in flight"
    status, body = seen[0]
    assert status == 200 and body["status"] == "running" and body["total"] == 40
    assert 0 < body["done"] < 40 and body["remaining"] == 40 - body["done"]
    assert body["report"] is None and body["finished_at"] is None

    status, body = batches.get_batch("0123456789abcdef01234567")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    status, body = batches.get_batch("no-such-manifest")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"


def test_a_repeated_s3_event_does_not_start_the_batch_twice(batches):
    put = batches.upload_manifest("twice", "\n".join(compare_line(i) for i in range(1, 8)) + "\n")
    meta = batches.run("twice")
    assert meta.status == "done"
    billed = batches.shuxun.billed
    # S3 delivers the same notification again (at-least-once): same object, same batch.
    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": batches.bucket},
                    "object": {"key": "batches/twice.jsonl", "eTag": put["ETag"].strip('"')},
                },
            }
        ]
    }
    boto3.client("sqs").send_message(QueueUrl=batches.local.queues["ManifestQueue"].url, MessageBody=json.dumps(event))
    assert batches.local.pump_once() == 1  # the splitter took it...
    assert batches.queue_depth("ItemQueue") == 0  # ...and queued nothing
    assert batches.shuxun.billed == billed
    assert ManifestRef(batches.bucket, "batches/twice.jsonl", etag=put["ETag"]).batch_id == meta.batch_id


def test_a_csv_manifest(batches):
    csv_text = (
        "caller_id,operation,image1,image2,image,name,id_number,vendor,security_level\r\n"
        "a,compare,photos/obama.jpg,photos/obama2.jpg,,,,shuxun,high\r\n"
        '"multi\r\nline",compare,photos/obama.jpg,https://img.example/x.jpg,,,,shuxun,\r\n'
        "c,verify_identity,,,photos/obama.jpg,张三,110105199003071239,jumei,\r\n"
        "d,compare,photos/obama.jpg,,,,,shuxun,\r\n"
        "e,compare,photos/obama.jpg,photos/obama2.jpg,,,,shuxun,normal,extra\r\n"
    )
    batches.upload_manifest("sheet", csv_text.encode(), fmt="csv")
    meta = batches.run("sheet")
    assert meta.status == "done" and meta.total == 5
    report = batches.report("sheet")
    # Numbered by the physical line each item starts on; the header is line 1.
    assert [r["line"] for r in report] == [2, 3, 5, 6, 7]
    assert [r["caller_id"] for r in report] == ["a", "multi\r\nline", "c", "d", "e"]
    assert report[0]["status"] == "ok" and report[0]["result"]["security_level"] == "high"
    assert report[1]["status"] == "ok"
    assert report[2]["status"] == "ok" and report[2]["result"]["id_number_masked"] == "1101**********1239"
    assert report[3]["error"]["code"] == "INVALID_REQUEST" and "image2" in report[3]["error"]["message"]
    assert report[4]["error"]["code"] == "INVALID_REQUEST" and "fields" in report[4]["error"]["message"]


def test_a_malformed_manifest_gets_a_report_that_says_why(batches):
    cases = {
        "junk": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "jsonl", "not text"),
        "empty": (b"", "jsonl", "no items"),
        "blank": (b"\n  \n\r\n", "jsonl", "no items"),
        "latin1": ("caf\xe9\n".encode("latin-1"), "jsonl", "not UTF-8"),
        "columns": (b"caller_id,imgae1,image2\na,b.jpg,c.jpg\n", "csv", "unknown CSV column"),
        "noheader": (b"photos/a.jpg\n", "csv", "unknown CSV column"),
        "unclosed": (b'caller_id,image1,image2\n"a,b.jpg,c.jpg\n', "csv", "never closed"),
    }
    for name, (data, fmt, _) in cases.items():
        batches.upload_manifest(name, data, fmt=fmt)
    for name, (_, _, why) in cases.items():
        meta = batches.run(name)
        assert meta.status == "failed", name
        summary = batches.summary(name)
        assert summary["status"] == "failed" and summary["total"] == 0, name
        assert summary["error"]["code"] == "MALFORMED_MANIFEST" and why in summary["error"]["message"], name
        (line,) = batches.report(name)
        assert line["line"] == 0 and line["status"] == "error" and line["error"] == summary["error"], name
        status, body = batches.get_batch(meta.batch_id)
        assert status == 200 and body["status"] == "failed" and body["error"]["code"] == "MALFORMED_MANIFEST"
    assert batches.queue_depth("ItemQueue") == 0


def test_a_manifest_that_never_splits_fails_through_the_dead_letter_queue(batches):
    # A manifest event the splitter never managed (say, access denied five times) ends
    # in ManifestDLQ; the drain function fails the batch with a report saying so.
    batches.upload_manifest("stuck", compare_line(1) + "\n")
    sqs = boto3.client("sqs")
    queue = batches.local.queues["ManifestQueue"].url
    # Take the notification off the manifest queue and put it where the redrive would.
    while True:
        msgs = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            break
        for m in msgs:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            if "stuck" in m["Body"]:
                sqs.send_message(QueueUrl=batches.local.queues["ManifestDLQ"].url, MessageBody=m["Body"])
    meta = batches.run("stuck")
    assert meta.status == "failed"
    summary = batches.summary("stuck")
    assert summary["error"]["code"] == "BATCH_FAILED" and "could not be split" in summary["error"]["message"]
    assert batches.shuxun.billed == 0


def test_a_failed_batch_whose_report_could_not_be_written_gets_it_on_the_retry(batches, monkeypatch):
    from facegate.batch_jobs.report import Reporter

    put = Reporter._put
    calls = []

    def flaky_put(self, bucket, key, body, content_type):
        calls.append(key)
        if len(calls) == 1:
            raise ConnectionError("S3 went away")
        return put(self, bucket, key, body, content_type)

    monkeypatch.setattr(Reporter, "_put", flaky_put)
    batches.upload_manifest("flaky", b"\x00\x01 not a manifest")
    meta = batches.run("flaky")  # marked failed, but the report write failed: the message comes back
    assert meta.status == "failed"
    while batches.local.pump_once():
        pass
    assert batches.summary("flaky")["error"]["code"] == "MALFORMED_MANIFEST"
    (line,) = batches.report("flaky")
    assert line["error"]["code"] == "MALFORMED_MANIFEST"
    assert calls.count("results/flaky.jsonl") == 2


def test_the_batch_functions_print_no_metric_warnings_where_metrics_are_off(batches):
    """Locally (POWERTOOLS_METRICS_DISABLED) nothing is counted, and Powertools' flush
    warned "No application metrics to publish" after every invocation: one stderr line per
    invocation of each worker process of the benchmark."""
    import warnings

    assert os.environ["POWERTOOLS_METRICS_DISABLED"] == "true"
    batches.upload_manifest("quiet", "\n".join([compare_line(1), "{not json", compare_line(3)]) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meta = batches.run("quiet")
    assert meta.status == "done" and meta.done == 3
    assert [str(w.message) for w in caught if "metrics" in str(w.message)] == []


def test_the_worker_reads_the_lines_of_an_invocation_in_one_ranged_get(batches):
    """A line's message carries its byte range only; the worker read each line with a GET
    of its own, on top of the two images: 3 GETs per compare. Now one per invocation."""
    from facegate.batch_jobs import default_jobs

    ranged = []
    default_jobs().ctx.s3.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: ranged.append(params.get("Range"))
    )
    batches.upload_manifest("twenty", "\n".join(compare_line(n) for n in range(1, 21)) + "\n")
    meta = batches.run("twenty")
    assert meta.status == "done" and meta.done == 20
    report = batches.report("twenty")
    assert [(r["line"], r["caller_id"], r["status"]) for r in report] == [(n, f"c-{n}", "ok") for n in range(1, 21)]
    invocations = batches.local.worker.invocations
    assert 2 <= invocations <= 4  # ten messages at a time
    assert len([r for r in ranged if r]) == invocations
