"""Batches from S3 manifests: the pure part. No AWS, no clock, no network.

A manifest is uploaded to ``batches/<name>.jsonl`` or ``batches/<name>.csv`` in the
batch bucket. The splitter streams it through ``ManifestScanner``, which finds each
item's byte range (``Span``) without keeping the text; the worker later reads one
span back from the same object version and turns it into a request with
``parse_line``. So queue messages carry offsets only: never images, names or ID
numbers.

Item numbering: every item is known by the physical line (1-based) it starts on,
so ``line`` in the report points into the file as an editor shows it. Blank lines
are not items. In a CSV the header is line 1, and a quoted field may span lines
(the item is numbered by its first line).

JSON Lines, one request per line, in the API's own model, plus two optional
fields::

    {"operation": "compare", "caller_id": "order-17",
     "image1": {"s3": {"key": "photos/a.jpg"}}, "image2": {"url": "https://…"},
     "vendor": "shuxun", "security_level": "high"}
    {"operation": "verify_identity", "name": "…", "id_number": "…",
     "image": {"s3": {"key": "photos/c.jpg"}}}

``operation`` is ``compare`` (the default) or ``verify_identity``; the request may
also be nested as ``{"operation": …, "caller_id": …, "request": {…}}``.

CSV: a header row, then one request per row. Columns (any order, case-insensitive;
unknown columns make the manifest malformed): ``operation``, ``caller_id``,
``image1``, ``image2`` (compare), ``image`` (verify_identity), ``name``,
``id_number``, ``vendor``, ``fallback`` (vendor ids separated by ``|``, ``;`` or
spaces), ``security_level``, and ``request`` (a JSON object in the API's model that
the other columns complete or override). An image cell is an S3 key in the batch
bucket, ``s3://bucket/key``, an ``https://`` URL, or an image JSON object.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from facegate.errors import CallerError, FacegateError, InvalidRequest, MalformedJson, describe_validation_errors
from facegate.models import CompareRequest, ErrorBody, Operation, VerifyIdentityRequest

MANIFEST_PREFIX = "batches/"
RESULTS_PREFIX = "results/"
FORMATS: dict[str, Literal["jsonl", "csv"]] = {".jsonl": "jsonl", ".csv": "csv"}
ManifestFormat = Literal["jsonl", "csv"]
BATCH_OPERATIONS = (Operation.COMPARE, Operation.VERIFY_IDENTITY)
# A manifest line names its images; it does not carry them. 2 MiB leaves room for a
# small base64 image, but S3 keys or URLs are the way.
MAX_LINE_BYTES = 2 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_CALLER_ID = 256
BATCH_ID = re.compile(r"^[0-9a-f]{24}$")
_BOM = b"\xef\xbb\xbf"


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


# --- scanning a manifest -----------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    line: int  # the physical line the item starts on, 1-based
    start: int  # byte offset of its first byte
    end: int  # byte offset just past its last byte (line break excluded)

    @property
    def size(self) -> int:
        return self.end - self.start

    def message(self, batch_id: str) -> ItemMessage:
        return ItemMessage(batch_id=batch_id, line=self.line, start=self.start, end=self.end)


@dataclass
class ManifestScanner:
    """Finds the items of a manifest fed in chunks, in one pass and in constant memory
    per line (a line longer than any buffer is measured, not kept).

    Raises ``MalformedManifest`` as soon as the content cannot be a manifest."""

    format: ManifestFormat
    max_items: int = 100_000
    header: list[str] | None = None
    header_line: int | None = None
    items: int = 0
    _decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("strict"))
    _offset: int = 0  # absolute offset of the next byte fed
    _line_no: int = 0  # physical lines completed
    _line_start: int = 0
    _line_blank: bool = True
    _line_quotes: int = 0
    _last_byte: int = -1  # of the current line, to drop a CR before the LF
    _record: list[int] | None = None  # CSV record in progress: [line, start, end, quotes]
    _header_buf: bytearray = field(default_factory=bytearray)
    _head: bytearray = field(default_factory=bytearray)

    def feed(self, chunk: bytes) -> list[Span]:
        if self._offset == 0:
            # A byte-order mark may arrive split over the first tiny chunks: hold them.
            chunk = bytes(self._head) + chunk
            self._head.clear()
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._head += chunk
                return []
        return self._scan(chunk)

    def finish(self) -> list[Span]:
        out: list[Span] = []
        if self._head:  # the whole file is shorter than a byte-order mark
            head = bytes(self._head)
            self._head.clear()
            out.extend(self._scan(head))
        self._check_text(b"", final=True)
        if self._line_start < self._offset:
            end = self._offset - (1 if self._last_byte == 0x0D else 0)
            out.extend(self._end_line(end))
        if self._record is not None:
            raise MalformedManifest(f"a quoted CSV field opened on line {self._record[0]} is never closed")
        if self.format == "csv" and self.header is None:
            raise MalformedManifest("the CSV manifest is empty: it needs a header row and one row per item")
        if self.items == 0:
            raise MalformedManifest("the manifest has no items (every line is blank)")
        return out

    # --- internals ---

    def _scan(self, chunk: bytes) -> list[Span]:
        self._check_text(chunk, final=False)
        out: list[Span] = []
        pos = 0
        if self._offset == 0 and chunk.startswith(_BOM):
            pos = len(_BOM)
            self._line_start = pos
        while True:
            nl = chunk.find(b"\n", pos)
            segment = chunk[pos : nl if nl >= 0 else len(chunk)]
            self._take(segment)
            if nl < 0:
                break
            end = self._offset + nl
            if self._last_byte == 0x0D:  # CRLF
                end -= 1
            out.extend(self._end_line(end))
            pos = nl + 1
            self._line_start = self._offset + pos
        self._offset += len(chunk)
        return out

    def _check_text(self, chunk: bytes, *, final: bool) -> None:
        if b"\x00" in chunk:
            at = self._offset + chunk.index(b"\x00")
            raise MalformedManifest(f"the manifest is not text: a NUL byte at offset {at}")
        try:
            self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError as e:
            at = self._offset + e.start if not final else self._offset
            raise MalformedManifest(f"the manifest is not UTF-8 text (invalid byte at offset {at})") from None

    def _take(self, segment: bytes) -> None:
        if not segment:
            return
        if self._line_blank and segment.strip():
            self._line_blank = False
        if self.format == "csv":
            self._line_quotes += segment.count(b'"')
            if self.header is None:
                if len(self._header_buf) + len(segment) > MAX_HEADER_BYTES:
                    raise MalformedManifest(f"the CSV header is longer than {MAX_HEADER_BYTES} bytes")
                self._header_buf += segment
        self._last_byte = segment[-1]

    def _end_line(self, end: int) -> list[Span]:
        self._line_no += 1
        start, blank, quotes = self._line_start, self._line_blank, self._line_quotes
        self._line_blank, self._line_quotes, self._last_byte = True, 0, -1
        if self.format == "jsonl":
            return [] if blank else [self._item(self._line_no, start, end)]
        # CSV: a record may run over several physical lines inside quotes.
        if self._record is None:
            if blank:
                if self.header is None:
                    self._header_buf.clear()
                return []
            self._record = [self._line_no, start, end, 0]
        self._record[2] = end
        self._record[3] += quotes
        if self._record[3] % 2:  # still inside a quoted field
            if self.header is None:
                self._header_buf += b"\n"
            return []
        line, rstart, rend, _ = self._record
        self._record = None
        if self.header is None:
            self.header = parse_header(bytes(self._header_buf).decode("utf-8").rstrip("\r"))
            self.header_line = line
            self._header_buf.clear()
            return []
        return [self._item(line, rstart, rend)]

    def _item(self, line: int, start: int, end: int) -> Span:
        self.items += 1
        if self.items > self.max_items:
            raise MalformedManifest(f"the manifest has more than {self.max_items} items; split it")
        return Span(line, start, end)


# --- CSV columns -------------------------------------------------------------------------

CSV_COLUMNS = (
    "operation",
    "caller_id",
    "image1",
    "image2",
    "image",
    "name",
    "id_number",
    "vendor",
    "fallback",
    "security_level",
    "request",
)
_IMAGE_COLUMNS = ("image1", "image2", "image")


def parse_header(text: str) -> list[str]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if len(rows) != 1 or not rows[0]:
        raise MalformedManifest("the first row of a CSV manifest must be its header")
    columns = [c.strip().lower() for c in rows[0]]
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if unknown:
        shown = ", ".join(repr(c[:40]) for c in unknown[:5])
        raise MalformedManifest(f"unknown CSV column(s) {shown}; the columns are: {', '.join(CSV_COLUMNS)}")
    duplicated = sorted(c for c, n in Counter(columns).items() if n > 1)
    if duplicated:
        raise MalformedManifest(f"CSV column(s) given twice: {', '.join(duplicated)}")
    if not {"request", *_IMAGE_COLUMNS} & set(columns):
        raise MalformedManifest(
            "the CSV header names no image column (image1, image2, image) and no request column; "
            "the first row must be a header such as operation,caller_id,image1,image2,vendor"
        )
    return columns


# --- one line → one request -------------------------------------------------------------


@dataclass
class ParsedLine:
    """What one manifest line asks for; ``error`` when it cannot be a request. The
    operation and caller id are kept whenever they could be read, so even an error
    line in the report can be matched to the caller's record."""

    operation: Operation | None = None
    caller_id: str | None = None
    request: CompareRequest | VerifyIdentityRequest | None = None
    error: FacegateError | None = None


