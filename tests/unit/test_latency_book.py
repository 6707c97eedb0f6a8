"""The observed-latency book: each container writes its answers round robin into a vendor's
slots, at most one per vendor per sample interval; the estimate is the median of the recent
ones. Tests about the slots and the median write every answer (``sample_interval_s=0``)."""

from __future__ import annotations

import math
import random
import statistics
import sys
import threading
import time
from collections import Counter

import pytest
from pydantic import ValidationError

from facegate.config import Settings
from facegate.latency import MAX_AGE_S, SAMPLE_INTERVAL_S, SLOTS, MemoryLatencyBook

EVERY = {"sample_interval_s": 0.0}  # every answer written


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_the_documented_defaults():
    assert (SLOTS, MAX_AGE_S, SAMPLE_INTERVAL_S) == (8, 24 * 3600.0, 1.0)
    assert Settings().latency_sample_interval_s == SAMPLE_INTERVAL_S
    assert MemoryLatencyBook().sample_interval_s == SAMPLE_INTERVAL_S


def test_one_container_keeps_exactly_its_last_answers():
    book = MemoryLatencyBook(slots=4, rng=random.Random(3), **EVERY)
    for ms in (1000, 1000, 1000, 10, 20, 30, 40):
        book.record("v", ms)
    seen = book.observed(["v"])["v"]
    assert (seen.calls, seen.median_ms) == (4, 25.0)


def test_the_median_is_not_moved_by_one_slow_answer():
    book = MemoryLatencyBook(rng=random.Random(3), **EVERY)
    for ms in (100, 110, 9000, 105, 95):
        book.record("v", ms)
    assert book.observed(["v"])["v"].median_ms == 105


def test_a_vendor_never_answered_is_not_observed():
    book = MemoryLatencyBook()
    book.record("a", 50)
    assert list(book.observed(["a", "b"])) == ["a"]


@pytest.mark.parametrize(("age", "observed"), [(MAX_AGE_S - 1, True), (MAX_AGE_S, False)])
def test_samples_older_than_a_day_no_longer_count(age, observed):
    clock = Clock()
    book = MemoryLatencyBook(clock=clock)
    book.record("v", 80)
    clock.t += age
    assert ("v" in book.observed(["v"])) is observed


def test_an_old_sample_does_not_count_beside_recent_ones():
    clock = Clock()
    book = MemoryLatencyBook(clock=clock, rng=random.Random(0))
    book.record("v", 5000)
    clock.t += MAX_AGE_S
    book.record("v", 100)
    seen = book.observed(["v"])["v"]
    assert (seen.calls, seen.median_ms) == (1, 100)


def test_each_vendor_fills_all_its_slots_whatever_the_others_do():
    # Two vendors answering in turn: each keeps its own last 4, not every other slot.
    book = MemoryLatencyBook(slots=4, rng=random.Random(0), **EVERY)
    for ms in (1000, 1000, 1000, 1000, 10, 20, 30, 40):
        book.record("a", ms)
        book.record("b", ms + 1)
    assert sorted(ms for ms, _ in book._samples["a"].values()) == [10, 20, 30, 40]
    assert sorted(ms for ms, _ in book._samples["b"].values()) == [11, 21, 31, 41]


class Counting(MemoryLatencyBook):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.writes: list[tuple[str, float, float]] = []  # (vendor, ms, when)

    def _write(self, vendor, slot, sample):
        self.writes.append((vendor, *sample))
        super()._write(vendor, slot, sample)


def test_one_sample_per_vendor_per_interval_of_call_starts():
    # Latencies in 1/8 s steps keep the starts exact in binary floating point.
    clock = Clock()
    book = Counting(clock=clock, sample_interval_s=2.0)
    book.record("v", 125)  # the vendor's first answer is written: started at t - 0.125
    clock.t += 1.875
    book.record("v", 250)  # started at t + 1.625, within the interval: not written
    clock.t += 0.25
    book.record("v", 375)  # answered after the interval but started at t + 1.75, within it: not written
    clock.t += 0.125
    book.record("v", 375)  # started at t + 1.875 + 0.125 = the interval's end: written
    book.record("v", 125)  # started after it, within the next interval: not written
    assert book.writes == [("v", 125, 1_000_000.0), ("v", 375, 1_000_002.25)]
    seen = book.observed(["v"])["v"]
    assert (seen.calls, seen.median_ms) == (2, 250)


def test_the_call_started_after_the_interval_is_written_not_the_one_running_across_its_end():
    # Calls overlapping on threads (the batch worker, the local server).
    clock = Clock()
    book = Counting(clock=clock, sample_interval_s=1.0)
    book.record("v", 125)  # started at t - 0.125: written; the next interval ends at t + 0.875
    clock.t += 1.5
    book.record("v", 1000)  # started at t + 0.5, answered first after the interval's end: not written
    clock.t += 0.125
    book.record("v", 625)  # started at t + 1.0, after it: written
    clock.t += 0.5
    book.record("v", 1250)  # started at t + 0.875, before that one, answered after it: not written
    assert [ms for _, ms, _ in book.writes] == [125, 625]


def test_vendors_are_sampled_independently():
    clock = Clock()
    book = Counting(clock=clock, sample_interval_s=1.0)
    book.record("a", 125)
    book.record("b", 250)
    clock.t += 0.5
    book.record("a", 125)
    book.record("b", 250)
    book.record("c", 125)
    clock.t += 0.5
    book.record("a", 125)
    book.record("c", 125)
    assert [(v, ms) for v, ms, _ in book.writes] == [("a", 125), ("b", 250), ("c", 125), ("a", 125)]


