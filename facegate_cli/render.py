"""Human output: the API's answers in words. ``--json`` bypasses all of this."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facegate.models import (
        CompareResponse,
        DetectResponse,
        FeaturesResponse,
        UsageResponse,
        VendorsResponse,
        VerifyIdentityResponse,
    )


def _verdict(answer: CompareResponse | VerifyIdentityResponse, same: str, different: str) -> str:
    s, t = answer.similarity, answer.threshold
    tail = f"vendor {answer.vendor}, {answer.latency_ms} ms"
    if answer.decision == "match":
        return f"match — {same} (similarity {s:.2f} ≥ threshold {t:.2f}, {tail})"
    if answer.decision == "no_match":
        return f"no match — {different} (similarity {s:.2f} < threshold {t:.2f}, {tail})"
    return f"uncertain — the vendor cannot tell (similarity {s:.2f}, threshold {t:.2f}, {tail})"


def compare(answer: CompareResponse) -> list[str]:
    lines = [_verdict(answer, "same person", "different people")]
    for v in answer.verdicts or []:
        if v.error is not None:
            lines.append(f"  {v.vendor}: error {v.error.code}")
        else:
            lines.append(f"  {v.vendor}: {v.decision} (similarity {v.similarity:.2f})")
    lines.append(f"request_id {answer.request_id}")
    return lines


def verify_identity(answer: VerifyIdentityResponse) -> list[str]:
    holder = f"{answer.name_masked}, {answer.id_number_masked}"
    return [
        _verdict(answer, f"the photo is the ID holder {holder}", f"the photo is not the ID holder {holder}"),
        f"request_id {answer.request_id}",
    ]


def detect(answer: DetectResponse) -> list[str]:
    count = answer.face_count
    size = f", image {answer.image_width}×{answer.image_height}" if answer.image_width and answer.image_height else ""
    lines = [f"{count} face{'' if count == 1 else 's'} (vendor {answer.vendor}, {answer.latency_ms} ms{size})"]
    for i, face in enumerate(answer.faces, 1):
        b = face.box
        confidence = f" confidence {face.confidence:.2f}" if face.confidence is not None else ""
        lines.append(f"  face {i}: left {b.left} top {b.top} width {b.width} height {b.height}{confidence}")
    lines.append(f"request_id {answer.request_id}")
    return lines


def features(answer: FeaturesResponse) -> list[str]:
    head = ", ".join(f"{x:.4f}" for x in answer.embedding[:4])
    return [
        f"{answer.dimension}-dimensional embedding, model {answer.model} "
        f"(vendor {answer.vendor}, {answer.latency_ms} ms)",
        f"  [{head}, …]",
        f"request_id {answer.request_id}",
    ]


def record(data: dict[str, Any]) -> list[str]:
    """A results-log record: one ``field: value`` line per field that has a value."""
    width = max((len(k) for k in data), default=0)
    return [f"{k.ljust(width)}  {_plain(v)}" for k, v in data.items() if v not in (None, [], {})]


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    return str(value)


def width(text: str) -> int:
    """Columns on a terminal: East Asian wide characters (vendor names in Chinese) take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[str(c) for c in header], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(width(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c + " " * (w - width(c)) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]


def vendors(answer: VendorsResponse) -> list[str]:
    rows = []
    for v in answer.vendors:
        health = (v.health or {}).get("state", "closed" if v.configured else "")
        rows.append(
            [
                v.id + (" *" if v.default or v.id == answer.default_vendor else ""),
                v.name,
                "yes" if v.configured else "no",
                health,
                ", ".join(op.value for op in v.operations),
            ]
        )
    return [*table(["vendor", "name", "configured", "health", "operations"], rows), "* the default vendor"]


def usage(answer: UsageResponse) -> list[str]:
    rows = [
        [
            u.vendor,
            u.operation,
            u.calls,
            u.billed,
            u.billing_unknown,
            u.errors,
            "" if u.estimated_cost is None else f"{u.estimated_cost:.2f}",
        ]
        for u in answer.vendors
    ]
    lines = [f"usage {answer.from_} … {answer.to}"]
    if not rows:
        return [*lines, "no calls"]
    header = ["vendor", "operation", "calls", "billed", "unknown", "errors", f"est. cost ({answer.currency})"]
    return lines + table(header, rows)