def parse_line(fmt: ManifestFormat, raw: bytes, header: list[str] | None = None) -> ParsedLine:
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return ParsedLine(error=InvalidRequest("the line is not UTF-8 text"))
    if fmt == "jsonl":
        try:
            obj = json.loads(text)
        except ValueError:
            return ParsedLine(error=MalformedJson("the line is not valid JSON"))
        if not isinstance(obj, dict):
            return ParsedLine(error=InvalidRequest("a manifest line must be a JSON object"))
        return _from_fields(obj)
    assert header is not None, "a CSV line needs its header"
    return _from_fields_csv(text, header)


def _from_fields(obj: dict[str, Any], *, columns: bool = False) -> ParsedLine:
    out = ParsedLine()
    body = dict(obj)
    raw_op = body.pop("operation", None)
    raw_caller = body.pop("caller_id", None)
    if raw_caller is not None:
        if isinstance(raw_caller, bool) or not isinstance(raw_caller, (str, int)):
            out.error = InvalidRequest("caller_id must be a string")
            return out
        caller = str(raw_caller)
        if len(caller) > MAX_CALLER_ID:
            out.error = InvalidRequest(f"caller_id is longer than {MAX_CALLER_ID} characters")
            return out
        out.caller_id = caller or None
    op = (raw_op or "compare") if isinstance(raw_op, str | None) else None
    op = op.strip().lower().replace("-", "_") if op is not None else None
    if op not in {o.value for o in BATCH_OPERATIONS}:
        out.error = InvalidRequest("operation must be compare or verify_identity")
        return out
    out.operation = Operation(op)
    nested = body.pop("request", None)
    if nested is not None:
        if not isinstance(nested, dict):
            out.error = InvalidRequest("request must be a JSON object")
            return out
        if body and not columns:
            out.error = InvalidRequest(
                "give the request either nested under 'request' or as top-level fields, not both"
            )
            return out
        body = {**nested, **body}
    model = CompareRequest if out.operation == Operation.COMPARE else VerifyIdentityRequest
    try:
        out.request = model.model_validate(body)
    except ValidationError as e:
        out.error = InvalidRequest(describe_validation_errors(e.errors(), root="line"))
    return out


