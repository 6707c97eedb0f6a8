"""Batches from S3 manifests: the pure part. No AWS, no clock, no network.

A manifest is uploaded to ``batches/<name>.jsonl`` or ``batches/<name>.csv`` in the
batch bucket. The splitter streams it through ``ManifestScanner``, which finds each
item's byte range (``Span``) without keeping the text; the worker later reads one
span back from the same object version and turns it into a request with
``parse_line``. So queue messages carry offsets only: never images, names or ID
numbers.

The manifest's format and its parsing are ``facegate.manifest``; this module holds
the names and ids, the errors, the queue message and the report and summary.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from facegate.errors import CallerError, FacegateError
from facegate.models import ErrorBody, Operation

MANIFEST_PREFIX = "batches/"
RESULTS_PREFIX = "results/"
FORMATS: dict[str, Literal["jsonl", "csv"]] = {".jsonl": "jsonl", ".csv": "csv"}
ManifestFormat = Literal["jsonl", "csv"]
BatchStatus = Literal["splitting", "running", "reporting", "done", "failed"]
BATCH_ID = re.compile(r"^[0-9a-f]{24}$")


# --- errors ------------------------------------------------------------------------------


class MalformedManifest(CallerError):
    """The manifest as a whole cannot be read as items: not text, no items, a bad
    CSV header, an unterminated quote, too many items."""

    code = "MALFORMED_MANIFEST"
    status = 422


class ManifestUnreadable(CallerError):
    """The manifest object (that exact version) is gone or changed before it was read."""

    code = "MANIFEST_UNREADABLE"
    status = 422


class ItemNotProcessed(FacegateError):
    """An item that reached the dead-letter queue without an outcome."""

    code = "ITEM_NOT_PROCESSED"
    status = 500
    retryable = True


class BatchFailed(FacegateError):
    """The manifest itself could not be split after every delivery."""

    code = "BATCH_FAILED"
    status = 500
    retryable = True


# --- names and ids -----------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestRef:
    """One manifest object, as an S3 event names it."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None

    @property
    def name(self) -> str | None:
        return manifest_name(self.key)

    @property
    def format(self) -> ManifestFormat | None:
        return manifest_format(self.key)

    @property
    def batch_id(self) -> str:
        return batch_id_for(self)


def manifest_format(key: str) -> ManifestFormat | None:
    for ext, fmt in FORMATS.items():
        if key.lower().endswith(ext):
            return fmt
    return None


def manifest_name(key: str) -> str | None:
    """``batches/2026/june.jsonl`` → ``2026/june``; None if the key is no manifest."""
    fmt = manifest_format(key)
    if not key.startswith(MANIFEST_PREFIX) or fmt is None:
        return None
    name = key[len(MANIFEST_PREFIX) : len(key) - len(fmt) - 1]
    return name or None


def batch_id_for(ref: ManifestRef) -> str:
    """Deterministic: the same object version (or, unversioned, the same content
    tag) is the same batch, so a repeated S3 event never starts it twice."""
    version = ref.version_id or (ref.etag or "").strip('"')
    digest = hashlib.sha256(f"{ref.bucket}\n{ref.key}\n{version}".encode()).hexdigest()
    return digest[:24]


def report_key(name: str) -> str:
    return f"{RESULTS_PREFIX}{name}.jsonl"


def summary_key(name: str) -> str:
    return f"{RESULTS_PREFIX}{name}.summary.json"


def is_batch_id(value: str) -> bool:
    return bool(BATCH_ID.match(value))


# --- the queue message -------------------------------------------------------------------


class ItemMessage(BaseModel):
    """One item on the item queue: where its line is, nothing of what it says."""

    batch_id: str = Field(pattern=BATCH_ID.pattern)
    line: int = Field(ge=1)
    start: int = Field(ge=0)
    end: int = Field(ge=0)


# --- outcomes, the report, the summary -----------------------------------------------------


