"""A manifest's text: finding its items (``ManifestScanner``, in one streaming pass,
no text kept) and turning one item's bytes back into a request (``parse_line``).
Pure: no AWS, no clock, no network. ``facegate.batch`` holds the names, ids, queue
message and report around it.

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
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from facegate.batch import ItemMessage, MalformedManifest, ManifestFormat
from facegate.errors import FacegateError, InvalidRequest, MalformedJson, describe_validation_errors
from facegate.models import CompareRequest, Operation, VerifyIdentityRequest

BATCH_OPERATIONS = (Operation.COMPARE, Operation.VERIFY_IDENTITY)
# A manifest line names its images; it does not carry them. 2 MiB leaves room for a
# small base64 image, but S3 keys or URLs are the way.
MAX_LINE_BYTES = 2 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_CALLER_ID = 256
_BOM = b"\xef\xbb\xbf"


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
