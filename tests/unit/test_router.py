"""The router: failover only without an answer, retries only without a bill,
deadlines, cooldowns, consensus."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from facegate import errors
from facegate.health import CooldownPolicy, MemoryHealthBook
from facegate.router import Attempts, Planned, RetryPolicy, Router, combine


@dataclass
class Outcome:
    billed: bool | None = True
    label: str = ""


def fake_vendor(vid: str):
    return type(f"V_{vid}", (), {"id": vid})


def plan(*ids: str) -> list[Planned]:
    return [Planned(fake_vendor(v), None) for v in ids]


class Script:
    """attempt() answers from a per-vendor script of outcomes and exceptions."""

    def __init__(self, **script):
        self.script = {k: list(v) for k, v in script.items()}
        self.calls: list[str] = []

    def __call__(self, vendor, planned):
        self.calls.append(planned.id)
        step = self.script[planned.id].pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def router(health=None, retries=1):
    return Router(
        health or MemoryHealthBook(), vendor_for=lambda cls: cls, retry=RetryPolicy(retries, 0), sleep=lambda s: None
    )


def refused(vid="a"):
    return errors.VendorUnavailable("refused", vendor=vid, billed=False)


def test_single_vendor_answers():
    script = Script(a=[Outcome(label="ok")])
    attempts = Attempts()
    vendor, out = router().first(plan("a"), script, attempts, None)
    assert (vendor.id, out.label) == ("a", "ok")
    assert [(a.vendor, a.outcome, a.billed) for a in attempts.items] == [("a", "ok", True)]


@pytest.mark.parametrize(
    "failure",
    [
        errors.VendorRateLimited("slow down", billed=False),
        errors.VendorQuotaExhausted("quota", billed=False),
        errors.VendorAuthFailed("bad key", billed=False),
        errors.VendorNotConfigured("none"),
        errors.VendorTimeout("no connect", sent=False),
        errors.VendorUnavailable("5xx", billed=None),
    ],
    ids=lambda e: e.code,
)
def test_fallback_moves_on_when_the_vendor_gave_no_answer(failure):
    script = Script(a=[failure, failure], b=[Outcome(label="from b")])
    _, out = router().first(plan("a", "b"), script, Attempts(), None)
    assert out.label == "from b"


@pytest.mark.parametrize(
    "failure",
    [
        errors.NoFace("no face"),
        errors.InvalidImage("bad"),
        errors.VendorTimeout("read timeout", sent=True),  # may have billed: never ask another
        errors.VendorBadResponse("tampered"),
        errors.VendorRejected("param"),
    ],
    ids=lambda e: e.code,
)
def test_fallback_stops_on_caller_errors_and_possible_bills(failure):
    script = Script(a=[failure], b=[Outcome()])
    with pytest.raises(type(failure)):
        router().first(plan("a", "b"), script, Attempts(), None)
    assert script.calls == ["a"]


def test_an_answer_is_final_even_a_no_match():
    script = Script(a=[Outcome(label="no_match")], b=[Outcome(label="match")])
    _, out = router().first(plan("a", "b"), script, Attempts(), None)
    assert out.label == "no_match"
    assert script.calls == ["a"]


def test_retries_only_what_cannot_have_billed():
    script = Script(a=[refused(), Outcome(label="second try")])
    attempts = Attempts()
    _, out = router(retries=1).first(plan("a"), script, attempts, None)
    assert out.label == "second try"
    assert [a.outcome for a in attempts.items] == ["VENDOR_UNAVAILABLE", "ok"]

    maybe_billed = errors.VendorUnavailable("reset after send", billed=None)
    script = Script(a=[maybe_billed, Outcome()])
    with pytest.raises(errors.VendorUnavailable):
        router(retries=3).first(plan("a"), script, Attempts(), None)
    assert script.calls == ["a"]


def test_retries_are_bounded_then_fallback():
    script = Script(a=[refused(), refused(), refused()], b=[Outcome(label="b")])
    attempts = Attempts()
    _, out = router(retries=1).first(plan("a", "b"), script, attempts, None)
    assert out.label == "b"
    assert [a.vendor for a in attempts.items] == ["a", "a", "b"]
    assert attempts.billed() is True


def test_no_attempt_starts_without_time_to_finish():
    script = Script(a=[Outcome()])
    attempts = Attempts()
    with pytest.raises(errors.DeadlineExceeded) as e:
        router().first(plan("a", "b"), script, attempts, time.monotonic() + 0.1)
    assert e.value.code == "VENDOR_TIMEOUT" and e.value.status == 504
    assert script.calls == []
    assert [a.outcome for a in attempts.items] == ["VENDOR_TIMEOUT"]


class Gate:
    """Notes what the router tells it, with what the script had called by then."""

    def __init__(self, script: Script):
        self.script = script
        self.events: list[tuple[str, str, int]] = []

    def before(self, vendor_id: str) -> None:
        self.events.append(("before", vendor_id, len(self.script.calls)))

    def after(self, vendor_id: str) -> None:
        self.events.append(("after", vendor_id, len(self.script.calls)))


def test_the_gate_is_told_of_each_vendor_call_a_retry_and_a_fallback_too():
    script = Script(a=[refused(), errors.VendorRateLimited("slow down", billed=False)], b=[Outcome(label="b")])
    gate = Gate(script)
    _, out = router(retries=1).first(plan("a", "b"), script, Attempts(), None, gate)
    assert out.label == "b"
    assert gate.events == [
        ("before", "a", 0),
        ("after", "a", 1),
        ("before", "a", 1),  # the retry
        ("after", "a", 2),
        ("before", "b", 2),  # the fallback
        ("after", "b", 3),
    ]


def test_the_gate_is_not_told_of_attempts_that_never_call():
    clock = Clock()
    book = MemoryHealthBook(CooldownPolicy(failures=1, window_s=60, cooldown_s=30), clock=clock)
    book.record_failure("a")  # a is cooling down
    script = Script(a=[Outcome()], b=[Outcome(label="b")])
    gate = Gate(script)
    _, out = router(book).first(plan("a", "b"), script, Attempts(), None, gate)
    assert out.label == "b" and gate.events == [("before", "b", 0), ("after", "b", 1)]

    gate.events.clear()
    with pytest.raises(errors.DeadlineExceeded):
        router().first(plan("b"), script, Attempts(), time.monotonic() + 0.1, gate)
    assert gate.events == []


def test_no_attempt_starts_when_the_gate_waited_until_too_close_to_the_deadline():
    script = Script(a=[Outcome()])
    attempts = Attempts()

    class Waits(Gate):
        def before(self, vendor_id: str) -> None:
            super().before(vendor_id)
            time.sleep(0.3)

    gate = Waits(script)
    with pytest.raises(errors.DeadlineExceeded):
        router().first(plan("a"), script, attempts, time.monotonic() + 1.0, gate)
    assert script.calls == [] and [a.outcome for a in attempts.items] == ["VENDOR_TIMEOUT"]


def test_consensus_tells_the_gate_of_each_vendor():
    script = Script(a=[Outcome()], b=[Outcome()])
    gate = Gate(script)
    router().every(plan("a", "b"), script, Attempts(), None, gate)
    assert sorted((e, v) for e, v, _ in gate.events) == [
        ("after", "a"),
        ("after", "b"),
        ("before", "a"),
        ("before", "b"),
    ]


def test_billed_summary():
    a = Attempts()
    a.add("x", "VENDOR_UNAVAILABLE", False, time.monotonic())
    assert a.billed() is False
    a.add("x", "VENDOR_TIMEOUT", None, time.monotonic())
    assert a.billed() is None
    a.add("y", "ok", True, time.monotonic())
    assert a.billed() is True


class Clock:
    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self):
        return self.t


def test_cooldown_opens_after_repeated_failures_and_a_probe_closes_it():
    clock = Clock()
    book = MemoryHealthBook(CooldownPolicy(failures=3, window_s=60, cooldown_s=30), clock=clock)
    r = router(book, retries=0)
    for _ in range(3):
        with pytest.raises(errors.VendorUnavailable):
            r.first(plan("a"), Script(a=[errors.VendorUnavailable("down", billed=None)]), Attempts(), None)
    assert book.health("a").state == "open"

    # While open the vendor is skipped (no call) and the fallback answers.
    script = Script(a=[Outcome()], b=[Outcome(label="b")])
    attempts = Attempts()
    _, out = r.first(plan("a", "b"), script, attempts, None)
    assert out.label == "b" and script.calls == ["b"]
    assert attempts.items[0].outcome == "VENDOR_COOLING_DOWN"

    clock.t += 31
    assert book.health("a").state == "half_open"
    assert book.allow("a") is True  # the probe
    assert book.allow("a") is False  # only one probe at a time
    book.record_success("a")
    assert book.health("a").state == "closed"


def test_a_failed_probe_reopens():
    clock = Clock()
    book = MemoryHealthBook(CooldownPolicy(failures=1, window_s=60, cooldown_s=30), clock=clock)
    book.record_failure("a")
    clock.t += 31
    assert book.allow("a")
    book.record_failure("a")
    assert book.health("a").state == "open"
    assert book.health("a").open_until == clock.t + 30


def test_failures_outside_the_window_do_not_add_up():
    clock = Clock()
    book = MemoryHealthBook(CooldownPolicy(failures=2, window_s=10, cooldown_s=30), clock=clock)
    book.record_failure("a")
    clock.t += 11
    book.record_failure("a")
    assert book.health("a").state == "closed"
    book.record_failure("a")
    assert book.health("a").state == "open"


def test_caller_errors_do_not_count_against_a_vendor():
    book = MemoryHealthBook(CooldownPolicy(failures=1))
    with pytest.raises(errors.NoFace):
        router(book).first(plan("a"), Script(a=[errors.NoFace("x")]), Attempts(), None)
    assert book.health("a").state == "closed"


@pytest.mark.parametrize(
    ("decisions", "asked", "rule", "expected"),
    [
        (["match", "match", "match"], 3, "all", "match"),
        (["match", "match"], 3, "all", "uncertain"),  # one vendor failed
        (["match", "no_match", "match"], 3, "all", "uncertain"),
        (["no_match", "no_match"], 2, "all", "no_match"),
        (["match", "no_match", "match"], 3, "majority", "match"),
        (["match", "no_match"], 3, "majority", "uncertain"),  # 1 of 3 each: no majority
        (["no_match", "no_match"], 3, "majority", "no_match"),
        (["match", "uncertain", "no_match"], 3, "majority", "uncertain"),
    ],
)
def test_combine(decisions, asked, rule, expected):
    assert combine(decisions, asked, rule) == expected


def test_every_asks_all_vendors_and_reports_each():
    script = Script(a=[Outcome(label="a")], b=[errors.VendorRateLimited("slow", billed=False)], c=[Outcome(label="c")])
    results = router(retries=0).every(plan("a", "b", "c"), script, Attempts(), None)
    assert [vid for vid, _, _ in results] == ["a", "b", "c"]
    assert isinstance(results[1][2], errors.VendorRateLimited)
    assert results[2][2].label == "c"


@pytest.mark.parametrize(("left", "starts"), [(0.749, False), (0.75, True), (0.751, True)])
def test_the_minimum_time_for_an_attempt_is_the_documented_three_quarters_of_a_second(monkeypatch, left, starts):
    """README: "No vendor attempt starts with less than 0.75 s left". A frozen clock puts the
    deadline just under, at and just over the line."""
    import facegate.router as router_module

    monkeypatch.setattr(router_module.time, "monotonic", lambda: 1000.0)
    script = Script(a=[Outcome()])
    attempts = Attempts()
    if starts:
        router().first(plan("a"), script, attempts, 1000.0 + left)
        assert script.calls == ["a"]
    else:
        with pytest.raises(errors.DeadlineExceeded):
            router().first(plan("a"), script, attempts, 1000.0 + left)
        assert script.calls == [] and attempts.items[0].outcome == "VENDOR_TIMEOUT"