class ReportLine(BaseModel):
    """One line of ``results/<name>.jsonl``: the manifest line's outcome."""

    line: int = Field(description="The manifest line the item starts on (0: the manifest as a whole).")
    caller_id: str | None = None
    status: Literal["ok", "error"]
    operation: Operation | None = None
    request_id: str | None = Field(default=None, description="Its record in the results log.")
    result: dict[str, Any] | None = Field(default=None, description="The API's response, when ok.")
    error: ErrorBody | None = Field(default=None, description="The API's error object, when not.")

    def to_json(self) -> str:
        data = self.model_dump(mode="json")
        for key in ("result", "error"):
            if data[key] is None:
                del data[key]
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @property
    def decision(self) -> str | None:
        return (self.result or {}).get("decision")

    @property
    def vendor(self) -> str | None:
        if self.result is not None:
            return self.result.get("vendor")
        return self.error.vendor if self.error is not None else None


def error_body(e: FacegateError) -> ErrorBody:
    return ErrorBody(**e.body())


@dataclass
class LineState:
    """What the summary needs from one finished line (as stored)."""

    line: int
    status: Literal["ok", "error"]
    operation: str | None = None
    decision: str | None = None
    error_code: str | None = None
    vendor: str | None = None
    billed_calls: int = 0
    billed_unknown: int = 0
    attempts: int = 0
    recovered: bool = False


DECISIONS = ("match", "no_match", "uncertain")


class ManifestInfo(BaseModel):
    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    format: ManifestFormat | None = None


class BatchSummary(BaseModel):
    """``results/<name>.summary.json``."""

    batch_id: str
    name: str
    status: Literal["done", "failed"]
    manifest: ManifestInfo
    report: str = Field(description="The report's key in the batch bucket.")
    total: int = Field(description="Items (non-blank manifest lines).")
    ok: int = 0
    errors: int = 0
    decisions: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(DECISIONS, 0))
    error_codes: dict[str, int] = Field(default_factory=dict)
    operations: dict[str, int] = Field(default_factory=dict)
    vendors: dict[str, int] = Field(default_factory=dict, description="Items by the vendor that answered.")
    billed_calls: int = Field(default=0, description="Vendor calls the vendors said they billed.")
    billed_unknown: int = Field(default=0, description="Vendor calls that may have been billed (e.g. a read timeout).")
    deliveries: int = Field(default=0, description="Times items were taken up; above total means retries.")
    recovered: int = Field(
        default=0, description="Outcomes taken from the results log after a worker stopped mid-item."
    )
    created_at: str
    finished_at: str
    duration_s: float
    error: ErrorBody | None = Field(default=None, description="Why the batch failed as a whole.")


@dataclass
class SummaryBuilder:
    counts: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    vendors: Counter[str] = field(default_factory=Counter)

    def add(self, s: LineState) -> None:
        self.counts[s.status] += 1
        self.counts["billed_calls"] += s.billed_calls
        self.counts["billed_unknown"] += s.billed_unknown
        self.counts["deliveries"] += s.attempts
        self.counts["recovered"] += int(s.recovered)
        if s.operation:
            self.operations[s.operation] += 1
        if s.vendor:
            self.vendors[s.vendor] += 1
        if s.status == "ok" and s.decision:
            self.decisions[s.decision] += 1
        if s.status == "error" and s.error_code:
            self.error_codes[s.error_code] += 1

    def fields(self) -> dict[str, Any]:
        return {
            "ok": self.counts["ok"],
            "errors": self.counts["error"],
            "decisions": {d: self.decisions[d] for d in DECISIONS},
            "error_codes": dict(sorted(self.error_codes.items())),
            "operations": dict(sorted(self.operations.items())),
            "vendors": dict(sorted(self.vendors.items())),
            "billed_calls": self.counts["billed_calls"],
            "billed_unknown": self.counts["billed_unknown"],
            "deliveries": self.counts["deliveries"],
            "recovered": self.counts["recovered"],
        }


class BatchProgress(BaseModel):
    """GET /v1/batches/{batch_id}."""

    batch_id: str
    name: str
    status: BatchStatus = Field(
        description="splitting: reading the manifest; running: items in flight; reporting: writing "
        "the report; done: report written; failed: the manifest could not be used (see error)."
    )
    manifest: ManifestInfo
    total: int | None = Field(default=None, description="Items; null until the manifest is read.")
    done: int = 0
    ok: int = 0
    errors: int = 0
    remaining: int | None = None
    percent: float | None = None
    decisions: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(DECISIONS, 0))
    created_at: str
    finished_at: str | None = None
    report: str | None = Field(default=None, description="Key of the report, once written.")
    summary: str | None = Field(default=None, description="Key of the summary, once written.")
    error: ErrorBody | None = None
