"""The splitter: one ManifestQueue message (an S3 event) → the manifest read once, the
batch's meta item with ``total``, one small ItemQueue message per line (its line
number and byte range)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from facegate.batch import MalformedManifest, ManifestRef, ManifestUnreadable
from facegate.batch_jobs.context import CHECKPOINT_EVERY, CHUNK, SEND_BATCH, BatchContext, Static, count
from facegate.batch_jobs.report import Reporter
from facegate.errors import InternalError
from facegate.manifest import ManifestScanner, Span
from facegate.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef


class Splitter:
    def __init__(self, ctx: BatchContext, reporter: Reporter):
        self.ctx = ctx
        self.reporter = reporter

    def handle_record(self, body: str) -> list[str]:
        """One ManifestQueue message: an S3 event notification. Returns the batch ids
        it started (or found already started)."""
        started = []
        for ref in manifest_refs(body):
            batch_id = self.split(ref)
            if batch_id:
                started.append(batch_id)
        return started

    def split(self, ref: ManifestRef) -> str | None:
        if ref.name is None or ref.format is None:
            logger.info("not a manifest; ignored", extra={"key_suffix": ref.key[-16:]})
            return None
        store = self.ctx.store
        created, meta = store.create_batch(ref, self.ctx.clock())
        log = {"batch_id": ref.batch_id, "batch_name": ref.name}
        if meta.status == "failed":  # again: its report may not have been written
            self.reporter.write_failure(meta)
            return meta.batch_id
        if meta.status != "splitting":
            logger.info("batch already split; duplicate event ignored", extra=log)
            return meta.batch_id
        if created:
            logger.info("batch started", extra=log)
            count("BatchesStarted")
        try:
            spans, header = self._scan(ref)
        except (MalformedManifest, ManifestUnreadable) as e:
            logger.info("manifest refused", extra={**log, "error_code": e.code})
            self.reporter.fail_batch(meta, e)
            return meta.batch_id
        store.set_total(meta.batch_id, len(spans), header)
        self.ctx.remember(meta.batch_id, Static(ref, ref.format, header))
        self._enqueue(meta.batch_id, spans, start=meta.enqueued)
        store.mark_running(meta.batch_id, len(spans))
        logger.info("batch queued", extra={**log, "items": len(spans)})
        # Duplicates of an earlier, interrupted split may have finished everything already.
        self.reporter.maybe_report(meta.batch_id)
        return meta.batch_id

    def _scan(self, ref: ManifestRef) -> tuple[list[Span], list[str] | None]:
        assert ref.format is not None
        scanner = ManifestScanner(ref.format, max_items=self.ctx.cfg.batch_max_items)
        obj = self.ctx.get_manifest(ref)
        spans: list[Span] = []
        for chunk in obj["Body"].iter_chunks(CHUNK):
            spans.extend(scanner.feed(chunk))
        spans.extend(scanner.finish())
        return spans, scanner.header

    def _enqueue(self, batch_id: str, spans: list[Span], start: int = 0) -> None:
        url = self.ctx.cfg.batch_queue_url
        if not url:
            raise InternalError("FACEGATE_BATCH_QUEUE_URL is not set")
        for i in range(start, len(spans), SEND_BATCH):
            chunk = spans[i : i + SEND_BATCH]
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": str(n), "MessageBody": s.message(batch_id).model_dump_json()} for n, s in enumerate(chunk)
            ]
            for attempt in range(4):
                failed = self.ctx.sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed") or []
                if not failed:
                    break
                ids = {f["Id"] for f in failed}
                entries = [e for e in entries if e["Id"] in ids]
                time.sleep(0.1 * 2**attempt)
            else:
                raise InternalError(f"{len(entries)} item messages could not be queued")
            done = i + len(chunk)
            if done % CHECKPOINT_EVERY == 0 and done < len(spans):
                self.ctx.store.set_enqueued(batch_id, done)


def manifest_refs(body: str) -> list[ManifestRef]:
    """The manifests an S3 event notification (as SQS delivers it) names. S3's test
    event and non-create events name none."""
    try:
        data = json.loads(body)
    except ValueError:
        logger.error("manifest message is not JSON; dropped")
        return []
    refs = []
    for r in (data.get("Records") or []) if isinstance(data, dict) else []:
        if r.get("eventSource") != "aws:s3" or not str(r.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = r.get("s3") or {}
        obj = s3.get("object") or {}
        refs.append(
            ManifestRef(
                bucket=(s3.get("bucket") or {}).get("name", ""),
                # S3 URL-encodes keys in notifications (a space arrives as '+').
                key=unquote_plus(obj.get("key", "")),
                version_id=obj.get("versionId") or None,
                etag=obj.get("eTag") or None,
            )
        )
    return refs
