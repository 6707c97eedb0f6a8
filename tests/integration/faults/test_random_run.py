"""A seeded random run: over a thousand requests with mixed faults lose nothing.

Requests mix every vendor and operation, fallbacks, consensus, identity checks the
vendor refuses, and the caller's own mistakes; before many of them a fault is queued
on a random sandbox (often one the request will use, sometimes another, where it
waits for a later request), and now and then a sandbox fails every call for a while.

Then, over the whole run:

* every request got a contract answer with a request id, never INTERNAL_ERROR;
* the results log holds exactly one record per request, with the same ids;
* each record's attempts obey the routing rules (plan order; failover only after a
  vendor-side failure without an answer; a retry only where nothing was sent);
* every attempt matches one request the sandbox received, in order, and billing
  reconciles: an attempt recorded billed=true was billed by the sandbox, one
  recorded billed=false was not (a false "not billed" is the bug that matters), and
  the ones facegate could not know (null) account for exactly the rest of the
  sandboxes' own billed count;
* no request with a caller error produced any sandbox traffic.
"""

from __future__ import annotations

import base64
import itertools
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from facegate_local.sandboxes.base import FAULTS

from .faultkit import COMPARE_VENDORS, IDENTITY, VENDORS

SEED = 20261122
REQUESTS = 1000
# Shorter than the other tests' (every timeout here is waited out in full); still
# many times a sandbox's answer time, and a spurious timeout would only add an
# unknown-billing attempt, which the checks below account for.
READ_TIMEOUT_S = 0.25

STATUSES = {200, 400, 404, 405, 409, 413, 415, 422, 429, 502, 503, 504}
CALLER_CODES = {
    "INVALID_REQUEST",
    "MALFORMED_JSON",
    "UNSUPPORTED_MEDIA_TYPE",
    "UNKNOWN_VENDOR",
    "UNSUPPORTED_OPERATION",
    "INVALID_OPTION",
    "INVALID_IMAGE",
    "UNSUPPORTED_IMAGE_FORMAT",
    "IMAGE_TOO_LARGE",
    "INVALID_ID_NUMBER",
    "INVALID_NAME",
}
# Outcomes after which the router may move on to the next vendor: the vendor gave
# no answer and the request is not at fault. (VENDOR_TIMEOUT only when unsent.)
FAILOVER_OUTCOMES = {
    "VENDOR_UNAVAILABLE",
    "VENDOR_RATE_LIMITED",
    "VENDOR_QUOTA_EXHAUSTED",
    "VENDOR_AUTH_FAILED",
    "VENDOR_NOT_CONFIGURED",
    "VENDOR_COOLING_DOWN",
}
# Fault weights: a timeout costs a read timeout of wall time, so it is rarer.
FAULT_WEIGHTS = {f: (1 if f == "timeout" else 4) for f in FAULTS}


def _check_char(first17: str) -> str:
    weighted = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    return "10X98765432"[weighted % 11]


# A valid number the Jumei sandbox's record does not hold (it answers 102), and one
# whose check character is wrong (refused by facegate before any vendor).
UNKNOWN_ID = "11010519851212345" + _check_char("11010519851212345")
BAD_CHECK_ID = IDENTITY["id_number"][:17] + ("0" if IDENTITY["id_number"][17] != "0" else "1")
TEXT_B64 = base64.b64encode(b"this is plainly not an image, just some words").decode()


@dataclass
class Sent:
    n: int
    kind: str
    plan: list[str]  # the vendors in routing order (consensus: the vendors asked)
    consensus: bool = False
    caller_error: str | None = None  # the code a bad request must get
    faults: list[tuple[str, str]] = field(default_factory=list)
    status: int = 0
    body: Any = None