def _from_fields_csv(text: str, header: list[str]) -> ParsedLine:
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error:
        return ParsedLine(error=InvalidRequest("the CSV row cannot be parsed (stray quote?)"))
    if len(rows) != 1:
        return ParsedLine(error=InvalidRequest("the CSV item is not exactly one row"))
    row = rows[0]
    cells = {c: v.strip() for c, v in zip(header, row, strict=False) if v.strip() != ""}
    if len(row) > len(header):
        caller = cells.get("caller_id")
        return ParsedLine(
            caller_id=caller[:MAX_CALLER_ID] if caller else None,
            error=InvalidRequest(f"the row has {len(row)} fields but the header has {len(header)}"),
        )
    fields: dict[str, Any] = {}
    if "request" in cells:
        try:
            fields["request"] = json.loads(cells.pop("request"))
        except ValueError:
            return ParsedLine(error=MalformedJson("the request column is not valid JSON"))
    for column, value in cells.items():
        if column in _IMAGE_COLUMNS:
            image = _image_cell(value)
            if image is None:
                return ParsedLine(error=MalformedJson(f"the {column} column is not a valid image JSON object"))
            fields[column] = image
        elif column == "fallback":
            fields[column] = [v for v in re.split(r"[|;,\s]+", value) if v]
        else:
            fields[column] = value
    return _from_fields(fields, columns=True)


def _image_cell(value: str) -> dict[str, Any] | None:
    if value.startswith("{"):
        try:
            obj = json.loads(value)
        except ValueError:
            return None
        return obj if isinstance(obj, dict) else None
    lower = value.lower()
    if lower.startswith(("https://", "http://")):
        return {"url": value}
    if lower.startswith("s3://"):
        bucket, _, key = value[5:].partition("/")
        return {"s3": {"bucket": bucket, "key": key}}
    return {"s3": {"key": value}}


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
    counts: Counter = field(default_factory=Counter)
    decisions: Counter = field(default_factory=Counter)
    error_codes: Counter = field(default_factory=Counter)
    operations: Counter = field(default_factory=Counter)
    vendors: Counter = field(default_factory=Counter)

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
    status: Literal["splitting", "running", "reporting", "done", "failed"] = Field(
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
