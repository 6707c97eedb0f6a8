"""Batches at work: the splitter, the worker, the dead-letter drain and the report.

S3 (``batches/<name>.jsonl|.csv``) → ManifestQueue → **splitter**: reads the manifest
once, writes the batch's meta item with ``total``, then queues one small message per
item (its line number and byte range) → ItemQueue → **worker**, one line per
message, with Powertools partial batch responses → each line's outcome in the batch
table and the results log → the worker that finishes the last line writes
``results/<name>.jsonl`` and ``results/<name>.summary.json``.

Delivery is at least once; processing is idempotent per (batch id, line):

1. *claim* the line (conditional: no outcome yet, no live lease) before anything
   else. A finished line is acknowledged without any vendor call; a line leased by
   a concurrent delivery is retried after the lease.
2. if earlier attempts left request ids, look them up in the **results log**: the
   service writes its record before it returns, so an attempt whose worker stopped
   after the vendor answered but before the outcome was stored is *recovered* from
   there, not asked again (and not billed again).
3. read the line (a ranged GET of the exact manifest version), parse it, call the
   service with ``Caller(batch_id=…, batch_line=…)``.
4. *complete*: one transaction writes the outcome only if the line has none and
   counts it on the batch.

What remains is the window inside the vendor call itself: a worker that dies after
sending the request but before the service logged the answer leaves no record, so
the line is asked again (at-least-once; the summary's ``billed_unknown`` and the
results log's ``attempts`` show it).

Retryable failures (rate limits, vendor unavailable, timeouts, our own errors) go
back to the queue with a growing visibility timeout (``FACEGATE_BATCH_RETRY_BASE_S``
doubled per delivery; at least until a vendor's cooldown ends). On the queue's last
delivery (``ApproximateReceiveCount`` = ``FACEGATE_BATCH_MAX_RECEIVES``, the redrive
policy's ``maxReceiveCount``) the error is recorded instead. A message that still
reaches the dead-letter queue (its worker crashed on the last delivery) is drained
by the DLQ function, which records ``ITEM_NOT_PROCESSED`` (or recovers the outcome
from the results log). So every line ends as a result or an error.
"""

from __future__ import annotations

import json
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote_plus

from facegate import batch
from facegate.batch import (
    BatchFailed,
    BatchSummary,
    ItemMessage,
    ItemNotProcessed,
    MalformedManifest,
    ManifestInfo,
    ManifestRef,
    ManifestScanner,
    ManifestUnreadable,
    ReportLine,
    Span,
    SummaryBuilder,
    error_body,
)
from facegate.batch_store import BatchMeta, BatchStore, Claim, default_batch_store, iso
from facegate.config import Settings, settings
from facegate.errors import CallerError, FacegateError, InternalError, InvalidRequest, NotFound
from facegate.ids import new_request_id
from facegate.models import CompareResponse, ErrorBody, Operation, VerifyIdentityResponse
from facegate.observability import logger, metrics

CHUNK = 1024 * 1024
SEND_BATCH = 10  # SendMessageBatch's limit
CHECKPOINT_EVERY = 1000  # items queued between enqueue checkpoints
LEASE_MARGIN_S = 10.0  # a lease outlives the invocation that took it by this much
REPORT_LEASE_S = 900.0
MIN_ITEM_S = 5.0  # below this much time left, an item is not started (it goes back)
PACING_MARGIN = 0.05
DEADLINE_MARGIN_S = 2.0  # an item's deadline leaves this much of the invocation for the rest
MAX_VISIBILITY_S = 900
MAX_REDRIVES = 1  # rounds a never-started line gets from the dead-letter drain


