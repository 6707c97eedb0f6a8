"""Which vendor answers, and what happens when one cannot: the one retry loop.

* ``first``: try the plan's vendors in order (a single vendor is a plan of one; the
  order is the request's strategy, ``facegate.strategy``, and each attempt says why);
  move on **only** when a vendor gave no answer (``VendorError.failover``) — never
  on the caller's errors, never after an answer (a ``no_match`` is an answer).
* ``every``: ask all the plan's vendors at once (consensus), each with the same
  retry rules, and return every verdict or error.

Retries never risk a second bill: an attempt is repeated only when the vendor
cannot have received it (``billed is False`` on a connect failure or timeout).
Every attempt is recorded, and counted in per-vendor metrics (``facegate.observability``:
latency, failures, billing, error codes, fallbacks). Nothing starts once the request's deadline is too close
to finish, and vendors in cooldown are skipped (see ``facegate.health``). Each answered
call's latency is noted for the ``fastest`` strategy (``facegate.latency``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from facegate import observability
from facegate.errors import (
    CallerError,
    DeadlineExceeded,
    FacegateError,
    VendorError,
    VendorNotConfigured,
    VendorRejected,
    VendorTimeout,
    VendorUnavailable,
)
from facegate.models import Attempt, Decision

if TYPE_CHECKING:
    from pydantic import BaseModel

    from facegate.health import HealthBook
    from facegate.latency import LatencyBook
    from facegate.vendors.base import Vendor

# Starting a vendor call with less time than this left only produces a timeout.
MIN_ATTEMPT_S = 0.75


class VendorCoolingDown(VendorUnavailable):
    code = "VENDOR_UNAVAILABLE"


class VendorGate(Protocol):
    """Told of each call to a vendor: ``before`` right before it (it may wait: a batch's
    pacing, ``facegate.batch_jobs.work.Pacer``) and ``after`` once it ended, answered or
    not. Not told of attempts that never call (deadline, cooldown, retries' backoff)."""

    def before(self, vendor_id: str) -> None: ...

    def after(self, vendor_id: str) -> None: ...


@dataclass(frozen=True)
class Planned:
    vendor_class: type[Vendor]
    options: BaseModel | None
    reason: str | None = None  # why this vendor is where it is in the plan (facegate.strategy)

    @property
    def id(self) -> str:
        return self.vendor_class.id


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 1
    backoff_s: float = 0.1


class Attempts:
    """The attempts of one request, appended from any thread."""

    def __init__(self) -> None:
        self.items: list[Attempt] = []
        self._lock = threading.Lock()

    def add(self, vendor: str, outcome: str, billed: bool | None, started: float, reason: str | None = None) -> Attempt:
        latency = int((time.monotonic() - started) * 1000)
        attempt = Attempt(vendor=vendor, outcome=outcome, billed=billed, latency_ms=latency, reason=reason)
        with self._lock:
            self.items.append(attempt)
        return attempt

    def billed(self) -> bool | None:
        """True if any attempt was billed, None if any might have been, else False."""
        if any(a.billed for a in self.items):
            return True
        if any(a.billed is None for a in self.items):
            return None
        return False


def retry_safe(e: FacegateError) -> bool:
    """Could not have reached (or billed) the vendor, and may work next time."""
    return (
        isinstance(e, (VendorUnavailable, VendorTimeout)) and e.billed is False and not isinstance(e, VendorCoolingDown)
    )


def counts_against_health(e: FacegateError) -> bool:
    """Failures that say the vendor is unwell, as opposed to this request being
    refused (rejected parameters), our configuration, or our own deadline."""
    return isinstance(e, VendorError) and not isinstance(
        e, (VendorNotConfigured, VendorRejected, DeadlineExceeded, VendorCoolingDown)
    )


class Router:
    def __init__(
        self,
        health: HealthBook,
        vendor_for: Callable[[type[Vendor]], Vendor],
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        latency: LatencyBook | None = None,
    ):
        self.health = health
        self.latency = latency  # where answered calls' latencies go (the fastest strategy reads them)
        self.vendor_for = vendor_for
        self.retry = retry or RetryPolicy()
        self.sleep = sleep

    def first(
        self,
        plan: Sequence[Planned],
        attempt: Callable[[Vendor, Planned], Any],
        attempts: Attempts,
        deadline: float | None,
        gate: VendorGate | None = None,
    ) -> tuple[Vendor, Any]:
        last: VendorError | None = None
        for i, planned in enumerate(plan):
            try:
                return self._try(planned, attempt, attempts, deadline, gate)
            except VendorError as e:
                if not e.failover:
                    raise
                last = e
                if i + 1 < len(plan):
                    observability.record_fallback(planned.id)
        assert last is not None
        raise last

    def every(
        self,
        plan: Sequence[Planned],
        attempt: Callable[[Vendor, Planned], Any],
        attempts: Attempts,
        deadline: float | None,
        gate: VendorGate | None = None,
    ) -> list[tuple[str, Vendor | None, Any]]:
        """(vendor id, vendor, outcome or FacegateError) for each planned vendor, in plan order."""

        plan = [replace(p, reason=p.reason or "consensus: asked at once with the others") for p in plan]

        def one(planned: Planned) -> tuple[str, Vendor | None, Any]:
            try:
                vendor, outcome = self._try(planned, attempt, attempts, deadline, gate)
                return planned.id, vendor, outcome
            except FacegateError as e:
                return planned.id, None, e

        with ThreadPoolExecutor(max_workers=len(plan), thread_name_prefix="consensus") as pool:
            return list(pool.map(one, plan))

    @staticmethod
    def _note(record: Callable[[str], None], vid: str) -> None:
        """Health bookkeeping is best effort: a state-table hiccup must never turn a
        vendor's answer (possibly billed) into an error."""
        try:
            record(vid)
        except Exception:
            observability.logger.warning("vendor health update failed", extra={"vendor": vid}, exc_info=True)
            observability.metrics.add_metric(name="HealthUpdateFailed", unit="Count", value=1)

    @staticmethod
    def _record(
        attempts: Attempts,
        planned: Planned,
        outcome: str,
        billed: bool | None,
        started: float,
        *,
        called: bool = True,
        vendor_failure: bool = False,
    ) -> Attempt:
        """Note the attempt in the request's record and in the metrics (``called``: the
        vendor was asked, so its latency and billing mean something)."""
        a = attempts.add(planned.id, outcome, billed, started, planned.reason)
        observability.record_attempt(
            planned.id,
            None if outcome == "ok" else outcome,
            latency_ms=a.latency_ms if called else None,
            billed=billed,
            vendor_failure=vendor_failure,
        )
        return a

    def _check_time(self, attempts: Attempts, planned: Planned, deadline: float | None) -> None:
        """Raise (and record) DeadlineExceeded when too little time is left for an attempt."""
        if deadline is not None and deadline - time.monotonic() < MIN_ATTEMPT_S:
            e = DeadlineExceeded(
                f"no time left to ask {planned.id} before the request's deadline", vendor=planned.id, billed=False
            )
            self._record(attempts, planned, e.code, False, time.monotonic(), called=False)
            raise e

    def _try(
        self,
        planned: Planned,
        attempt: Callable[[Vendor, Planned], Any],
        attempts: Attempts,
        deadline: float | None,
        gate: VendorGate | None,
    ) -> tuple[Vendor, Any]:
        vid = planned.id
        for n in range(self.retry.max_retries + 1):
            self._check_time(attempts, planned, deadline)
            if not self.health.allow(vid):
                cooling = VendorCoolingDown(f"{vid} is cooling down after repeated failures", vendor=vid, billed=False)
                self._record(attempts, planned, "VENDOR_COOLING_DOWN", False, time.monotonic(), called=False)
                raise cooling
            if gate is not None:
                gate.before(vid)
                self._check_time(attempts, planned, deadline)  # ``before`` may have waited
            started = time.monotonic()
            try:
                vendor = self.vendor_for(planned.vendor_class)
                try:
                    outcome = attempt(vendor, planned)
                finally:
                    if gate is not None:
                        gate.after(vid)
            except CallerError as e:
                # The vendor answered (about the request): it is healthy.
                e.vendor = e.vendor or vid
                self._record(attempts, planned, e.code, e.billed, started)
                self._note(self.health.record_success, vid)
                raise
            except VendorError as e:
                e.vendor = e.vendor or vid
                unwell = counts_against_health(e)
                self._record(attempts, planned, e.code, e.billed, started, vendor_failure=unwell)
                if unwell:
                    self._note(self.health.record_failure, vid)
                if retry_safe(e) and n < self.retry.max_retries:
                    self.sleep(self.retry.backoff_s * (1 + random.random()))  # noqa: S311 - jitter, not crypto  # nosec B311
                    continue
                raise
            answered = self._record(attempts, planned, "ok", outcome.billed, started)
            self._note(self.health.record_success, vid)
            if self.latency is not None:  # what the fastest strategy orders by
                self._note(partial(self.latency.record, latency_ms=answered.latency_ms), vid)
            return vendor, outcome
        raise AssertionError("unreachable")


def combine(decisions: Sequence[Decision], asked: int, rule: str) -> Decision:
    """Consensus over the vendors that answered, out of ``asked``.

    ``all``: every vendor asked must answer and agree, else ``uncertain``.
    ``majority``: a decision wins with more than half of the vendors *asked* (a
    vendor that failed counts against every side), else ``uncertain``.
    """
    if rule == "all":
        return decisions[0] if len(decisions) == asked and len(set(decisions)) == 1 else "uncertain"
    decisive: tuple[Decision, ...] = ("match", "no_match")
    for d in decisive:
        if sum(1 for x in decisions if x == d) * 2 > asked:
            return d
    return "uncertain"
