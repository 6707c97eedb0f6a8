"""Observed vendor latency: how fast each vendor has answered lately, shared by every
container (the ``fastest`` strategy reads it, ``facegate.strategy``).

Each vendor has ``slots`` samples of (latency ms, when). A container writes an answered call's
latency into its own next slot of that vendor, round robin from a random start: one write
setting one attribute, with no read before it, so concurrent writers cannot corrupt anything
(they each set a slot; the last one written wins). The estimate is the median of the samples
younger than ``max_age_s``: one slow answer does not move it, and a vendor not asked for a day
counts as not observed. (An exponentially weighted average would need the old value to compute
the new one — DynamoDB's update expressions add and subtract but do not multiply — so a
read-modify-write race; the slots need none.)

Samples are thinned by time, not by chance: a container writes at most one sample per vendor
per ``sample_interval_s`` (``FACEGATE_LATENCY_SAMPLE_INTERVAL_S``), the first call *started*
after the interval; the others are not written. The claim is on the start, not the answer: the
first answer after a boundary is the call that was running across it, and a long call is more
likely to span a boundary, so claiming answers would favour slow ones (one container calling a
vendor back to back: a median ~40 % high). Whether a call started after the boundary does not
depend on how long it then took, so the samples stay a fair draw of the vendor's latencies. At
low traffic every answer is still written; at high traffic each of N warm containers writes
about one a second, so a vendor's slots span the last ~8/N seconds of answers. ``None`` writes
none (``fastest`` then sees every vendor as not observed: the stated order).

In DynamoDB the samples live in the cooldowns' table (``FACEGATE_STATE_TABLE``), one item per
vendor beside its cooldown item: ``pk = "latency#<id>"``, attributes ``s0`` … ``s7`` each
``[ms, epoch seconds]``. Cost: at most one UpdateItem of 1 WCU per vendor per container per
``sample_interval_s``, and one BatchGetItem of every candidate vendor (eventually consistent,
0.5 RCU per vendor) per container per ``CACHE_S`` — and only for requests that ask for
``fastest``. Without a table (tests, a bare local run) the same logic runs in memory.
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from facegate.store import DynamoBacked, dynamo_number

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource

SLOTS = 8
MAX_AGE_S = 24 * 3600.0
# One sample per vendor per container per second. A container busy on one vendor then turns its
# 8 slots over in 8 s, so a change of the vendor's latency moves the median (half the slots)
# within ~4 s: as current as a ``fastest`` reader's own 5 s cache (CACHE_S) lets it be anyway.
# Writing more often would buy nothing that reader sees; at low traffic (under one answer a
# second) nothing is thinned. Cost: at most 1 WCU per second per vendor per busy container.
SAMPLE_INTERVAL_S = 1.0

Sample = tuple[float, float]  # (latency ms, when: epoch seconds)


@dataclass(frozen=True)
class Observed:
    median_ms: float
    calls: int  # how many recent answers the median is over


class LatencyBook(ABC):
    """The interface the router (which records) and the strategy (which reads) use;
    ``MemoryLatencyBook`` and ``DynamoLatencyBook`` differ only in where the samples live."""

    def __init__(
        self,
        *,
        slots: int = SLOTS,
        max_age_s: float = MAX_AGE_S,
        sample_interval_s: float | None = SAMPLE_INTERVAL_S,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ):
        self.slots = slots
        self.max_age_s = max_age_s
        self.sample_interval_s = sample_interval_s
        self.clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - spreads slots, not crypto  # nosec B311
        # Per vendor: the next slot to write, and when the call this container last sampled
        # started and answered.
        self._next_slot: dict[str, Iterator[int]] = {}
        self._sampled: dict[str, tuple[float, float]] = {}
        self._claim_lock = threading.Lock()

    def record(self, vendor: str, latency_ms: float) -> None:
        """One call of ``vendor`` answered now, after ``latency_ms``: written down unless this
        container sampled a call of ``vendor`` that started less than ``sample_interval_s``
        before this one did (or after it: a call that started earlier but answered later is
        not written either)."""
        claimed = self._claim(vendor, latency_ms)
        if claimed is not None:
            slot, now = claimed
            self._write(vendor, slot, (float(round(latency_ms)), now))  # whole ms, as attempts report

    def _claim(self, vendor: str, latency_ms: float) -> tuple[int, float] | None:
        """The slot to write and the sample's time, or None if this call is not sampled.
        Check and claim under one lock: calls answering on several threads write once per
        interval. A write that then fails keeps its claim (best effort: a failing table is
        tried once per interval, not on every answer)."""
        if self.sample_interval_s is None:
            return None
        with self._claim_lock:
            now = self.clock()
            # The call's start in this book's own clock (the clock stays injectable; no second
            # one to agree with). Read a little after the answer (the router notes health
            # first), it is late by that delay whatever the call's length: no bias.
            started = now - latency_ms / 1000
            last = self._sampled.get(vendor)
            # An interval of 0 writes every answer, in whatever order the calls started. A clock
            # set back (now before the last sample's time) starts afresh rather than stopping
            # the samples for as long.
            if (
                self.sample_interval_s > 0
                and last is not None
                and now >= last[1]
                and started < last[0] + self.sample_interval_s
            ):
                return None
            self._sampled[vendor] = (started, now)
            slots = self._next_slot.get(vendor)
            if slots is None:
                slots = self._next_slot[vendor] = itertools.count(self._rng.randrange(self.slots))
            return next(slots) % self.slots, now

    def observed(self, vendors: Iterable[str]) -> dict[str, Observed]:
        """The recent median of each of ``vendors`` that has recent samples (the others are absent)."""
        now = self.clock()
        out = {}
        for vendor, samples in self._read(list(vendors)).items():
            recent = [ms for ms, at in samples if now - at < self.max_age_s]
            if recent:
                out[vendor] = Observed(statistics.median(recent), len(recent))
        return out

    @abstractmethod
    def _write(self, vendor: str, slot: int, sample: Sample) -> None: ...

    @abstractmethod
    def _read(self, vendors: list[str]) -> dict[str, list[Sample]]:
        """Every stored sample of each of ``vendors`` (a vendor with none may be absent)."""


class MemoryLatencyBook(LatencyBook):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._samples: dict[str, dict[int, Sample]] = {}
        self._lock = threading.Lock()

    def _write(self, vendor: str, slot: int, sample: Sample) -> None:
        with self._lock:
            self._samples.setdefault(vendor, {})[slot] = sample

    def _read(self, vendors: list[str]) -> dict[str, list[Sample]]:
        with self._lock:
            return {v: list(self._samples[v].values()) for v in vendors if v in self._samples}


class DynamoLatencyBook(DynamoBacked, LatencyBook):
    CACHE_S = 5.0  # the order only needs to be roughly current; a read per request would add latency

    def __init__(self, table_name: str, resource: DynamoDBServiceResource | None = None, **kw: Any) -> None:
        DynamoBacked.__init__(self, table_name, resource)
        LatencyBook.__init__(self, **kw)
        self._cache: dict[tuple[str, ...], tuple[float, dict[str, list[Sample]]]] = {}

    @staticmethod
    def _key(vendor: str) -> dict[str, str]:
        return {"pk": f"latency#{vendor}"}

    def _write(self, vendor: str, slot: int, sample: Sample) -> None:
        self.table.update_item(
            Key=self._key(vendor),
            UpdateExpression="SET #slot = :sample",
            ExpressionAttributeNames={"#slot": f"s{slot}"},
            ExpressionAttributeValues={":sample": [dynamo_number(sample[0]), dynamo_number(sample[1])]},
        )

    def _read(self, vendors: list[str]) -> dict[str, list[Sample]]:
        wanted = tuple(sorted(set(vendors)))
        hit = self._cache.get(wanted)
        if hit and time.monotonic() - hit[0] < self.CACHE_S:
            return hit[1]
        found: dict[str, list[Sample]] = {}
        if wanted:
            name = self.table.name
            answer = self.resource.batch_get_item(RequestItems={name: {"Keys": [self._key(v) for v in wanted]}})
            # Keys DynamoDB left unprocessed (throttled) count as not observed: best effort, no retry loop.
            for item in answer["Responses"].get(name, []):
                vendor = str(item["pk"]).removeprefix("latency#")
                found[vendor] = [
                    (float(v[0]), float(v[1])) for k, v in item.items() if k != "pk" and isinstance(v, list)
                ]
        self._cache[wanted] = (time.monotonic(), found)
        return found