class Run:
    def __init__(self, gate, rng: random.Random) -> None:
        self.gate = gate
        self.rng = rng
        self.sticky: dict[str, int] = {}  # vendor -> requests left with fail_always

    def image(self) -> dict[str, str]:
        # Mostly the small copies; now and then a full-size photo.
        full = self.rng.random() < 0.05
        return self.gate.image(self.rng.choice(("obama.jpg", "obama2.jpg")), full=full)

    def compare_plan(self) -> tuple[dict, list[str]]:
        rng = self.rng
        vendor = rng.choice(COMPARE_VENDORS)
        others = [v for v in COMPARE_VENDORS if v != vendor]
        fallback = rng.sample(others, rng.choice((0, 1, 1, 2, 3)))
        body: dict[str, Any] = {
            "image1": self.image(),
            "image2": self.image(),
            "vendor": vendor,
            "security_level": rng.choice(("low", "normal", "normal", "high")),
        }
        if fallback:
            body["fallback"] = fallback
        if "kuaidi100" in (vendor, *fallback) and rng.random() < 0.3:
            body["options"] = {"kuaidi100": {"source_face_type": "IDCARD", "compare_live_control": "LOW"}}
        return body, [vendor, *fallback]

    def build(self, n: int) -> tuple[str, dict | None, str | None, Sent]:
        """(operation, body, raw body, what was sent)."""
        rng = self.rng
        kind = rng.choices(
            ("compare", "default", "consensus", "identity", "detect", "features", "bad"),
            weights=(36, 3, 15, 14, 6, 6, 20),
        )[0]
        if kind == "compare":
            body, plan = self.compare_plan()
            return "compare", body, None, Sent(n, kind, plan)
        if kind == "default":  # no vendor named: the stage default (shuxun here)
            body = {"image1": self.image(), "image2": self.image()}
            return "compare", body, None, Sent(n, kind, ["shuxun"])
        if kind == "consensus":
            vendors = rng.sample(COMPARE_VENDORS, rng.choice((2, 2, 3, 4)))
            rule = rng.choice(("majority", "all"))
            body = {"image1": self.image(), "image2": self.image(), "consensus": {"vendors": vendors, "rule": rule}}
            return "compare", body, None, Sent(n, kind, vendors, consensus=True)
        if kind == "identity":
            who = rng.choices(("known", "wrong-name", "unknown-number"), weights=(8, 1, 1))[0]
            identity = dict(IDENTITY)
            if who == "wrong-name":
                identity["name"] = "李四"
            elif who == "unknown-number":
                identity["id_number"] = UNKNOWN_ID
            body = {**identity, "image": self.image(), "vendor": "jumei"}
            return "verify_identity", body, None, Sent(n, f"identity-{who}", ["jumei"])
        if kind in ("detect", "features"):
            body = {"image": self.image(), "vendor": "face2"}
            if kind == "detect" and rng.random() < 0.5:
                body["max_faces"] = rng.randint(1, 5)
            return kind, body, None, Sent(n, kind, ["face2"])
        return self.bad(n)

    def bad(self, n: int) -> tuple[str, dict | None, str | None, Sent]:
        rng = self.rng
        vendor = rng.choice(COMPARE_VENDORS)
        good = self.image()
        cases: list[tuple[str, dict | None, str | None, str]] = [
            ("compare", None, '{"image1": {"base64": "', "MALFORMED_JSON"),
            ("compare", {"image1": good, "vendor": vendor}, None, "INVALID_REQUEST"),
            ("compare", {"image1": {"base64": "@@@"}, "image2": good, "vendor": vendor}, None, "INVALID_IMAGE"),
            ("compare", {"image1": good, "image2": {"base64": TEXT_B64}, "vendor": vendor}, None, "INVALID_IMAGE"),
            ("compare", {"image1": good, "image2": good, "vendor": "acme"}, None, "INVALID_REQUEST"),
            (
                "compare",
                {"image1": good, "image2": good, "vendor": vendor, "consensus": {"vendors": ["face2", "zoloz"]}},
                None,
                "INVALID_REQUEST",
            ),
            (
                "compare",
                {"image1": good, "image2": good, "vendor": vendor, "fallback": ["face2", "face2"]},
                None,
                "INVALID_REQUEST",
            ),
            (
                "compare",
                {"image1": good, "image2": good, "vendor": "shuxun", "options": {"zoloz": {}}},
                None,
                "INVALID_OPTION",
            ),
            (
                "compare",
                {"image1": good, "image2": good, "vendor": "kuaidi100", "options": {"kuaidi100": {"x": 1}}},
                None,
                "INVALID_OPTION",
            ),
            (  # face tokens are kuaidi100's alone: refused when a fallback could not take them
                "compare",
                {
                    "image1": {"face_token": "0123456789abcdef"},
                    "image2": good,
                    "vendor": "kuaidi100",
                    "fallback": [rng.choice(("shuxun", "face2", "zoloz"))],
                },
                None,
                "INVALID_REQUEST",
            ),
            (
                "compare",
                {"image1": good, "image2": good, "consensus": {"vendors": [vendor]}},
                None,
                "INVALID_REQUEST",
            ),
            ("compare", {"image1": good, "image2": good, "vendor": "jumei"}, None, "UNSUPPORTED_OPERATION"),
            (
                "verify_identity",
                {**IDENTITY, "id_number": BAD_CHECK_ID, "image": good, "vendor": "jumei"},
                None,
                "INVALID_ID_NUMBER",
            ),
            ("verify_identity", {**IDENTITY, "name": "Z4ng 3", "image": good, "vendor": "jumei"}, None, "INVALID_NAME"),
            ("verify_identity", {**IDENTITY, "image": good, "vendor": "shuxun"}, None, "UNSUPPORTED_OPERATION"),
            ("detect", {"image": good, "vendor": "zoloz"}, None, "UNSUPPORTED_OPERATION"),
            ("detect", {"image": good, "vendor": "face2", "max_faces": 0}, None, "INVALID_REQUEST"),
            ("features", {"image": {"base64": TEXT_B64}, "vendor": "face2"}, None, "INVALID_IMAGE"),
        ]
        op, body, raw, code = rng.choice(cases)
        return op, body, raw, Sent(n, "bad", [], caller_error=code)

    def inject(self, sent: Sent) -> None:
        """Queue faults before a request; start or end a spell of sticky failure."""
        rng = self.rng
        for vendor in list(self.sticky):
            self.sticky[vendor] -= 1
            if self.sticky[vendor] <= 0:
                self.gate.boxes[vendor].fail_always(None)
                del self.sticky[vendor]
        if rng.random() < 0.02:
            vendor = rng.choice(VENDORS)
            fault = rng.choice([f for f in FAULTS if f != "timeout"])
            self.gate.boxes[vendor].fail_always(fault)
            self.sticky[vendor] = rng.randint(3, 12)
            sent.faults.append((vendor, f"always:{fault}"))
        if rng.random() < 0.4:
            for _ in range(rng.choice((1, 1, 1, 2))):
                vendor = rng.choice(sent.plan) if sent.plan and rng.random() < 0.75 else rng.choice(VENDORS)
                fault = rng.choices(list(FAULT_WEIGHTS), weights=list(FAULT_WEIGHTS.values()))[0]
                self.gate.boxes[vendor].fail_next(fault)
                sent.faults.append((vendor, fault))

    def send(self, n: int) -> Sent:
        op, body, raw, sent = self.build(n)
        self.inject(sent)
        slow = None
        if sent.plan and self.rng.random() < 0.01:
            # The vendor does (and bills) the work but answers after facegate's read
            # timeout: the answer is lost, the bill is not. The sandbox faults cannot
            # do this (their stall and reset never bill), so it is played with latency.
            slow = self.rng.choice(sent.plan)
            self.gate.boxes[slow].latency_s = READ_TIMEOUT_S + 0.3
            sent.faults.append((slow, "slow"))
        try:
            sent.status, sent.body = self.gate.call(op, body, raw=raw, tag=n)
        finally:
            if slow is not None:
                self.gate.boxes[slow].latency_s = 0.0
        return sent