class Pacer:
    """Spaces one worker instance's calls to a rate-limited vendor so that all
    ``FACEGATE_BATCH_CONCURRENCY`` instances together stay under its
    ``FACEGATE_BATCH_VENDOR_RATES`` rate: each instance starts a call at most every
    concurrency / (rate x 0.95) seconds. State is per thread (a thread is an instance in
    the local emulation; in Lambda an instance has one). Only a line's first vendor is
    paced; fallbacks are not."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.sleep = sleep
        self.clock = clock
        self._local = threading.local()

    @staticmethod
    def interval(rate: float, concurrency: int) -> float:
        # 5 % under the instance's share: calls land at the vendor with some jitter, and
        # one over the limit costs a refused call and a retry.
        return concurrency / (rate * (1 - PACING_MARGIN))

    def wait(self, vendor: str, cfg: Settings) -> float:
        """Sleep until this instance may call ``vendor``; the seconds slept."""
        rate = cfg.batch_vendor_rates.get(vendor)  # type: ignore[call-overload]
        if not rate:
            return 0.0
        slots: dict[str, float] = self._local.__dict__.setdefault("next", {})
        now = self.clock()
        start = max(now, slots.get(vendor, now))
        slots[vendor] = start + self.interval(rate, cfg.batch_concurrency)
        if start > now:
            self.sleep(start - now)
        return start - now


class RetryLater(Exception):
    """This message should come back after ``delay_s`` (partial batch failure)."""

    def __init__(self, reason: str, delay_s: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = max(0.0, min(float(delay_s), MAX_VISIBILITY_S))


@dataclass(frozen=True)
class _Static:
    """The parts of a batch's meta item that never change once items are queued."""

    ref: ManifestRef
    format: str
    header: list[str] | None


