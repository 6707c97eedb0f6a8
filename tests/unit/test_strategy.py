"""Strategies: the order a request's candidate vendors are tried in, and why. Ordering
only: cooldowns and failover stay the router's, and are checked here to be unchanged."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from facegate import errors
from facegate.config import Settings
from facegate.health import CooldownPolicy, MemoryHealthBook
from facegate.latency import MemoryLatencyBook
from facegate.models import CompareRequest, DetectRequest
from facegate.router import Attempts, Planned, RetryPolicy, Router
from facegate.strategy import arrange, ordinal


@dataclass
class Outcome:
    billed: bool | None = True
    label: str = ""


def plan(*ids: str) -> list[Planned]:
    return [Planned(type(f"V_{vid}", (), {"id": vid}), None) for vid in ids]


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


def order(arranged) -> list[str]:
    return [p.id for p in arranged]


def reasons(arranged) -> dict[str, str]:
    return {p.id: p.reason for p in arranged}


def latencies(**observed: list[float]) -> MemoryLatencyBook:
    book = MemoryLatencyBook(rng=random.Random(7), sample_interval_s=0)  # every answer written
    for vendor, samples in observed.items():
        for ms in samples:
            book.record(vendor, ms)
    return book


def test_ordinals():
    assert [ordinal(n) for n in range(1, 21)] == [
        *("1st", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th", "9th", "10th"),
        *("11th", "12th", "13th", "14th", "15th", "16th", "17th", "18th", "19th", "20th"),
    ]


def test_prices_are_in_the_stage_currency_cny_unless_named():
    assert arrange(plan("a"), "cheapest", prices={"a": 0.5})[0].reason == "cheapest: 0.5 CNY per call, 1st of 1"
    assert arrange(plan("a"), "cheapest", prices={"a": 0.5}, currency="USD")[0].reason == (
        "cheapest: 0.5 USD per call, 1st of 1"
    )


def test_an_unknown_strategy_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown strategy 'random'"):
        arrange(plan("a"), "random")  # type: ignore[arg-type]


def test_ordered_keeps_the_stated_order_and_says_so():
    got = arrange(plan("b", "a", "c"), "ordered")
    assert order(got) == ["b", "a", "c"]
    assert reasons(got) == {
        "b": "ordered: as stated, 1st of 3",
        "a": "ordered: as stated, 2nd of 3",
        "c": "ordered: as stated, 3rd of 3",
    }


def test_cheapest_puts_the_lowest_price_first():
    got = arrange(plan("a", "b", "c"), "cheapest", prices={"a": 0.3, "b": 0.1, "c": 0.25}, currency="CNY")
    assert order(got) == ["b", "c", "a"]
    assert reasons(got) == {
        "b": "cheapest: 0.1 CNY per call, 1st of 3",
        "c": "cheapest: 0.25 CNY per call, 2nd of 3",
        "a": "cheapest: 0.3 CNY per call, 3rd of 3",
    }


def test_cheapest_ties_keep_the_stated_order():
    got = arrange(plan("a", "b", "c"), "cheapest", prices={"a": 0.2, "b": 0.2, "c": 0.05}, currency="CNY")
    assert order(got) == ["c", "a", "b"]
    assert reasons(got)["a"] == "cheapest: 0.2 CNY per call (a tie: stated order), 2nd of 3"
    assert reasons(got)["b"] == "cheapest: 0.2 CNY per call (a tie: stated order), 3rd of 3"
    assert "tie" not in reasons(got)["c"]
    assert order(arrange(plan("b", "a", "c"), "cheapest", prices={"a": 0.2, "b": 0.2, "c": 0.05})) == ["c", "b", "a"]


def test_a_vendor_without_a_price_comes_after_every_priced_one_in_the_stated_order():
    got = arrange(plan("x", "a", "y", "b"), "cheapest", prices={"a": 0.5, "b": 0.1}, currency="CNY")
    assert order(got) == ["b", "a", "x", "y"]
    assert reasons(got)["x"] == "cheapest: no price set (after priced vendors, stated order), 3rd of 4"
    # A free vendor (price 0) is priced, not unknown: it comes first.
    assert order(arrange(plan("a", "b", "c"), "cheapest", prices={"a": 0.1, "c": 0.0})) == ["c", "a", "b"]


def test_the_built_in_engine_is_priced_at_zero_unless_the_stage_prices_it():
    assert Settings.from_env({}).vendor_prices == {"local": 0.0}
    assert Settings.from_env({"FACEGATE_VENDOR_PRICES": '{"shuxun": 0.1}'}).vendor_prices == {
        "local": 0.0,
        "shuxun": 0.1,
    }
    assert Settings.from_env({"FACEGATE_VENDOR_PRICES": '{"local": 0.02}'}).vendor_prices == {"local": 0.02}


def test_fastest_puts_the_lowest_recent_median_first():
    book = latencies(a=[300, 320, 310], b=[120, 100, 5000], c=[200])  # b: one slow answer does not move it
    got = arrange(plan("a", "b", "c"), "fastest", latency=book)
    assert order(got) == ["b", "c", "a"]
    assert reasons(got) == {
        "b": "fastest: median 120 ms over its last 3 sampled answers, 1st of 3",
        "c": "fastest: median 200 ms over its last sampled answer, 2nd of 3",
        "a": "fastest: median 310 ms over its last 3 sampled answers, 3rd of 3",
    }


def test_fastest_without_observations_keeps_the_stated_order_after_the_observed():
    got = arrange(plan("a", "b", "c"), "fastest", latency=latencies())
    assert order(got) == ["a", "b", "c"]
    assert reasons(got)["a"] == "fastest: no latency observed yet (after observed vendors, stated order), 1st of 3"
    got = arrange(plan("a", "b", "c"), "fastest", latency=latencies(c=[900]))
    assert order(got) == ["c", "a", "b"]
    assert order(arrange(plan("a", "b"), "fastest", latency=None)) == ["a", "b"]


def test_fastest_ties_keep_the_stated_order():
    got = arrange(plan("a", "b", "c"), "fastest", latency=latencies(a=[200], b=[100], c=[100]))
    assert order(got) == ["b", "c", "a"]
    assert "(a tie: stated order)" in reasons(got)["b"] and "(a tie: stated order)" in reasons(got)["c"]


def test_fastest_when_latencies_cannot_be_read_keeps_the_stated_order():
    class Broken(MemoryLatencyBook):
        def _read(self, vendors):
            raise RuntimeError("state table unavailable")

    got = arrange(plan("a", "b"), "fastest", latency=Broken())
    assert order(got) == ["a", "b"]
    assert reasons(got)["a"].startswith("fastest: no latency observed yet")


def test_only_fastest_reads_latencies():
    class Counting(MemoryLatencyBook):
        reads = 0

        def _read(self, vendors):
            Counting.reads += 1
            return super()._read(vendors)

    book = Counting()
    arrange(plan("a", "b"), "ordered", latency=book)
    arrange(plan("a", "b"), "cheapest", prices={}, latency=book)
    assert Counting.reads == 0
    arrange(plan("a", "b"), "fastest", latency=book)
    assert Counting.reads == 1


# --- through the router: skipping and failover are unchanged ------------------------------


def router(health=None, latency=None):
    return Router(
        health or MemoryHealthBook(),
        vendor_for=lambda cls: cls,
        retry=RetryPolicy(1, 0),
        sleep=lambda s: None,
        latency=latency,
    )


def attempts_of(attempts: Attempts) -> list[tuple[str, str, str | None]]:
    return [(a.vendor, a.outcome, a.reason) for a in attempts.items]


def test_a_cheapest_vendor_in_cooldown_is_skipped_and_the_next_cheapest_answers():
    health = MemoryHealthBook(CooldownPolicy(failures=1))
    health.record_failure("b")
    arranged = arrange(plan("a", "b", "c"), "cheapest", prices={"a": 0.3, "b": 0.1, "c": 0.2}, currency="CNY")
    script = Script(c=[Outcome(label="from c")])
    attempts = Attempts()
    vendor, out = router(health).first(arranged, script, attempts, None)
    assert (vendor.id, out.label, script.calls) == ("c", "from c", ["c"])
    assert attempts_of(attempts) == [
        ("b", "VENDOR_COOLING_DOWN", "cheapest: 0.1 CNY per call, 1st of 3"),
        ("c", "ok", "cheapest: 0.2 CNY per call, 2nd of 3"),
    ]


def test_the_cheapest_vendor_answer_is_final_even_a_no_match():
    arranged = arrange(plan("a", "b"), "cheapest", prices={"a": 0.3, "b": 0.1})
    script = Script(b=[Outcome(label="no_match")], a=[Outcome(label="match")])
    vendor, out = router().first(arranged, script, Attempts(), None)
    assert (vendor.id, out.label, script.calls) == ("b", "no_match", ["b"])


def test_fastest_fails_over_only_without_an_answer():
    book = latencies(a=[500], b=[100])
    arranged = arrange(plan("a", "b"), "fastest", latency=book)
    unavailable = errors.VendorUnavailable("5xx", billed=None)
    script = Script(b=[unavailable], a=[Outcome(label="from a")])
    attempts = Attempts()
    vendor, _ = router(latency=book).first(arranged, script, attempts, None)
    assert vendor.id == "a"
    assert [(a.vendor, a.outcome) for a in attempts.items] == [("b", "VENDOR_UNAVAILABLE"), ("a", "ok")]
    assert attempts.items[0].reason == "fastest: median 100 ms over its last sampled answer, 1st of 2"

    no_face = errors.NoFace("no face", billed=True)
    script = Script(b=[no_face], a=[Outcome()])
    with pytest.raises(errors.NoFace):
        router(latency=book).first(arranged, script, Attempts(), None)
    assert script.calls == ["b"]


def test_the_router_notes_the_latency_of_answers_only():
    book = MemoryLatencyBook(rng=random.Random(1))
    script = Script(a=[errors.VendorUnavailable("5xx", billed=None)], b=[Outcome()])
    attempts = Attempts()
    router(latency=book).first(plan("a", "b"), script, attempts, None)
    seen = book.observed(["a", "b"])
    assert list(seen) == ["b"]
    assert seen["b"].calls == 1 and seen["b"].median_ms == attempts.items[-1].latency_ms


def test_a_latency_write_that_fails_does_not_fail_the_answer():
    class Broken(MemoryLatencyBook):
        def _write(self, vendor, slot, sample):
            raise RuntimeError("state table unavailable")

    vendor, _ = router(latency=Broken()).first(plan("a"), Script(a=[Outcome()]), Attempts(), None)
    assert vendor.id == "a"


def test_consensus_attempts_say_they_were_asked_at_once():
    attempts = Attempts()
    router().every(plan("a", "b"), Script(a=[Outcome()], b=[Outcome()]), attempts, None)
    assert {a.reason for a in attempts.items} == {"consensus: asked at once with the others"}


# --- the request field -----------------------------------------------------------------

IMAGE = {"base64": "aGk="}


def test_every_routed_request_takes_a_strategy_defaulting_to_ordered():
    assert DetectRequest(image=IMAGE).strategy == "ordered"
    assert DetectRequest(image=IMAGE, strategy="fastest").strategy == "fastest"
    with pytest.raises(ValidationError, match="strategy"):
        DetectRequest(image=IMAGE, strategy="random")


@pytest.mark.parametrize("strategy", ["cheapest", "fastest"])
def test_a_consensus_takes_no_order(strategy):
    consensus = {"vendors": ["local", "shuxun"]}
    with pytest.raises(ValidationError, match="consensus asks all its vendors at once"):
        CompareRequest(image1=IMAGE, image2=IMAGE, consensus=consensus, strategy=strategy)
    assert CompareRequest(image1=IMAGE, image2=IMAGE, consensus=consensus, strategy="ordered").consensus