def aggregate(billed: list[bool | None]) -> bool | None:
    if any(b is True for b in billed):
        return True
    if any(b is None for b in billed):
        return None
    return False


def check_routing(sent: Sent, record: dict, attempts: list[tuple[str, str, bool | None]]) -> None:
    """The attempts of one request obey the routing rules."""
    where = f"request {sent.n} ({sent.kind}, faults {sent.faults}): {attempts}"
    by_vendor: dict[str, list[tuple[str, str, bool | None]]] = defaultdict(list)
    for a in attempts:
        by_vendor[a[0]].append(a)
    # A vendor is tried again only after an attempt that cannot have reached it.
    for tries in by_vendor.values():
        for a in tries[:-1]:
            assert a[1] in ("VENDOR_UNAVAILABLE", "VENDOR_TIMEOUT") and a[2] is False, where
        assert len(tries) <= 2, where  # FACEGATE_MAX_RETRIES is 1
        assert all(a[1] != "ok" for a in tries[:-1]), where
    if sent.consensus:
        assert set(by_vendor) == set(sent.plan), where  # every vendor asked, no other
        return
    order = list(dict.fromkeys(a[0] for a in attempts))
    assert order == sent.plan[: len(order)], where  # plan order, no skipping
    for a, b in itertools.pairwise(attempts):
        if a[0] != b[0]:  # moved on to the next vendor
            assert a[1] in FAILOVER_OUTCOMES or (a[1] == "VENDOR_TIMEOUT" and a[2] is False), where
    last = attempts[-1]
    if record["status"] == "ok":
        assert last[1] == "ok" and last[0] == record["vendor"], where
    else:
        assert (last[0], last[1]) == (record["vendor"], record["error_code"]), where
        # A failure the router could have moved on from only ends the request when no
        # vendor was left to try. (An unavailable vendor with billing unknown may have
        # dropped the connection after the request went out: that ends the request.)
        if last[1] in FAILOVER_OUTCOMES and not (last[1] == "VENDOR_UNAVAILABLE" and last[2] is None):
            assert last[0] == sent.plan[-1], where


