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
per ``sample_interval_s`` (``FACEGATE_LATENCY_SAMPLE_INTERVAL_S``), the first answer after the
interval; the others are not written. At low traffic every answer is still written; at high
traffic each of N warm containers writes about one a second, so a vendor's slots span the last
~8/N seconds of answers. Which answer is written does not depend on how long it took, so the
samples stay a fair draw of the vendor's latencies. ``None`` writes none (``fastest`` then sees
every vendor as not observed: the stated order).

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
        # Per vendor: the next slot to write and when this container last wrote one.
        self._next_slot: dict[str, Iterator[int]] = {}
        self._written_at: dict[str, float] = {}
        self._claim_lock = threading.Lock()

    def record(self, vendor: str, latency_ms: float) -> None:
        """One answered call of ``vendor`` took ``latency_ms``: written down unless this container
        wrote one of ``vendor``'s samples less than ``sample_interval_s`` ago."""
        claimed = self._claim(vendor)
        if claimed is not None:
            slot, now = claimed
            self._write(vendor, slot, (float(round(latency_ms)), now))  # whole ms, as attempts report

    def _claim(self, vendor: str) -> tuple[int, float] | None:
        """The slot to write and the sample's time, or None if this answer is not sampled.
        Check and claim under one lock: answers racing on several threads write once per
        interval. A write that then fails keeps its claim (best effort: a failing table is
        tried once per interval, not on every answer)."""
        if self.sample_interval_s is None:
            return None
        with self._claim_lock:
            now = self.clock()
            last = self._written_at.get(vendor)
            # A clock set back (now < last) does not stop the samples for as long.
            if last is not None and 0 <= now - last < self.sample_interval_s:
                return None
            self._written_at[vendor] = now
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