def test_an_interval_of_zero_writes_every_answer():
    book = Counting(clock=Clock(), sample_interval_s=0.0, slots=64)
    for ms in range(20):
        book.record("v", ms)
    assert len(book.writes) == 20
    assert book.observed(["v"])["v"].calls == 20


def test_off_writes_nothing():
    book = Counting(clock=Clock(), sample_interval_s=None)
    book.record("v", 10)
    assert (book.writes, book.observed(["v"])) == ([], {})


def test_a_clock_set_back_does_not_stop_the_samples():
    clock = Clock()
    book = Counting(clock=clock, sample_interval_s=1.0)
    book.record("v", 10)
    clock.t -= 3600
    book.record("v", 20)
    assert [ms for _, ms, _ in book.writes] == [10, 20]


def test_answers_racing_on_threads_write_once_per_interval():
    # The batch worker and the local server record from several threads at once. Four threads
    # record without pause while the clock steps one interval at a time: no two samples of a
    # vendor may carry the same time (two writes within one interval).
    clock = Clock()
    book = Counting(clock=clock, sample_interval_s=1.0)
    stop = threading.Event()

    def answer(ms: int) -> None:
        while not stop.is_set():
            book.record("v", ms)
            book.record("w", ms)

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show
    workers = [threading.Thread(target=answer, args=(ms,)) for ms in range(4)]
    try:
        for w in workers:
            w.start()
        for _ in range(300):
            time.sleep(0.0002)
            clock.t += 1.0
    finally:
        stop.set()
        for w in workers:
            w.join()
        sys.setswitchinterval(before)
    for vendor in ("v", "w"):
        times = Counter(when for v, _, when in book.writes if v == vendor)
        assert len(times) > 100  # the threads did race through many intervals
        assert max(times.values()) == 1


def test_a_write_that_fails_keeps_its_claim():
    class Failing(Counting):
        def _write(self, vendor, slot, sample):
            super()._write(vendor, slot, sample)
            raise RuntimeError("state table unavailable")

    clock = Clock()
    book = Failing(clock=clock, sample_interval_s=1.0)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            book.record("v", 10)
        book.record("v", 10)  # within the interval: not tried again
        clock.t += 1.0
    assert len(book.writes) == 3


def test_containers_start_at_random_slots():
    starts = set()
    for seed in range(20):
        book = MemoryLatencyBook(rng=random.Random(seed))
        book.record("v", 1)
        starts |= set(book._samples["v"])
    assert len(starts) > 1


@pytest.mark.parametrize(
    ("value", "interval"), [(None, SAMPLE_INTERVAL_S), ("0", 0.0), ("2.5", 2.5), ("off", None), (" OFF ", None)]
)
def test_the_interval_setting_reaches_the_service_book(value, interval):
    from facegate.service import Service

    env = {} if value is None else {"FACEGATE_LATENCY_SAMPLE_INTERVAL_S": value}
    cfg = Settings.from_env(env)
    assert cfg.latency_sample_interval_s == interval
    assert Service(cfg, store=object()).latency.sample_interval_s == interval  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["-1", "3601", "never"])
def test_an_interval_setting_out_of_range_is_refused(value):
    with pytest.raises(ValidationError):
        Settings.from_env({"FACEGATE_LATENCY_SAMPLE_INTERVAL_S": value})


def _back_to_back(book: MemoryLatencyBook, clock: Clock, latencies_ms: list[float]) -> None:
    """One container asking one vendor back to back (Lambda: one request at a time): each call
    starts when the previous one answered, and is recorded when it answers."""
    for ms in latencies_ms:
        clock.t += ms / 1000
        book.record("v", ms)


def test_the_written_samples_are_not_biased_towards_slow_answers():
    # Claimed on the answer, the sample of an interval is the call running across its boundary,
    # and a long call is more likely to span it (length-biased): that median came out ~40 %
    # high. Claimed on the start, the call after the boundary is as likely fast as any.
    rng = random.Random(7)
    latencies = [rng.lognormvariate(math.log(245), 0.8) for _ in range(20_000)]
    clock = Clock()
    book = Counting(clock=clock, sample_interval_s=1.0)
    _back_to_back(book, clock, latencies)
    written = [ms for _, ms, _ in book.writes]
    assert len(written) > 4000  # most intervals got their sample
    assert statistics.median(written) == pytest.approx(statistics.median(latencies), rel=0.05)


@pytest.mark.parametrize("value", ["0", "0.1", "1"])
def test_the_removed_sample_rate_setting_is_refused_naming_its_replacement(value):
    # A stage that set FACEGATE_LATENCY_SAMPLE_RATE=0 to stop the writes must not silently get
    # one a second: it fails like any bad setting, and says what to set instead.
    with pytest.raises(ValidationError) as refused:
        Settings.from_env({"FACEGATE_LATENCY_SAMPLE_RATE": value, "FACEGATE_LATENCY_SAMPLE_INTERVAL_S": "off"})
    (error,) = refused.value.errors()
    assert error["loc"] == ("FACEGATE_LATENCY_SAMPLE_RATE",)
    assert "FACEGATE_LATENCY_SAMPLE_INTERVAL_S" in error["msg"] and "`off`" in error["msg"]


def test_an_empty_removed_setting_counts_as_unset():
    assert Settings.from_env({"FACEGATE_LATENCY_SAMPLE_RATE": ""}).latency_sample_interval_s == SAMPLE_INTERVAL_S