def test_a_seeded_random_run_loses_nothing(gate):
    gate.configure(read_timeout=str(READ_TIMEOUT_S))
    rng = random.Random(SEED)
    run = Run(gate, rng)
    sent = [run.send(n) for n in range(REQUESTS)]
    for vendor in list(run.sticky):
        gate.boxes[vendor].fail_always(None)

    # (a) every request answered in the contract shape, never an internal error.
    ids = []
    for s in sent:
        assert s.status in STATUSES, (s.n, s.kind, s.status, s.body)
        assert isinstance(s.body, dict) and s.body.get("request_id"), (s.n, s.body)
        ids.append(s.body["request_id"])
        if s.status == 200:
            assert "error" not in s.body and s.body["attempts"], (s.n, s.body)
        else:
            assert s.body["error"]["code"] != "INTERNAL_ERROR", (s.n, s.kind, s.body)
        if s.caller_error is not None:
            assert 400 <= s.status < 500 and s.body["error"]["code"] == s.caller_error, (s.n, s.body)
    assert len(set(ids)) == REQUESTS

    # (b) exactly one results-log record per request.
    records = gate.all_records()
    assert len(records) == REQUESTS
    by_id = {r["request_id"]: r for r in records}
    assert set(by_id) == set(ids)

    entries = gate.boxes.ledger.settle()
    assert all(e.billed is not None for e in entries), "a sandbox request never finished"
    # The ledger is the sandboxes' own count, request by request.
    assert len(entries) == sum(gate.boxes.requests().values())
    assert sum(e.billed for e in entries) == sum(gate.boxes.billed().values())
    dispatched: dict[tuple[int, str], list] = defaultdict(list)
    for e in entries:
        dispatched[(e.tag, e.vendor)].append(e)

    counts: Counter[str] = Counter()
    for s in sent:
        record = by_id[s.body["request_id"]]
        attempts = gate.attempts(record)
        counts[f"status {s.status}"] += 1
        counts[f"kind {s.kind}"] += 1
        for fault in s.faults:
            counts[f"fault {fault[1]}"] += 1
        if s.status == 200:
            assert gate.attempts(s.body) == attempts
            assert record["status"] == "ok"
        else:
            assert (record["status"], record["error_code"]) == ("error", s.body["error"]["code"])
            assert int(record["http_status"]) == s.status
        if attempts:
            assert record.get("billed") == aggregate([a[2] for a in attempts]), (s.n, attempts, record.get("billed"))

        # (d) a caller error reaches no vendor at all.
        if s.caller_error is not None:
            assert attempts == [], (s.n, s.body, attempts)
            assert not any(key[0] == s.n for key in dispatched), (s.n, s.body)
            continue
        check_routing(s, record, attempts)

        # (c) every attempt is one request the sandbox received, in order, and its
        # billed flag never contradicts the sandbox.
        for vendor in {a[0] for a in attempts} | {v for (n, v) in dispatched if n == s.n}:
            mine = [a for a in attempts if a[0] == vendor]
            seen = dispatched.get((s.n, vendor), [])
            assert len(mine) == len(seen), (s.n, s.kind, s.faults, vendor, mine, seen)
            for (_, outcome, billed), entry in zip(mine, seen, strict=True):
                counts["attempts"] += 1
                if billed is True:
                    counts["billed true"] += 1
                    assert entry.billed, (s.n, vendor, outcome, "recorded billed, sandbox did not bill")
                elif billed is False:
                    counts["billed false"] += 1
                    assert not entry.billed, (s.n, vendor, outcome, "recorded NOT billed, but the sandbox billed")
                else:
                    counts["billed null"] += 1
                    counts["null, sandbox billed"] += entry.billed

    sandbox_total = sum(gate.boxes.billed().values())
    assert counts["billed true"] + counts["null, sandbox billed"] == sandbox_total
    # The run must actually have exercised what it claims to.
    assert counts["billed null"] > 0 and counts["null, sandbox billed"] > 0
    assert all(counts[f"fault {f}"] > 0 for f in (*FAULTS, "slow"))
    assert counts["kind consensus"] > 0 and counts["kind bad"] > 0
    print("\nrandom run:", dict(sorted(counts.items())), "sandbox billed:", gate.boxes.billed())
