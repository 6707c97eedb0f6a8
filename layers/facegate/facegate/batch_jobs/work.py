"""The worker: one ItemQueue message is one manifest line. Claim it, recover what an
earlier attempt logged or call the service once, store the outcome; retryable failures
go back to the queue with a growing visibility timeout (see the package's rules)."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from facegate.batch import ItemMessage
from facegate.batch_jobs.context import (
    DEADLINE_MARGIN_S,
    MAX_VISIBILITY_S,
    MIN_ITEM_S,
    PACING_MARGIN_S,
    BatchContext,
    RetryLater,
    Static,
    count,
    count_billed,
    where,
)
from facegate.batch_jobs.lines import Lines
from facegate.batch_jobs.outcomes import error_line, ok_line
from facegate.batch_jobs.report import Reporter
from facegate.batch_records import Claim
from facegate.config import Settings
from facegate.errors import FacegateError, InternalError
from facegate.ids import new_request_id
from facegate.models import CompareRequest, CompareResponse, Operation, VerifyIdentityResponse
from facegate.observability import logger
from facegate.service import Caller


class Pacer:
    """Keeps one worker instance's calls to a rate-limited vendor within its share of the
    vendor's limit (``FACEGATE_BATCH_VENDOR_RATES``), so that ``FACEGATE_BATCH_CONCURRENCY``
    instances together never have more calls counted in any one second than the limit.

    A vendor counts calls per second as they reach it (the sandboxes: any calls "in the last
    second"). The instances do not know of each other, so the guarantee is per instance: each
    may have ``per_window`` = rate // concurrency calls within any ``window`` (one second),
    and N instances then at most N x per_window <= rate. A rate that concurrency does not
    divide leaves the remainder unused (10/s over 3 instances: 9/s); with more instances
    than calls per second, each makes one call per concurrency / rate seconds (a guarantee
    on average only: the instances' calls may still bunch).

    The vendor counts a call somewhere between its sending and its answer, so the window
    runs from each call's *end* (``after``): a call starts only once ``window`` has passed
    since the end of the call ``per_window`` calls before it. Spacing the planned starts
    instead let a call delayed on its way (image reads, a busy CPU) land within a second of
    the calls after it: 32 of 300 calls refused at 10/s over 3 instances. The router tells
    the pacer of each vendor call itself (it is the item's ``VendorGate``: fallbacks and
    retries too), so a window holds only the vendor's own time, not the item's image reads,
    decoding and records. One pacer is one instance (a thread in the local emulation; in
    Lambda an instance has one)."""

    def __init__(
        self, cfg: Settings, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic
    ):
        self.cfg = cfg
        self.sleep = sleep
        self.clock = clock
        self._ends: dict[str, deque[float]] = {}  # per vendor: the ends of its last per_window calls

    @staticmethod
    def share(rate: float, concurrency: int) -> tuple[int, float]:
        """(calls, seconds): an instance's calls within any window of that many seconds."""
        per_window = max(1, math.floor(rate / concurrency))
        return per_window, max(1.0, per_window * concurrency / rate) + PACING_MARGIN_S

    def _paced(self, vendor: str) -> tuple[deque[float], float] | None:
        """The ends of ``vendor``'s last calls and its window; None if it has no rate."""
        rate = self.cfg.batch_vendor_rates.get(vendor)
        if not rate:
            return None
        per_window, window = self.share(rate, self.cfg.batch_concurrency)
        ends = self._ends.get(vendor)
        if ends is None:
            ends = self._ends[vendor] = deque(maxlen=per_window)
        return ends, window

    def before(self, vendor_id: str) -> None:
        """Sleep until this instance may call ``vendor_id``."""
        paced = self._paced(vendor_id)
        if paced is None:
            return
        ends, window = paced
        if len(ends) == ends.maxlen:
            delay = ends[0] + window - self.clock()
            if delay > 0:
                self.sleep(delay)

    def after(self, vendor_id: str) -> None:
        """The call ``before`` let through has ended (answered or not)."""
        paced = self._paced(vendor_id)
        if paced is not None:
            paced[0].append(self.clock())


class Worker:
    def __init__(self, ctx: BatchContext, lines: Lines, reporter: Reporter):
        self.ctx = ctx
        self.lines = lines
        self.reporter = reporter
        self._instance = threading.local()  # a thread is an instance in the local emulation
        self._queue_urls: dict[str, str] = {}
        # Batches this invocation finished (or found finished) lines of: whether their
        # report is due is checked once per invocation, not once per line.
        self.touched: set[str] = set()

    @property
    def pacer(self) -> Pacer:
        """This instance's pacer."""
        pacer: Pacer | None = getattr(self._instance, "pacer", None)
        if pacer is None:
            pacer = self._instance.pacer = Pacer(self.ctx.cfg)
        return pacer

    def begin(self, bodies: Iterable[str]) -> None:
        """An invocation's messages, before any of them is handled: their lines are read
        together (``Lines.read_ahead``). Bodies that are no item message are left to
        ``handle_record`` to drop."""
        msgs = []
        for body in bodies:
            try:
                msgs.append(ItemMessage.model_validate_json(body))
            except ValueError:
                continue
        self.lines.read_ahead(msgs)

    def handle_record(
        self, body: str, receive_count: int, remaining_s: float, receipt_handle: str | None, source_arn: str
    ) -> None:
        """One ItemQueue message. Raises (after setting the message's visibility) when
        it should come back later."""
        try:
            msg = ItemMessage.model_validate_json(body)
        except ValueError:
            logger.error("not an item message; dropped")
            count("BatchMessagesDropped")
            return
        try:
            self.process(msg, receive_count=receive_count, remaining_s=remaining_s)
        except Exception as e:
            delay = e.delay_s if isinstance(e, RetryLater) else self._backoff(receive_count)
            reason = e.reason if isinstance(e, RetryLater) else type(e).__name__
            logger.info(
                "batch item retried later",
                extra={"batch_id": msg.batch_id, "line": msg.line, "reason": reason, "delay_s": round(delay, 2)},
            )
            count("BatchItemsRetried")
            if receipt_handle:
                self._set_visibility(source_arn, receipt_handle, delay)
            raise

    def report_touched(self) -> None:
        """After an invocation's records: write the report of any batch it completed.
        Raises if a report cannot be written, so the invocation fails and its messages
        come back (their lines are done; the redelivery only checks again)."""
        while self.touched:
            self.reporter.maybe_report(self.touched.pop())

    def process(self, msg: ItemMessage, *, receive_count: int = 1, remaining_s: float = 60.0) -> None:
        final = receive_count >= self.ctx.cfg.batch_max_receives
        static = self.ctx.static_for(msg.batch_id)
        if static is None:
            logger.warning("item of an unknown batch; dropped", extra={"batch_id": msg.batch_id})
            return
        if remaining_s < MIN_ITEM_S:
            raise RetryLater("too little time left in this invocation", 0)
        now = self.ctx.clock()
        request_id = new_request_id()
        claim = self.lines.claim(msg, request_id, remaining_s)
        if claim.state == "done":
            count("BatchItemsDuplicate")
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
                extra={"batch_id": msg.batch_id, "line": msg.line, **where(e)},
            )
            if final:
                self._give_up(msg, claim, request_id)
                return
            self.lines.release(msg, request_id, InternalError("internal error"), billed=(0, 0))
            raise
        self.touched.add(msg.batch_id)

    def _give_up(self, msg: ItemMessage, claim: Claim, request_id: str) -> None:
        """The last delivery failed on our side: the outcome is whatever the service got
        (from the results log), else an internal error, logged there too."""
        if self.lines.complete_recovered(msg, (*claim.previous_request_ids, request_id)):
            return
        self.lines.fail(msg, request_id, InternalError("internal error while processing the item"))

    def _work(
        self,
        msg: ItemMessage,
        static: Static,
        claim: Claim,
        request_id: str,
        *,
        receive_count: int,
        remaining_s: float,
    ) -> None:
        final = receive_count >= self.ctx.cfg.batch_max_receives
        if self.lines.complete_recovered(msg, claim.previous_request_ids):
            count("BatchItemsRecovered")
            return

        caller = Caller(
            request_id=request_id,
            # The service keeps within it: an item started is finished in this invocation.
            deadline=time.monotonic() + remaining_s - DEADLINE_MARGIN_S,
            batch_id=msg.batch_id,
            batch_line=msg.line,
            gate=self.pacer,
        )
        parsed = self.lines.parse(msg, static)
        operations = self.ctx.operations
        if parsed.error is not None:
            operations.log_failure(parsed.operation or Operation.COMPARE, caller, parsed.error)
            self.lines.complete(msg, error_line(msg.line, parsed, request_id, parsed.error))
            return
        assert parsed.operation is not None and parsed.request is not None
        try:
            # parse_line builds the request model of the line's operation.
            answer: CompareResponse | VerifyIdentityResponse
            if isinstance(parsed.request, CompareRequest):
                answer = operations.compare(parsed.request, caller)
            else:
                answer = operations.verify_identity(parsed.request, caller)
        except FacegateError as e:
            billed = self.lines.billed_from_log(request_id, e)
            if e.retryable and not final:
                self.lines.release(msg, request_id, e, billed=billed)
                raise RetryLater(e.code, self._retry_delay(e, receive_count)) from None
            self.lines.complete(msg, error_line(msg.line, parsed, request_id, e), billed=billed)
            return
        self.lines.complete(msg, ok_line(msg.line, parsed.caller_id, answer), billed=count_billed(answer.attempts))

    def _backoff(self, receive_count: int) -> float:
        base = self.ctx.cfg.batch_retry_base_s
        if base <= 0:
            return 0.0
        delay = min(MAX_VISIBILITY_S, base * 2.0 ** max(0, receive_count - 1))
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto  # nosec B311

    def _retry_delay(self, e: FacegateError, receive_count: int) -> float:
        """The backoff, and at least until the vendor's cooldown (if one is open) ends."""
        delay = self._backoff(receive_count)
        if e.vendor:
            try:
                h = self.ctx.cooldowns.health(e.vendor)
                if h.state == "open" and h.open_until:
                    delay = max(delay, h.open_until - time.time() + 0.5)
            except Exception:  # health is advice here, never a reason to fail
                logger.debug("vendor health unavailable")
        return delay

    def _set_visibility(self, source_arn: str, receipt_handle: str, delay_s: float) -> None:
        """Hide the message for the backoff. Never raises: the caller re-raises the item's
        own failure either way, so the partial-batch response reports the item and SQS
        redelivers it; if the change fails, it comes back after the queue's visibility
        timeout instead (later, never lost), and the failure is logged and counted."""
        try:
            self.ctx.sqs.change_message_visibility(
                QueueUrl=self._queue_url(source_arn),
                ReceiptHandle=receipt_handle,
                # Whole seconds, rounded up: int() turned a 0.7 s backoff into none at all.
                VisibilityTimeout=math.ceil(delay_s),
            )
        except Exception:
            logger.warning("could not change a message's visibility", exc_info=True)
            count("BatchVisibilityChangesFailed")

    def _queue_url(self, source_arn: str) -> str:
        url = self._queue_urls.get(source_arn)
        if url is None:
            configured = self.ctx.cfg.batch_queue_url
            name, account = source_arn.split(":")[-1], source_arn.split(":")[4]
            if configured and configured.rstrip("/").endswith(f"/{name}"):
                url = configured
            else:
                url = self.ctx.sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            self._queue_urls[source_arn] = url
        return url
