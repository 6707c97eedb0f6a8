"""Every batch function invoked with its sample event from events/ (what `sam local
invoke <Function> -e events/<name>.json` sends), against the emulated stack."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3

from facegate_local.lambda_runtime import invoke, lambda_context, load_handler

EVENTS = Path(__file__).resolve().parents[3] / "events"
# The manifest events/batch_splitter.json announces (its eTag is this content's MD5).
SAMPLE = (
    b'{"caller_id": "sample-1", "vendor": "shuxun", "image1": {"s3": {"key": "photos/obama.jpg"}}, '
    b'"image2": {"s3": {"key": "photos/obama2.jpg"}}}\n'
    b'{"caller_id": "sample-2", "vendor": "shuxun", "image1": {"s3": {"key": "photos/obama.jpg"}}, '
    b'"image2": {"url": "https://img.example/b.jpg"}}\n'
)


def event(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


def run(function: str, name: str) -> dict:
    return load_handler(f"functions/{function}")(event(name), lambda_context(f"facegate-{function}", timeout_s=60))


def test_the_sample_events_drive_a_batch(dev_batches):
    s3 = event("batch_splitter")["Records"][0]
    notification = json.loads(s3["body"])["Records"][0]["s3"]
    assert notification["bucket"]["name"] == dev_batches.bucket
    assert notification["object"]["eTag"] == hashlib.md5(SAMPLE).hexdigest()  # noqa: S324 - S3's ETag
    dev_batches.upload_manifest("sample", SAMPLE)

    # The splitter: the batch exists, both items are queued.
    assert run("batch_splitter", "batch_splitter") == {"batchItemFailures": []}
    worker_body = json.loads(event("batch_worker")["Records"][0]["body"])
    batch_id = worker_body["batch_id"]
    meta = dev_batches.local.meta(batch_id)
    assert meta is not None and meta.status == "running" and meta.total == 2
    assert dev_batches.queue_depth("ItemQueue") == 2

    # The worker, with line 1's message: answered by the vendor, stored.
    assert run("batch_worker", "batch_worker") == {"batchItemFailures": []}
    assert dev_batches.shuxun.billed == 1
    status, body = dev_batches.get_batch(batch_id)
    assert status == 200 and body["done"] == 1 and body["total"] == 2 and body["status"] == "running"

    # The dead-letter drain, with line 2's message: never started, so it gets another round.
    assert run("batch_dlq", "batch_dlq") == {"batchItemFailures": []}
    assert dev_batches.queue_depth("ItemQueue") == 3

    # The progress route, with the sample API event.
    status, _, body = invoke(load_handler("functions/batches"), event("batches"), "facegate-batches")
    assert status == 200 and body["batch_id"] == batch_id and body["done"] == 1

    # And the rest of the batch runs to its report.
    meta = dev_batches.run("sample")
    assert meta.status == "done"
    assert [(r["line"], r["status"], r["caller_id"]) for r in dev_batches.report("sample")] == [
        (1, "ok", "sample-1"),
        (2, "ok", "sample-2"),
    ]
    assert dev_batches.shuxun.billed == 2
    assert not boto3.client("sqs").receive_message(QueueUrl=dev_batches.local.queues["ItemDLQ"].url).get("Messages")
