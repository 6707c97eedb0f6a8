"""The observed-latency book: each container writes its answers round robin into a vendor's
slots; the estimate is the median of the recent ones."""

from __future__ import annotations

import random

import pytest

from facegate.latency import MAX_AGE_S, SLOTS, MemoryLatencyBook


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_the_documented_defaults():
    assert (SLOTS, MAX_AGE_S) == (8, 24 * 3600.0)


def test_one_container_keeps_exactly_its_last_answers():
    book = MemoryLatencyBook(slots=4, rng=random.Random(3))
    for ms in (1000, 1000, 1000, 10, 20, 30, 40):
        book.record("v", ms)
    seen = book.observed(["v"])["v"]
    assert (seen.calls, seen.median_ms) == (4, 25.0)


def test_the_median_is_not_moved_by_one_slow_answer():
    book = MemoryLatencyBook(rng=random.Random(3))
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


def test_the_sample_rate_skips_writes():
    never = MemoryLatencyBook(sample_rate=0.0)
    never.record("v", 10)
    assert never.observed(["v"]) == {}
    always = MemoryLatencyBook(sample_rate=1.0, slots=64)
    for _ in range(20):
        always.record("v", 10)
    assert always.observed(["v"])["v"].calls == 20
    half = MemoryLatencyBook(sample_rate=0.5, slots=1000, rng=random.Random(5))
    for _ in range(400):
        half.record("v", 10)
    assert 150 < half.observed(["v"])["v"].calls < 250


def test_containers_start_at_random_slots():
    starts = set()
    for seed in range(20):
        book = MemoryLatencyBook(rng=random.Random(seed))
        book.record("v", 1)
        starts |= set(book._samples["v"])
    assert len(starts) > 1
