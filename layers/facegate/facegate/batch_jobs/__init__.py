"""Batches at work: the splitter, the worker, the dead-letter drain and the report,
one module each over a shared ``BatchContext`` (``context``); the line work the
worker and the drain share is ``lines``, the outcome ⇄ answer mapping ``outcomes``.

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

from collections.abc import Callable
from functools import cache
from typing import Any

from facegate.batch_jobs.context import BatchContext
from facegate.batch_jobs.drain import Drain
from facegate.batch_jobs.lines import Lines
from facegate.batch_jobs.report import Reporter
from facegate.batch_jobs.split import Splitter
from facegate.batch_jobs.work import Worker


class BatchJobs:
    """The four roles over one context, as one process (a Lambda container, or the
    local emulation) runs them."""

    def __init__(self, ctx: BatchContext | None = None):
        self.ctx = ctx or BatchContext()
        lines = Lines(self.ctx)
        self.reporter = Reporter(self.ctx)
        self.splitter = Splitter(self.ctx, self.reporter)
        self.worker = Worker(self.ctx, lines, self.reporter)
        self.drain = Drain(self.ctx, lines, self.reporter)

    @property
    def clock(self) -> Callable[[], float]:
        """The clock every role reads (the local emulation installs its own)."""
        return self.ctx.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.ctx.clock = clock


def remaining_seconds(context: Any, default: float = 60.0) -> float:
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        millis: int = context.get_remaining_time_in_millis()  # a LambdaContext's
        return millis / 1000
    return default


@cache
def default_jobs() -> BatchJobs:
    return BatchJobs()
