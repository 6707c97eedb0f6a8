"""HealthBook is an interface: a book that does not say where its numbers live
cannot be made."""

from __future__ import annotations

import pytest

from facegate.health import HealthBook, MemoryHealthBook


def test_the_interface_itself_cannot_be_instantiated():
    with pytest.raises(TypeError, match="abstract"):
        HealthBook()  # type: ignore[abstract]


def test_a_book_missing_a_method_cannot_be_instantiated():
    class NoFailures(HealthBook):
        def _read(self, vendor):
            return {}

        def _claim_probe(self, vendor):
            return True

        def record_success(self, vendor):
            pass

    with pytest.raises(TypeError, match="record_failure"):
        NoFailures()  # type: ignore[abstract]
    assert MemoryHealthBook().allow("local")


# --- the documented numbers, just under and just over (CooldownPolicy's defaults:
# 5 failures within 60 s open a 30 s cooldown; a probe holds its slot for 30 s) --------

T0 = 1_000_000.0
EPS = 0.001


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def failing(book, clock: Clock, at: list[float]) -> None:
    for t in at:
        clock.t = t
        book.record_failure("v")


def test_four_failures_leave_a_vendor_closed_and_the_fifth_opens_it():
    clock = Clock()
    book = MemoryHealthBook(clock=clock)
    failing(book, clock, [T0] * 4)
    assert book.health("v").state == "closed" and book.health("v").failures == 4
    assert book.allow("v")
    failing(book, clock, [T0])
    assert book.health("v").state == "open" and not book.allow("v")


@pytest.mark.parametrize(("fifth_at", "state"), [(T0 + 60 - EPS, "open"), (T0 + 60, "closed")])
def test_a_failure_counts_until_the_window_ends(fifth_at, state):
    clock = Clock()
    book = MemoryHealthBook(clock=clock)
    failing(book, clock, [T0] * 4 + [fifth_at])
    assert book.health("v").state == state
    if state == "closed":  # the window restarted with the late failure
        assert book.health("v").failures == 1


@pytest.mark.parametrize(("at", "failures"), [(T0 + 60 - EPS, 3), (T0 + 60, 0)])
def test_reported_failures_expire_with_the_window(at, failures):
    clock = Clock()
    book = MemoryHealthBook(clock=clock)
    failing(book, clock, [T0] * 3)
    clock.t = at
    assert book.health("v").failures == failures


@pytest.mark.parametrize(("at", "state"), [(T0 + 30 - EPS, "open"), (T0 + 30, "half_open")])
def test_the_cooldown_ends_at_exactly_thirty_seconds(at, state):
    clock = Clock()
    book = MemoryHealthBook(clock=clock)
    failing(book, clock, [T0] * 5)
    clock.t = at
    assert book.health("v").state == state
    assert book.allow("v") is (state == "half_open")


@pytest.mark.parametrize(("at", "allowed"), [(T0 + 30 + 30 - EPS, False), (T0 + 30 + 30, True)])
def test_a_probe_that_never_reports_frees_its_slot_after_thirty_seconds(at, allowed):
    clock = Clock()
    book = MemoryHealthBook(clock=clock)
    failing(book, clock, [T0] * 5)
    clock.t = T0 + 30
    assert book.allow("v")  # the probe, which never reports back
    clock.t = at
    assert book.allow("v") is allowed
