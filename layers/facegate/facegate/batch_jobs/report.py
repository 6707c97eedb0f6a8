"""The report: ``results/<name>.jsonl`` and ``results/<name>.summary.json``, written
once every line is done (by whoever finishes the last one), or with line 0 saying why
when the batch as a whole failed."""

from __future__ import annotations

import tempfile
from typing import Literal

from facegate import batch
from facegate.batch import BatchFailed, BatchSummary, ReportLine, SummaryBuilder, error_body
from facegate.batch_jobs.context import REPORT_LEASE_S, BatchContext, count
from facegate.batch_records import BatchMeta, iso
from facegate.errors import FacegateError, InternalError
from facegate.models import ErrorBody
from facegate.observability import logger


class Reporter:
    def __init__(self, ctx: BatchContext):
        self.ctx = ctx

    def maybe_report(self, batch_id: str) -> bool:
        """Write the report if every line is done and nobody else is writing it."""
        store = self.ctx.store
        meta = store.get_meta(batch_id)
        if meta is None or not meta.complete or meta.status not in ("splitting", "running", "reporting"):
            return False
        now = self.ctx.clock()
        if not store.claim_report(batch_id, now, now + REPORT_LEASE_S):
            return False
        self.write_report(meta)
        store.finish_report(batch_id, self.ctx.clock())
        count("BatchesCompleted")
        logger.info("batch report written", extra={"batch_id": batch_id, "items": meta.total})
        return True

    def write_report(self, meta: BatchMeta) -> None:
        builder = SummaryBuilder()
        written = 0
        with tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024) as f:
            for item in self.ctx.store.lines(meta.batch_id):
                if item.outcome_json is None:  # not done
                    raise InternalError(f"line {item.line} of batch {meta.batch_id} has no outcome yet")
                f.write(item.outcome_json.encode("utf-8") + b"\n")
                builder.add(item.state())
                written += 1
            if written != meta.total:
                raise InternalError(f"batch {meta.batch_id} has {written} finished lines, expected {meta.total}")
            f.seek(0)
            self.ctx.s3.upload_fileobj(
                f,
                meta.manifest.bucket,
                batch.report_key(meta.name),
                ExtraArgs={"ContentType": "application/x-ndjson"},
            )
        self._put_summary(meta, self._summary(meta, builder, self.ctx.clock(), status="done"))

    def fail_batch(self, meta: BatchMeta, error: FacegateError) -> None:
        """The batch as a whole failed: say why in the report and the summary."""
        if self.ctx.store.fail(meta.batch_id, error_body(error), self.ctx.clock()):
            count("BatchesFailed")
        meta = self.ctx.store.get_meta(meta.batch_id) or meta
        if meta.status == "failed":
            self.write_failure(meta)

    def write_failure(self, meta: BatchMeta) -> None:
        """A failed batch's report: line 0 says why, then any lines finished before it
        failed; the summary says why too. Idempotent: written again on any retry."""
        body = meta.error or error_body(BatchFailed("the batch failed"))
        done = [item for item in self.ctx.store.lines(meta.batch_id) if item.done]
        builder = SummaryBuilder()
        for item in done:
            builder.add(item.state())
        lines = [ReportLine(line=0, status="error", error=body).to_json(), *(i.outcome_json or "" for i in done)]
        report = ("\n".join(lines) + "\n").encode()
        self._put(meta.manifest.bucket, batch.report_key(meta.name), report, "application/x-ndjson")
        finished = meta.finished_at or self.ctx.clock()
        self._put_summary(meta, self._summary(meta, builder, finished, status="failed", error=body))

    def _summary(
        self,
        meta: BatchMeta,
        builder: SummaryBuilder,
        now: float,
        *,
        status: Literal["done", "failed"],
        error: ErrorBody | None = None,
    ) -> BatchSummary:
        return BatchSummary(
            batch_id=meta.batch_id,
            name=meta.name,
            status=status,
            manifest=meta.manifest_info(),
            report=batch.report_key(meta.name),
            total=meta.total or 0,
            created_at=iso(meta.created_at) or "",
            finished_at=iso(now) or "",
            duration_s=round(max(0.0, now - meta.created_at), 3),
            error=error,
            **builder.fields(),
        )

    def _put_summary(self, meta: BatchMeta, summary: BatchSummary) -> None:
        self._put(
            meta.manifest.bucket,
            batch.summary_key(meta.name),
            (summary.model_dump_json(indent=2) + "\n").encode(),
            "application/json",
        )

    def _put(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        self.ctx.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
