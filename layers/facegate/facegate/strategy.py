"""The order in which a request's candidate vendors are tried: its ``strategy``.

* ``ordered`` (the default): as stated — ``vendor`` then ``fallback``, or the stage's order.
* ``cheapest``: by the stage's price per billed call (``FACEGATE_VENDOR_PRICES``; the built-in
  engine costs 0 unless priced). A vendor without a price comes after every priced one: an
  unknown price is not a low one.
* ``fastest``: by the median latency of the vendor's recent answers (``facegate.latency``). A
  vendor not observed yet comes after every observed one.

The sort is stable: ties, and the vendors without a price or an observation, keep the stated
order. A strategy only decides who is asked first; the router still skips a vendor in cooldown
and still moves on only when a vendor gave no answer. Each planned vendor carries the reason
for its place, and every attempt on it reports that reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from facegate import observability

if TYPE_CHECKING:
    from facegate.latency import LatencyBook, Observed
    from facegate.models import Strategy
    from facegate.router import Planned


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th …: right up to 20, and a plan holds at most six vendors."""
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n, 'th') }"


def arrange(
    plan: Sequence[Planned],
    strategy: Strategy,
    *,
    prices: Mapping[str, float] | None = None,
    currency: str = "CNY",
    latency: LatencyBook | None = None,
) -> list[Planned]:
    """``plan`` in the order ``strategy`` says, each vendor with the reason for its place.
    Reads observed latencies only for ``fastest``."""
    keys: list[float | None]
    if strategy == "ordered":
        keys = [None] * len(plan)
        said = ["as stated"] * len(plan)
    elif strategy == "cheapest":
        prices = prices or {}
        keys = [prices.get(p.id) for p in plan]
        said = [
            "no price set (after priced vendors, stated order)" if k is None else f"{k:g} {currency} per call"
            for k in keys
        ]
    elif strategy == "fastest":
        seen = _observed(latency, [p.id for p in plan])
        keys = [seen[p.id].median_ms if p.id in seen else None for p in plan]
        said = [
            f"median {seen[p.id].median_ms:.0f} ms over {_sampled(seen[p.id].calls)}"
            if p.id in seen
            else "no latency observed yet (after observed vendors, stated order)"
            for p in plan
        ]
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    order = sorted(range(len(plan)), key=lambda i: (keys[i] is None, keys[i] or 0.0))
    n = len(plan)
    arranged = []
    for rank, i in enumerate(order, start=1):
        tied = keys[i] is not None and keys.count(keys[i]) > 1
        reason = f"{strategy}: {said[i]}{' (a tie: stated order)' if tied else ''}, {ordinal(rank)} of {n}"
        arranged.append(replace(plan[i], reason=reason))
    return arranged


def _observed(latency: LatencyBook | None, vendors: list[str]) -> dict[str, Observed]:
    """Best effort, like the cooldowns' bookkeeping: a state-table hiccup leaves every vendor
    unobserved (so in the stated order), never fails the request."""
    if latency is None:
        return {}
    try:
        return latency.observed(vendors)
    except Exception:
        observability.logger.warning("observed latencies unavailable", exc_info=True)
        return {}


def _sampled(calls: int) -> str:
    """How many answers a median stands on; "sampled" since a container writes at most one
    sample per vendor per FACEGATE_LATENCY_SAMPLE_INTERVAL_S (facegate.latency)."""
    return "its last sampled answer" if calls == 1 else f"its last {calls} sampled answers"
