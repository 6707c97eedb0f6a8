"""The batch table's items as read: a batch's meta item (``BatchMeta``), one manifest
line (``LineItem``) and the answer to a claim (``Claim``). The layout of the table and
every write are ``facegate.batch_store``; this module only turns items into values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from facegate.batch import (
    DECISIONS,
    BatchProgress,
    BatchStatus,
    LineState,
    ManifestFormat,
    ManifestInfo,
    ManifestRef,
    ReportLine,
    report_key,
    summary_key,
)
from facegate.models import ErrorBody


def line_sk(line: int) -> str:
    return f"line#{line:09d}"


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(float(epoch), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _num(v: Any, default: int = 0) -> int:
    return default if v is None else int(v)


@dataclass
class BatchMeta:
    batch_id: str
    name: str
    manifest: ManifestRef
    format: ManifestFormat
    status: BatchStatus
    created_at: float
    total: int | None = None
    header: list[str] | None = None
    done: int = 0
    ok: int = 0
    errors: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    enqueued: int = 0
    finished_at: float | None = None
    error: ErrorBody | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> BatchMeta:
        return cls(
            batch_id=item["pk"],
            name=item["name"],
            manifest=ManifestRef(
                bucket=item["bucket"],
                key=item["key"],
                version_id=item.get("version_id"),
                etag=item.get("etag"),
            ),
            format=item["format"],
            status=item["status"],
            created_at=float(item["created_at"]),
            total=None if item.get("total") is None else int(item["total"]),
            header=list(item["header"]) if item.get("header") else None,
            done=_num(item.get("done")),
            ok=_num(item.get("n_ok")),
            errors=_num(item.get("n_error")),
            decisions={d: _num(item.get(f"n_{d}")) for d in DECISIONS},
            enqueued=_num(item.get("enqueued")),
            finished_at=None if item.get("finished_at") is None else float(item["finished_at"]),
            error=ErrorBody.model_validate_json(item["error"]) if item.get("error") else None,
        )

    def manifest_info(self) -> ManifestInfo:
        """The manifest as progress and the summary show it."""
        m = self.manifest
        return ManifestInfo(bucket=m.bucket, key=m.key, version_id=m.version_id, etag=m.etag, format=self.format)

    @property
    def complete(self) -> bool:
        return self.total is not None and self.done >= self.total

    def progress(self) -> BatchProgress:
        remaining = None if self.total is None else max(0, self.total - self.done)
        percent = None
        if self.total:
            percent = round(100.0 * min(self.done, self.total) / self.total, 1)
        elif self.total == 0:
            percent = 100.0
        finished = self.status == "done"
        return BatchProgress(
            batch_id=self.batch_id,
            name=self.name,
            status=self.status,
            manifest=self.manifest_info(),
            total=self.total,
            done=self.done,
            ok=self.ok,
            errors=self.errors,
            remaining=remaining,
            percent=percent,
            decisions={d: self.decisions.get(d, 0) for d in DECISIONS},
            created_at=iso(self.created_at) or "",
            finished_at=iso(self.finished_at),
            report=report_key(self.name) if finished or self.status == "failed" else None,
            summary=summary_key(self.name) if finished or self.status == "failed" else None,
            error=self.error,
        )


@dataclass
class LineItem:
    line: int
    outcome: ReportLine | None = None
    outcome_json: str | None = None
    lease_id: str | None = None
    lease_until: float | None = None
    request_ids: list[str] = field(default_factory=list)
    attempts: int = 0
    redrives: int = 0
    billed_calls: int = 0
    billed_unknown: int = 0
    last_error: ErrorBody | None = None
    operation: str | None = None
    recovered: bool = False

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> LineItem:
        raw = item.get("outcome")
        return cls(
            line=int(item["sk"].removeprefix("line#")),
            outcome=ReportLine.model_validate_json(raw) if raw else None,
            outcome_json=raw,
            lease_id=item.get("lease_id"),
            lease_until=None if item.get("lease_until") is None else float(item["lease_until"]),
            request_ids=list(item.get("request_ids") or []),
            attempts=_num(item.get("attempts")),
            redrives=_num(item.get("redrives")),
            billed_calls=_num(item.get("billed_calls")),
            billed_unknown=_num(item.get("billed_unknown")),
            last_error=ErrorBody.model_validate_json(item["last_error"]) if item.get("last_error") else None,
            operation=item.get("operation"),
            recovered=bool(item.get("recovered")),
        )

    @property
    def done(self) -> bool:
        return self.outcome_json is not None

    def state(self) -> LineState:
        assert self.outcome is not None
        o = self.outcome
        return LineState(
            line=self.line,
            status=o.status,
            operation=o.operation.value if o.operation else None,
            decision=o.decision,
            error_code=o.error.code if o.error else None,
            vendor=o.vendor,
            billed_calls=self.billed_calls,
            billed_unknown=self.billed_unknown,
            attempts=self.attempts,
            recovered=self.recovered,
        )


@dataclass(frozen=True)
class Claim:
    """The answer to "may I work on this line now?"."""

    state: str  # "claimed" | "done" | "busy"
    previous_request_ids: tuple[str, ...] = ()
    lease_until: float | None = None
    last_error: ErrorBody | None = None