def _retryable_codes() -> dict[str, bool]:
    """Error code → whether an error with it may succeed when retried."""
    out: dict[str, bool] = {}
    stack: list[type[FacegateError]] = [FacegateError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        out[cls.code] = out.get(cls.code, False) or bool(cls.retryable)
    return out


class BatchJobs:
    def __init__(
        self,
        cfg: Settings | None = None,
        store: BatchStore | None = None,
        service: Any = None,
        s3: Any = None,
        sqs: Any = None,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = cfg or settings()
        self.store = store or default_batch_store()
        self._service = service
        self._s3 = s3
        self._sqs = sqs
        self.clock = clock
        self._static: dict[str, _Static] = {}
        self._queue_urls: dict[str, str] = {}
        # Batches this invocation finished (or found finished) lines of: whether their
        # report is due is checked once per invocation, not once per line.
        self.touched: set[str] = set()
        self.pacer = Pacer()

    # --- lazily made clients ---------------------------------------------------------------

    @property
    def service(self):
        if self._service is None:
            from facegate.service import default_service

            self._service = default_service()
        return self._service

    @property
    def s3(self):
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    @property
    def sqs(self):
        if self._sqs is None:
            import boto3

            self._sqs = boto3.client("sqs")
        return self._sqs

    def _expires(self, now: float) -> int:
        return self.store.expiry(now)

    # ======================================================================================
    # splitter
    # ======================================================================================

    def handle_manifest_record(self, body: str) -> list[str]:
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
        now = self.clock()
        created, meta = self.store.create_batch(ref, now)
        log = {"batch_id": ref.batch_id, "batch_name": ref.name}
        if meta.status == "failed":  # again: its report may not have been written
            self._write_failure(meta)
            return meta.batch_id
        if meta.status != "splitting":
            logger.info("batch already split; duplicate event ignored", extra=log)
            return meta.batch_id
        if created:
            logger.info("batch started", extra=log)
            _count("BatchesStarted")
        try:
            spans, header = self._scan(ref)
        except (MalformedManifest, ManifestUnreadable) as e:
            logger.info("manifest refused", extra={**log, "error_code": e.code})
            self.fail_batch(meta, e)
            return meta.batch_id
        self.store.set_total(meta.batch_id, len(spans), header)
        self._static[meta.batch_id] = _Static(ref, ref.format, header)
        self._enqueue(meta.batch_id, spans, start=meta.enqueued)
        self.store.mark_running(meta.batch_id, len(spans))
        logger.info("batch queued", extra={**log, "items": len(spans)})
        # Duplicates of an earlier, interrupted split may have finished everything already.
        self.maybe_report(meta.batch_id)
        return meta.batch_id

    def _scan(self, ref: ManifestRef) -> tuple[list[Span], list[str] | None]:
        assert ref.format is not None
        scanner = ManifestScanner(ref.format, max_items=self.cfg.batch_max_items)
        obj = self._get(ref)
        spans: list[Span] = []
        for chunk in obj["Body"].iter_chunks(CHUNK):
            spans.extend(scanner.feed(chunk))
        spans.extend(scanner.finish())
        return spans, scanner.header

    def _get(self, ref: ManifestRef, byte_range: str | None = None) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
        if ref.version_id:
            kwargs["VersionId"] = ref.version_id
        elif ref.etag:
            kwargs["IfMatch"] = f'"{ref.etag.strip(chr(34))}"'
        if byte_range:
            kwargs["Range"] = byte_range
        try:
            return self.s3.get_object(**kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "NoSuchVersion", "PreconditionFailed", "412", "404", "InvalidRange"):
                raise ManifestUnreadable(
                    f"the manifest object is gone or was replaced before it was read ({code})"
                ) from None
            raise

    def _enqueue(self, batch_id: str, spans: list[Span], start: int = 0) -> None:
        url = self.cfg.batch_queue_url
        if not url:
            raise InternalError("FACEGATE_BATCH_QUEUE_URL is not set")
        for i in range(start, len(spans), SEND_BATCH):
            chunk = spans[i : i + SEND_BATCH]
            entries = [
                {"Id": str(n), "MessageBody": s.message(batch_id).model_dump_json()} for n, s in enumerate(chunk)
            ]
            for attempt in range(4):
                failed = self.sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed") or []
                if not failed:
                    break
                ids = {f["Id"] for f in failed}
                entries = [e for e in entries if e["Id"] in ids]
                time.sleep(0.1 * 2**attempt)
            else:
                raise InternalError(f"{len(entries)} item messages could not be queued")
            done = i + len(chunk)
            if done % CHECKPOINT_EVERY == 0 and done < len(spans):
                self.store.set_enqueued(batch_id, done)

    def fail_batch(self, meta: BatchMeta, error: FacegateError) -> None:
        """The batch as a whole failed: say why in the report and the summary."""
        if self.store.fail(meta.batch_id, error_body(error), self.clock()):
            _count("BatchesFailed")
        meta = self.store.get_meta(meta.batch_id) or meta
        if meta.status == "failed":
            self._write_failure(meta)

    def _write_failure(self, meta: BatchMeta) -> None:
        """A failed batch's report: line 0 says why, then any lines finished before it
        failed; the summary says why too. Idempotent: written again on any retry."""
        body = meta.error or error_body(BatchFailed("the batch failed"))
        done = [item for item in self.store.lines(meta.batch_id) if item.done]
        builder = SummaryBuilder()
        for item in done:
            builder.add(item.state())
        lines = [ReportLine(line=0, status="error", error=body).to_json(), *(i.outcome_json or "" for i in done)]
        report = ("\n".join(lines) + "\n").encode()
        self._put(meta.manifest.bucket, batch.report_key(meta.name), report, "application/x-ndjson")
        finished = meta.finished_at or self.clock()
        self._put_summary(meta, self._summary(meta, builder, finished, status="failed", error=body))

    # ======================================================================================
    # worker
    # ======================================================================================

    def handle_item_record(
        self, body: str, receive_count: int, remaining_s: float, receipt_handle: str | None, source_arn: str
    ) -> None:
        """One ItemQueue message. Raises (after setting the message's visibility) when
        it should come back later."""
        try:
            msg = ItemMessage.model_validate_json(body)
        except ValueError:
            logger.error("not an item message; dropped")
            _count("BatchMessagesDropped")
            return
        try:
            self.process_item(msg, receive_count=receive_count, remaining_s=remaining_s)
        except Exception as e:
            delay = e.delay_s if isinstance(e, RetryLater) else self._backoff(receive_count)
            reason = e.reason if isinstance(e, RetryLater) else type(e).__name__
            logger.info(
                "batch item retried later",
                extra={"batch_id": msg.batch_id, "line": msg.line, "reason": reason, "delay_s": round(delay, 2)},
            )
            _count("BatchItemsRetried")
            if receipt_handle:
                self._set_visibility(source_arn, receipt_handle, delay)
            raise

    def process_item(self, msg: ItemMessage, *, receive_count: int = 1, remaining_s: float = 60.0) -> None:
        final = receive_count >= self.cfg.batch_max_receives
        static = self._static_for(msg.batch_id)
        if static is None:
            logger.warning("item of an unknown batch; dropped", extra={"batch_id": msg.batch_id})
            return
        if remaining_s < MIN_ITEM_S:
            raise RetryLater("too little time left in this invocation", 0)
        now = self.clock()
        request_id = new_request_id()
        claim = self.store.claim_line(
            msg.batch_id,
            msg.line,
            request_id,
            now,
            now + remaining_s + LEASE_MARGIN_S,
            expires_at=self._expires(now),
        )
        if claim.state == "done":
            _count("BatchItemsDuplicate")
            self.touched.add(msg.batch_id)
            return
        if claim.state == "busy":
            if final:
                return  # the holder's own message is still in flight and answers for the line
            raise RetryLater("another delivery holds the line", (claim.lease_until or now) - now + 1)
        try:
            self._work(msg, static, claim, request_id, receive_count=receive_count, remaining_s=remaining_s)
        except RetryLater:
            raise
        except Exception as e:
            # Ours, not the item's: give the line back so a redelivery need not wait out
            # the lease; the service has logged the attempt if it got that far. Logged by
            # type and place only: a message could quote the line.
            logger.error(
                "batch item failed unexpectedly",
                extra={"batch_id": msg.batch_id, "line": msg.line, **_where(e)},
            )
            if final:
                self._give_up(msg, claim, request_id)
                return
            self._release(msg, request_id, InternalError("internal error"), billed=(0, 0))
            raise
        self.touched.add(msg.batch_id)

    def _give_up(self, msg: ItemMessage, claim: Claim, request_id: str) -> None:
        """The last delivery failed on our side: the outcome is whatever the service got
        (from the results log), else an internal error, logged there too."""
        recovered = self._recover((*claim.previous_request_ids, request_id), msg)
        if recovered is not None:
            self._complete(msg, recovered[0], billed=recovered[1], recovered=True)
            return
        error = InternalError("internal error while processing the item")
        parsed = self._peek(msg)
        try:
            self.service.store.get(request_id)
        except NotFound:
            from facegate.service import Caller

            caller = Caller(request_id=request_id, batch_id=msg.batch_id, batch_line=msg.line)
            self.service.log_failure(parsed.operation or Operation.COMPARE, caller, error)
        self._complete(msg, self._error_line(msg, parsed, request_id, error))

    def _work(
        self,
        msg: ItemMessage,
        static: _Static,
        claim: Claim,
        request_id: str,
        *,
        receive_count: int,
        remaining_s: float,
    ) -> None:
        final = receive_count >= self.cfg.batch_max_receives
        recovered = self._recover(claim.previous_request_ids, msg)
        if recovered is not None:
            outcome, billed = recovered
            self._complete(msg, outcome, billed=billed, recovered=True)
            _count("BatchItemsRecovered")
            return

        from facegate.service import Caller

        caller = Caller(
            request_id=request_id,
            # The service keeps within it: an item started is finished in this invocation.
            deadline=time.monotonic() + remaining_s - DEADLINE_MARGIN_S,
            batch_id=msg.batch_id,
            batch_line=msg.line,
        )
        parsed = self._parse(msg, static)
        if parsed.error is not None:
            self.service.log_failure(parsed.operation or Operation.COMPARE, caller, parsed.error)
            self._complete(msg, self._error_line(msg, parsed, request_id, parsed.error))
            return
        assert parsed.operation is not None and parsed.request is not None
        self.pacer.wait(parsed.request.vendor or self.cfg.default_vendor, self.cfg)
        try:
            if parsed.operation == Operation.COMPARE:
                response = self.service.compare(parsed.request, caller)
            else:
                response = self.service.verify_identity(parsed.request, caller)
        except FacegateError as e:
            billed = self._billed_from_log(request_id, e)
            if e.retryable and not final:
                self._release(msg, request_id, e, billed=billed)
                raise RetryLater(e.code, self._retry_delay(e, receive_count)) from None
            self._complete(msg, self._error_line(msg, parsed, request_id, e), billed=billed)
            return
        billed = _count_billed(response.attempts)
        line = ReportLine(
            line=msg.line,
            caller_id=parsed.caller_id,
            status="ok",
            operation=parsed.operation,
            request_id=request_id,
            result=response.model_dump(mode="json"),
        )
        self._complete(msg, line, billed=billed)

    def _parse(self, msg: ItemMessage, static: _Static) -> batch.ParsedLine:
        if msg.end - msg.start > batch.MAX_LINE_BYTES:
            return batch.ParsedLine(
                error=InvalidRequest(
                    f"the line is longer than {batch.MAX_LINE_BYTES // (1024 * 1024)} MiB; "
                    "give images as S3 keys or URLs"
                )
            )
        if msg.end <= msg.start:
            return batch.ParsedLine(error=InvalidRequest("the line is empty"))
        try:
            obj = self._get(static.ref, byte_range=f"bytes={msg.start}-{msg.end - 1}")
        except ManifestUnreadable as e:
            return batch.ParsedLine(error=e)
        raw = obj["Body"].read()
        return batch.parse_line(static.format, raw, static.header)  # type: ignore[arg-type]

    def _error_line(self, msg: ItemMessage, parsed: batch.ParsedLine, request_id: str, e: FacegateError) -> ReportLine:
        return ReportLine(
            line=msg.line,
            caller_id=parsed.caller_id,
            status="error",
            operation=parsed.operation,
            request_id=request_id,
            error=error_body(e),
        )

    def _complete(
        self,
        msg: ItemMessage,
        outcome: ReportLine,
        *,
        billed: tuple[int, int] = (0, 0),
        recovered: bool = False,
    ) -> bool:
        now = self.clock()
        written = self.store.complete_line(
            msg.batch_id,
            outcome,
            now,
            billed_calls=billed[0],
            billed_unknown=billed[1],
            recovered=recovered,
            expires_at=self._expires(now),
        )
        if written:
            _count("BatchItemsOk" if outcome.status == "ok" else "BatchItemsFailed")
        return written

    def _release(self, msg: ItemMessage, request_id: str, e: FacegateError, *, billed: tuple[int, int]) -> None:
        try:
            self.store.release_line(
                msg.batch_id,
                msg.line,
                request_id,
                billed_calls=billed[0],
                billed_unknown=billed[1],
                last_error=error_body(e),
            )
        except Exception:
            logger.exception("could not release a batch line", extra={"batch_id": msg.batch_id, "line": msg.line})

    def _recover(self, request_ids: Iterable[str], msg: ItemMessage) -> tuple[ReportLine, tuple[int, int]] | None:
        """An outcome an earlier attempt got (and logged) but never stored: no vendor is
        asked again. The caller id is not in the results log; it is read from the line."""
        retryable = _retryable_codes()
        for rid in reversed(tuple(request_ids)):
            try:
                record = self.service.store.get(rid)
            except NotFound:
                continue
            if record.batch_id not in (None, msg.batch_id) or record.batch_line not in (None, msg.line):
                continue
            billed = _count_billed(record.attempts)
            line = ReportLine(line=msg.line, status=record.status, operation=record.operation, request_id=rid)
            if record.status == "ok":
                data = record.model_dump(mode="json")
                data["match"] = None if record.decision == "uncertain" else record.decision == "match"
                model = CompareResponse if record.operation == Operation.COMPARE else VerifyIdentityResponse
                fields = {k: v for k, v in data.items() if k in model.model_fields}
                line.result = model.model_validate(fields).model_dump(mode="json")
            else:
                code = record.error_code or InternalError.code
                if retryable.get(code, True) or code == InternalError.code:
                    continue  # not final (an internal error is ours): the line is tried again
                line.error = ErrorBody(
                    code=code,
                    message=f"the request failed with {code} (recorded before a worker restart)",
                    retryable=False,
                    vendor=record.vendor,
                    vendor_code=record.vendor_code,
                )
            line.caller_id = self._peek(msg).caller_id
            return line, billed
        return None

    def _billed_from_log(self, request_id: str, e: FacegateError) -> tuple[int, int]:
        try:
            return _count_billed(self.service.store.get(request_id).attempts)
        except Exception:
            if isinstance(e, CallerError) or e.billed is False:
                return (0, 0)
            return (1, 0) if e.billed else (0, 1)

    def _backoff(self, receive_count: int) -> float:
        base = self.cfg.batch_retry_base_s
        if base <= 0:
            return 0.0
        delay = min(MAX_VISIBILITY_S, base * 2 ** max(0, receive_count - 1))
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto  # nosec B311

    def _retry_delay(self, e: FacegateError, receive_count: int) -> float:
        """The backoff, and at least until the vendor's cooldown (if one is open) ends."""
        delay = self._backoff(receive_count)
        health = getattr(self.service, "health", None)
        if e.vendor and health is not None:
            try:
                h = health.health(e.vendor)
                if h.state == "open" and h.open_until:
                    delay = max(delay, h.open_until - time.time() + 0.5)
            except Exception:  # health is advice here, never a reason to fail
                logger.debug("vendor health unavailable")
        return delay

    def _set_visibility(self, source_arn: str, receipt_handle: str, delay_s: float) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self._queue_url(source_arn), ReceiptHandle=receipt_handle, VisibilityTimeout=int(delay_s)
            )
        except Exception:
            # Then it comes back after the queue's visibility timeout instead.
            logger.warning("could not change a message's visibility", exc_info=True)

    def _queue_url(self, source_arn: str) -> str:
        url = self._queue_urls.get(source_arn)
        if url is None:
            configured = self.cfg.batch_queue_url
            name, account = source_arn.split(":")[-1], source_arn.split(":")[4]
            if configured and configured.rstrip("/").endswith(f"/{name}"):
                url = configured
            else:
                url = self.sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            self._queue_urls[source_arn] = url
        return url

    def _static_for(self, batch_id: str) -> _Static | None:
        static = self._static.get(batch_id)
        if static is None:
            meta = self.store.get_meta(batch_id)
            if meta is None or meta.total is None:
                return None
            static = _Static(meta.manifest, meta.format, meta.header)
            self._static[batch_id] = static
        return static

    # ======================================================================================
    # dead letters
    # ======================================================================================

    def handle_dead_letter(self, body: str, remaining_s: float = 60.0) -> None:
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
        _, meta = self.store.create_batch(ref, self.clock())
        if meta.status != "splitting":
            return  # it was split after all (the dead letter is a late duplicate)
        self.fail_batch(
            meta,
            BatchFailed(
                f"the manifest could not be split after {self.cfg.batch_max_receives} deliveries; "
                f"{meta.enqueued} item(s) had been queued"
            ),
        )

    def _dead_item(self, msg: ItemMessage, remaining_s: float) -> None:
        if self._redrive(msg):
            return
        now = self.clock()
        request_id = new_request_id()
        claim = self.store.claim_line(
            msg.batch_id,
            msg.line,
            request_id,
            now,
            now + remaining_s + LEASE_MARGIN_S,
            expires_at=self._expires(now),
        )
        if claim.state == "done":
            self.maybe_report(msg.batch_id)
            return
        if claim.state == "busy":
            raise RetryLater("a worker still holds the line", (claim.lease_until or now) - now + 1)
        try:
            self._bury(msg, claim, request_id)
        except Exception:
            self._release(msg, request_id, InternalError("internal error"), billed=(0, 0))
            raise
        _count("BatchItemsDeadLettered")
        self.maybe_report(msg.batch_id)

    def _redrive(self, msg: ItemMessage) -> bool:
        """A line no worker ever started used up its deliveries only by riding in
        batches whose worker died on another line: give it one more round, in a
        message of its own. A line that was started (and so may be the one that kills
        its worker) is not redriven."""
        line = self.store.get_line(msg.batch_id, msg.line)
        if line is not None and (line.done or line.attempts > 0 or line.redrives >= MAX_REDRIVES):
            return False
        if not self.cfg.batch_queue_url:
            return False
        self.sqs.send_message(QueueUrl=self.cfg.batch_queue_url, MessageBody=msg.model_dump_json())
        self.store.count_redrive(msg.batch_id, msg.line, expires_at=self._expires(self.clock()))
        _count("BatchItemsRedriven")
        logger.info("batch item redriven", extra={"batch_id": msg.batch_id, "line": msg.line})
        return True

    def _bury(self, msg: ItemMessage, claim: Claim, request_id: str) -> None:
        """The dead item's outcome: recovered from the results log, else an error."""
        recovered = self._recover(claim.previous_request_ids, msg)
        if recovered is not None:
            self._complete(msg, recovered[0], billed=recovered[1], recovered=True)
            return
        last = f"; the last attempt failed with {claim.last_error.code}" if claim.last_error else ""
        error = ItemNotProcessed(
            f"the item was not processed after {self.cfg.batch_max_receives} deliveries{last}",
            vendor=claim.last_error.vendor if claim.last_error else None,
        )
        from facegate.service import Caller

        parsed = self._peek(msg)
        self.service.log_failure(
            parsed.operation or Operation.COMPARE,
            Caller(request_id=request_id, batch_id=msg.batch_id, batch_line=msg.line),
            error,
        )
        self._complete(msg, self._error_line(msg, parsed, request_id, error))

    def _peek(self, msg: ItemMessage) -> batch.ParsedLine:
        """The line's operation and caller id, as far as they can be read."""
        static = self._static_for(msg.batch_id)
        if static is not None:
            try:
                parsed = self._parse(msg, static)
                return batch.ParsedLine(operation=parsed.operation, caller_id=parsed.caller_id)
            except Exception:
                logger.debug("line unreadable in the dead-letter drain")
        return batch.ParsedLine()

    # ======================================================================================
    # report
    # ======================================================================================

    def report_touched(self) -> None:
        """After an invocation's records: write the report of any batch it completed.
        Raises if a report cannot be written, so the invocation fails and its messages
        come back (their lines are done; the redelivery only checks again)."""
        while self.touched:
            self.maybe_report(self.touched.pop())

    def maybe_report(self, batch_id: str) -> bool:
        """Write the report if every line is done and nobody else is writing it."""
        meta = self.store.get_meta(batch_id)
        if meta is None or not meta.complete or meta.status not in ("splitting", "running", "reporting"):
            return False
        now = self.clock()
        if not self.store.claim_report(batch_id, now, now + REPORT_LEASE_S):
            return False
        self.write_report(meta)
        self.store.finish_report(batch_id, self.clock())
        _count("BatchesCompleted")
        logger.info("batch report written", extra={"batch_id": batch_id, "items": meta.total})
        return True

    def write_report(self, meta: BatchMeta) -> None:
        builder = SummaryBuilder()
        count = 0
        with tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024) as f:
            for item in self.store.lines(meta.batch_id):
                if not item.done:
                    raise InternalError(f"line {item.line} of batch {meta.batch_id} has no outcome yet")
                f.write(item.outcome_json.encode("utf-8") + b"\n")  # type: ignore[union-attr]
                builder.add(item.state())
                count += 1
            if count != meta.total:
                raise InternalError(f"batch {meta.batch_id} has {count} finished lines, expected {meta.total}")
            f.seek(0)
            self.s3.upload_fileobj(
                f,
                meta.manifest.bucket,
                batch.report_key(meta.name),
                ExtraArgs={"ContentType": "application/x-ndjson"},
            )
        self._put_summary(meta, self._summary(meta, builder, self.clock(), status="done"))

    def _summary(
        self, meta: BatchMeta, builder: SummaryBuilder, now: float, *, status: str, error: ErrorBody | None = None
    ) -> BatchSummary:
        return BatchSummary(
            batch_id=meta.batch_id,
            name=meta.name,
            status=status,  # type: ignore[arg-type]
            manifest=ManifestInfo(
                bucket=meta.manifest.bucket,
                key=meta.manifest.key,
                version_id=meta.manifest.version_id,
                etag=meta.manifest.etag,
                format=meta.format,  # type: ignore[arg-type]
            ),
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
        self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


# --- helpers --------------------------------------------------------------------------------


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


def _count_billed(attempts: Iterable[Any]) -> tuple[int, int]:
    """(billed, maybe billed) vendor calls among a request's attempts."""
    billed = unknown = 0
    for a in attempts:
        if a.billed is True:
            billed += 1
        elif a.billed is None:
            unknown += 1
    return billed, unknown


def _where(e: BaseException) -> dict[str, str]:
    """An exception's type and innermost frame, without its message."""
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "/facegate/" in f.filename] or frames
    where = f"{ours[-1].filename.rsplit('/', 1)[-1]}:{ours[-1].lineno} {ours[-1].name}" if ours else ""
    return {"error_type": type(e).__name__, "where": where}


def _count(name: str) -> None:
    """A CloudWatch metric; never a reason for an item to fail. Not even collected when
    metrics are off (locally): Powertools would print every hundred values anyway."""
    try:
        from aws_lambda_powertools.metrics.functions import is_metrics_disabled

        if is_metrics_disabled():
            return
        metrics.add_metric(name=name, unit="Count", value=1)
    except Exception:
        logger.debug("metric not recorded", extra={"metric": name})


def remaining_seconds(context: Any, default: float = 60.0) -> float:
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        return context.get_remaining_time_in_millis() / 1000
    return default


@cache
def default_jobs() -> BatchJobs:
    return BatchJobs()
