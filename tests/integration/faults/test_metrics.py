"""The per-vendor metrics, read back from what Powertools prints (CloudWatch EMF on
stdout, which is all Lambda needs to publish them): each fact appears once, with the
dimensions ``facegate.observability.METRICS`` declares (the template's alarms rely on
them), and its values agree with what the sandboxes themselves saw and billed."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from facegate.observability import (
    COOLDOWN_OPENED,
    METRICS,
    RESULTS_LOG_WRITE_FAILED,
    VENDOR_ANSWERS,
    VENDOR_ATTEMPTS,
    VENDOR_BILLED,
    VENDOR_ERRORS,
    VENDOR_FAILURES,
    VENDOR_FALLBACKS,
    VENDOR_LATENCY,
)


class Emitted:
    """The EMF records printed so far: (metric name, its dimensions) -> values."""

    def __init__(self, text: str) -> None:
        self.values: dict[tuple[str, frozenset], list[float]] = defaultdict(list)
        for line in text.splitlines():
            if not line.startswith("{") or '"_aws"' not in line:
                continue
            record = json.loads(line)
            for directive in record["_aws"]["CloudWatchMetrics"]:
                assert directive["Namespace"] == "Facegate"
                for dimension_set in directive["Dimensions"]:
                    dims = frozenset((k, record[k]) for k in dimension_set)
                    for metric in directive["Metrics"]:
                        value = record[metric["Name"]]
                        self.values[(metric["Name"], dims)] += value if isinstance(value, list) else [value]

    def ours(self) -> dict[tuple[str, frozenset], list[float]]:
        return {k: v for k, v in self.values.items() if k[0] in METRICS}

    def get(self, name: str, **dims: str) -> list[float]:
        return self.values.get(key(name, **dims), [])

    def named(self, name: str) -> list[tuple[str, frozenset]]:
        return [k for k in self.ours() if k[0] == name]


def key(name: str, **dims: str) -> tuple[str, frozenset]:
    return name, frozenset({"service": "facegate", **dims}.items())


@pytest.fixture
def emitted(capsys):
    def read() -> Emitted:
        return Emitted(capsys.readouterr().out)

    read()  # forget what came before
    return read


def assert_declared_dimensions(emitted: Emitted) -> None:
    for name, dims in emitted.ours():
        assert {k for k, _ in dims} == set(METRICS[name]), name


def test_a_fallback_counts_attempts_latency_billing_errors_the_move_and_the_cooldown(gate, emitted):
    gate.configure(cooldown_failures="1")  # the first failure opens shuxun's circuit
    gate.boxes["shuxun"].fail_always("http_500")

    status, body = gate.compare("shuxun", ["kuaidi100"])

    assert status == 200, body
    assert body["vendor"] == "kuaidi100"
    seen = emitted()
    assert_declared_dimensions(seen)
    failed, answered = body["attempts"]
    assert (failed["vendor"], answered["vendor"]) == ("shuxun", "kuaidi100")
    assert failed["outcome"] != "ok"
    billed = gate.boxes.billed()
    for attempt in body["attempts"]:
        vid = attempt["vendor"]
        assert seen.get(VENDOR_ATTEMPTS, vendor=vid) == [1]
        assert seen.get(VENDOR_LATENCY, vendor=vid) == [attempt["latency_ms"]]
        assert seen.get(VENDOR_BILLED, vendor=vid) == [billed[vid]]  # the sandbox's own count
    assert seen.get(VENDOR_FAILURES, vendor="shuxun") == [1]
    assert seen.get(VENDOR_FAILURES, vendor="kuaidi100") == [0]
    assert seen.get(VENDOR_ERRORS, vendor="shuxun", error_code=failed["outcome"]) == [1]
    assert seen.named(VENDOR_ERRORS) == [key(VENDOR_ERRORS, vendor="shuxun", error_code=failed["outcome"])]
    assert seen.get(VENDOR_FALLBACKS, vendor="shuxun") == [1]
    assert seen.get(VENDOR_FALLBACKS, vendor="kuaidi100") == []
    assert seen.get(COOLDOWN_OPENED, vendor="shuxun") == [1]
    assert seen.get(VENDOR_ANSWERS, vendor="kuaidi100", decision=body["decision"]) == [1]
    assert seen.named(VENDOR_ANSWERS) == [key(VENDOR_ANSWERS, vendor="kuaidi100", decision=body["decision"])]

    # Cooling down: shuxun is not called (no attempt, no latency), its skip is counted by
    # code, the move to kuaidi100 is a fallback again, and the circuit does not open twice.
    status, body = gate.compare("shuxun", ["kuaidi100"])
    assert status == 200, body
    seen = emitted()
    assert_declared_dimensions(seen)
    assert [a["outcome"] for a in body["attempts"]] == ["VENDOR_COOLING_DOWN", "ok"]
    assert seen.get(VENDOR_ATTEMPTS, vendor="shuxun") == []
    assert seen.get(VENDOR_LATENCY, vendor="shuxun") == []
    assert seen.get(VENDOR_ERRORS, vendor="shuxun", error_code="VENDOR_COOLING_DOWN") == [1]
    assert seen.get(VENDOR_FALLBACKS, vendor="shuxun") == [1]
    assert seen.get(COOLDOWN_OPENED, vendor="shuxun") == []
    assert seen.get(VENDOR_ATTEMPTS, vendor="kuaidi100") == [1]


def test_a_failure_without_a_next_vendor_is_no_fallback(gate, emitted):
    gate.boxes["shuxun"].fail_always("http_500")

    status, body = gate.compare("shuxun")

    assert status == 503, body
    seen = emitted()
    assert_declared_dimensions(seen)
    assert seen.get(VENDOR_FAILURES, vendor="shuxun") == [1]
    assert seen.get(VENDOR_ERRORS, vendor="shuxun", error_code=body["error"]["code"]) == [1]
    assert not [k for k in seen.ours() if k[0] in (VENDOR_FALLBACKS, VENDOR_ANSWERS, COOLDOWN_OPENED)]


def test_every_consensus_vote_and_an_identity_check_are_answers_of_their_vendor(gate, emitted):
    status, body = gate.compare(consensus={"vendors": ["shuxun", "kuaidi100", "zoloz"], "rule": "majority"})
    assert status == 200, body
    status, identity = gate.verify_identity()
    assert status == 200, identity

    seen = emitted()
    assert_declared_dimensions(seen)
    for verdict in body["verdicts"]:
        assert seen.get(VENDOR_ANSWERS, vendor=verdict["vendor"], decision=verdict["decision"]) == [1]
    assert seen.get(VENDOR_ANSWERS, vendor="jumei", decision=identity["decision"]) == [1]
    assert sum(len(v) for (name, _), v in seen.ours().items() if name == VENDOR_ANSWERS) == 4


def test_a_lost_results_log_record_is_counted(gate, emitted, monkeypatch):
    gate.vendors()  # builds the service
    from facegate.service import default_service

    def refuse(record):
        raise RuntimeError("the results table is unreachable")

    monkeypatch.setattr(default_service().store, "put", refuse)

    status, body = gate.compare("shuxun")

    assert status == 200, body
    seen = emitted()
    assert_declared_dimensions(seen)
    assert seen.get(RESULTS_LOG_WRITE_FAILED) == [1]
