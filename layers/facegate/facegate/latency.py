"""Observed vendor latency: how fast each vendor has answered lately, shared by every
container (the ``fastest`` strategy reads it, ``facegate.strategy``).

Each vendor has ``slots`` samples of (latency ms, when). A container writes each answered
call's latency into its own next slot, round robin from a random start: one write setting one
attribute, with no read before it, so concurrent writers cannot corrupt anything (they each set
a slot; the last one written wins). With one container the slots are exactly its last answers;
with several, a mix of everyone's recent answers. The estimate is the median of the samples
younger than ``max_age_s``: one slow answer does not move it, and a vendor not asked for a day
counts as not observed. (An exponentially weighted average would need the old value to compute
the new one — DynamoDB's update expressions add and subtract but do not multiply — so a
read-modify-write race; the slots need none.)

In DynamoDB the samples live in the cooldowns' table (``FACEGATE_STATE_TABLE``), one item per
vendor beside its cooldown item: ``pk = "latency#<id>"``, attributes ``s0`` … ``s7`` each
``[ms, epoch seconds]``. Cost: at most one UpdateItem of 1 WCU per answered call (none when a
sample is skipped by ``FACEGATE_LATENCY_SAMPLE_RATE``), and one BatchGetItem of every candidate
vendor (eventually consistent, 0.5 RCU per vendor) per container per ``CACHE_S`` — and only
for requests that ask for ``fastest``. Without a table (tests, a bare local run) the same
logic runs in memory.
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from facegate.store import DynamoBacked, dynamo_number

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource

SLOTS = 8
MAX_AGE_S = 24 * 3600.0

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
        sample_rate: float = 1.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ):
        self.slots = slots
        self.max_age_s = max_age_s
        self.sample_rate = sample_rate
        self.clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - spreads slots and samples, not crypto  # nosec B311
        self._next_slot = itertools.count(self._rng.randrange(slots))
        self._slot_lock = threading.Lock()

    def record(self, vendor: str, latency_ms: float) -> None:
        """One answered call of ``vendor`` took ``latency_ms`` (sampled at ``sample_rate``)."""
        if self._rng.random() >= self.sample_rate:  # random() < 1: a rate of 1 keeps every sample
            return
        with self._slot_lock:
            slot = next(self._next_slot) % self.slots
        self._write(vendor, slot, (float(round(latency_ms)), self.clock()))  # whole ms, as attempts report

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
