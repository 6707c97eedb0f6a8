"""The dead-letter drain: a message that used up its deliveries still ends as an
outcome. A manifest fails its batch; a line no worker ever started gets one more round;
any other line ends with what the results log says it got, else ``ITEM_NOT_PROCESSED``."""

from __future__ import annotations

import json

from facegate.batch import BatchFailed, ItemMessage, ItemNotProcessed, ManifestRef
from facegate.batch_jobs.context import MAX_REDRIVES, BatchContext, RetryLater, count
from facegate.batch_jobs.lines import Lines
from facegate.batch_jobs.report import Reporter
from facegate.batch_jobs.split import manifest_refs
from facegate.batch_records import Claim
from facegate.errors import InternalError
from facegate.ids import new_request_id
from facegate.observability import logger


class Drain:
    def __init__(self, ctx: BatchContext, lines: Lines, reporter: Reporter):
        self.ctx = ctx
        self.lines = lines
        self.reporter = reporter

    def handle_record(self, body: str, remaining_s: float = 60.0) -> None:
        """A message that used up its deliveries, from either dead-letter queue."""
        try:
            data = json.loads(body)
        except ValueError:
            logger.error("unreadable dead letter; dropped")
            return
        if isinstance(data, dict) and ("Records" in data or "Event" in data):
            for ref in manifest_refs(body):
                self._dead_manifest(ref)
            return
        try:
            msg = ItemMessage.model_validate(data)
        except ValueError:
            logger.error("dead letter of unknown shape; dropped")
            return
        self._dead_item(msg, remaining_s)

    def _dead_manifest(self, ref: ManifestRef) -> None:
        if ref.name is None or ref.format is None:
            return
        _, meta = self.ctx.store.create_batch(ref, self.ctx.clock())
        if meta.status != "splitting":
            return  # it was split after all (the dead letter is a late duplicate)
        self.reporter.fail_batch(
            meta,
            BatchFailed(
                f"the manifest could not be split after {self.ctx.cfg.batch_max_receives} deliveries; "
                f"{meta.enqueued} item(s) had been queued"
            ),
        )

    def _dead_item(self, msg: ItemMessage, remaining_s: float) -> None:
        if self._redrive(msg):
            return
        now = self.ctx.clock()
        request_id = new_request_id()
        claim = self.lines.claim(msg, request_id, remaining_s)
        if claim.state == "done":
            self.reporter.maybe_report(msg.batch_id)
            return
        if claim.state == "busy":
            raise RetryLater("a worker still holds the line", (claim.lease_until or now) - now + 1)
        try:
            self._bury(msg, claim, request_id)
        except Exception:
            self.lines.release(msg, request_id, InternalError("internal error"), billed=(0, 0))
            raise
        count("BatchItemsDeadLettered")
        self.reporter.maybe_report(msg.batch_id)

    def _redrive(self, msg: ItemMessage) -> bool:
        """A line no worker ever started used up its deliveries only by riding in
        batches whose worker died on another line: give it one more round, in a
        message of its own. A line that was started (and so may be the one that kills
        its worker) is not redriven."""
        line = self.ctx.store.get_line(msg.batch_id, msg.line)
        if line is not None and (line.done or line.attempts > 0 or line.redrives >= MAX_REDRIVES):
            return False
        if not self.ctx.cfg.batch_queue_url:
            return False
        self.ctx.sqs.send_message(QueueUrl=self.ctx.cfg.batch_queue_url, MessageBody=msg.model_dump_json())
        self.ctx.store.count_redrive(msg.batch_id, msg.line, expires_at=self.ctx.expires(self.ctx.clock()))
        count("BatchItemsRedriven")
        logger.info("batch item redriven", extra={"batch_id": msg.batch_id, "line": msg.line})
        return True

    def _bury(self, msg: ItemMessage, claim: Claim, request_id: str) -> None:
        """The dead item's outcome: recovered from the results log, else an error."""
        if self.lines.complete_recovered(msg, claim.previous_request_ids):
            return
        last = f"; the last attempt failed with {claim.last_error.code}" if claim.last_error else ""
        error = ItemNotProcessed(
            f"the item was not processed after {self.ctx.cfg.batch_max_receives} deliveries{last}",
            vendor=claim.last_error.vendor if claim.last_error else None,
        )
        self.lines.fail(msg, request_id, error)
