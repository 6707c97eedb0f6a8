"""facegate.batch and facegate.manifest: manifest names and ids, the streaming scanner, line parsing, report
lines and summaries. Pure code: no AWS."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from facegate.batch import (
    ItemMessage,
    LineState,
    MalformedManifest,
    ManifestRef,
    ReportLine,
    SummaryBuilder,
    batch_id_for,
    is_batch_id,
    manifest_format,
    manifest_name,
    report_key,
    summary_key,
)
from facegate.errors import InvalidRequest
from facegate.manifest import MAX_LINE_BYTES, ManifestScanner, Span, parse_header, parse_line
from facegate.models import ErrorBody, Operation

# --- names and ids ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "name", "fmt"),
    [
        ("batches/june.jsonl", "june", "jsonl"),
        ("batches/2026/june.csv", "2026/june", "csv"),
        ("batches/June.JSONL", "June", "jsonl"),
        ("batches/.jsonl", None, "jsonl"),
        ("uploads/june.jsonl", None, "jsonl"),
        ("batches/june.json", None, None),
        ("batches/june.txt", None, None),
    ],
)
def test_manifest_names_and_formats(key, name, fmt):
    assert manifest_name(key) == name
    assert manifest_format(key) == fmt


def test_report_and_summary_keys():
    assert report_key("2026/june") == "results/2026/june.jsonl"
    assert summary_key("june") == "results/june.summary.json"


def test_a_batch_id_is_one_object_version():
    a = ManifestRef("bucket", "batches/a.jsonl", version_id="v1", etag="e1")
    assert a.batch_id == batch_id_for(a) and is_batch_id(a.batch_id)
    assert ManifestRef("bucket", "batches/a.jsonl", version_id="v1", etag="other").batch_id == a.batch_id
    assert ManifestRef("bucket", "batches/a.jsonl", version_id="v2", etag="e1").batch_id != a.batch_id
    assert ManifestRef("other", "batches/a.jsonl", version_id="v1").batch_id != a.batch_id
    # Unversioned buckets: the content tag, quoted or not.
    e = ManifestRef("bucket", "batches/a.jsonl", etag='"abc"')
    assert e.batch_id == ManifestRef("bucket", "batches/a.jsonl", etag="abc").batch_id
    assert not is_batch_id("no-such-manifest") and not is_batch_id("ABCDEF0123456789abcdef01")


def test_item_messages_carry_offsets_only():
    msg = Span(3, 10, 42).message("0123456789abcdef01234567")
    assert json.loads(msg.model_dump_json()) == {
        "batch_id": "0123456789abcdef01234567",
        "line": 3,
        "start": 10,
        "end": 42,
    }
    with pytest.raises(ValueError, match="batch_id"):
        ItemMessage.model_validate({"batch_id": "nope", "line": 1, "start": 0, "end": 1})


# --- the scanner -------------------------------------------------------------------------


def scan(data: bytes, fmt: str = "jsonl", chunk: int | None = None, **kw) -> tuple[list[Span], ManifestScanner]:
    scanner = ManifestScanner(fmt, **kw)  # type: ignore[arg-type]
    spans: list[Span] = []
    step = chunk or len(data) or 1
    for i in range(0, len(data), step):
        spans += scanner.feed(data[i : i + step])
    spans += scanner.finish()
    return spans, scanner


def texts(data: bytes, spans: list[Span]) -> list[str]:
    return [data[s.start : s.end].decode() for s in spans]


def test_jsonl_lines_are_numbered_as_an_editor_shows_them():
    data = b'{"a": 1}\n\n   \n{"b": 2}\r\n{"c": 3}'  # blank lines, CRLF, no final newline
    spans, scanner = scan(data)
    assert [s.line for s in spans] == [1, 4, 5]
    assert texts(data, spans) == ['{"a": 1}', '{"b": 2}', '{"c": 3}']
    assert scanner.items == 3 and scanner.header is None


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_chunk_boundaries_do_not_matter(chunk):
    data = "\ufeff".encode() + b'{"a": "\xc3\xa9"}\r\n\n{"b": 2}\n'
    whole, _ = scan(data)
    pieces, _ = scan(data, chunk=chunk)
    assert pieces == whole
    assert texts(data, whole) == ['{"a": "é"}', '{"b": 2}']  # the BOM is not part of line 1


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "no items"),
        (b"\n \n\t\r\n", "no items"),
        (b'{"a": 1}\n\x00\x01\x02', "NUL byte at offset 9"),
        (b'{"a": "caf\xe9"}\n', "not UTF-8"),
        (b'{"a": "\xe2\x82"}', "not UTF-8"),  # a sequence cut short at the end
    ],
)
def test_what_is_not_a_manifest(data, why):
    with pytest.raises(MalformedManifest, match=why):
        scan(data, chunk=4)


def test_too_many_items():
    with pytest.raises(MalformedManifest, match="more than 3 items"):
        scan(b"{}\n" * 4, max_items=3)
    assert len(scan(b"{}\n" * 3, max_items=3)[0]) == 3


def test_a_huge_line_is_measured_not_kept():
    data = b'{"a": 1}\n' + b"x" * (3 * MAX_LINE_BYTES) + b"\n{}\n"
    spans, _ = scan(data, chunk=1024 * 1024)
    assert [s.line for s in spans] == [1, 2, 3]
    assert spans[1].size == 3 * MAX_LINE_BYTES


def test_csv_records_and_quoted_line_breaks():
    data = (
        b'caller_id,image1,image2\r\na,x.jpg,y.jpg\r\n\r\n"two\r\nlines, with a ""quote""",x.jpg,y.jpg\r\nc,x.jpg,y.jpg'
    )
    for chunk in (None, 1, 5):
        spans, scanner = scan(data, "csv", chunk=chunk)
        assert scanner.header == ["caller_id", "image1", "image2"] and scanner.header_line == 1
        assert [s.line for s in spans] == [2, 4, 6]
        assert texts(data, spans)[1] == '"two\r\nlines, with a ""quote""",x.jpg,y.jpg'


def test_csv_header_problems():
    with pytest.raises(MalformedManifest, match="never closed"):
        scan(b'caller_id,image1\n"a,b.jpg\nc,d.jpg\n', "csv")
    with pytest.raises(MalformedManifest, match="header row"):
        scan(b"\n\n", "csv")
    with pytest.raises(MalformedManifest, match="no items"):
        scan(b"image1,image2\n", "csv")
    with pytest.raises(MalformedManifest, match="unknown CSV column"):
        scan(b"image1,imgae2\na,b\n", "csv")
    with pytest.raises(MalformedManifest, match="given twice"):
        parse_header("image1,Image1")
    with pytest.raises(MalformedManifest, match="no image column"):
        parse_header("caller_id,vendor")
    assert parse_header(" Caller_ID , IMAGE1,request") == ["caller_id", "image1", "request"]


# --- lines → requests ----------------------------------------------------------------------


def line(**fields) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode()


IMG = {"s3": {"key": "photos/a.jpg"}}


def test_a_compare_line_in_the_api_model():
    p = parse_line("jsonl", line(caller_id="x-1", image1=IMG, image2={"url": "https://h/b.jpg"}, vendor="shuxun"))
    assert p.error is None and p.operation == Operation.COMPARE and p.caller_id == "x-1"
    assert p.request.vendor == "shuxun" and p.request.image1.s3.key == "photos/a.jpg"
    assert p.request.image2.url == "https://h/b.jpg"


def test_a_verify_identity_line_flat_or_nested():
    body = {"name": "张三", "id_number": "110105199003071239", "image": IMG}
    for raw in (
        line(operation="verify_identity", **body),
        line(operation="verify-identity", caller_id=7, request=body),
    ):
        p = parse_line("jsonl", raw)
        assert p.error is None and p.operation == Operation.VERIFY_IDENTITY
        assert p.request.name == "张三"
    assert parse_line("jsonl", line(operation="verify-identity", caller_id=7, request=body)).caller_id == "7"


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        (b"{not json", "MALFORMED_JSON", "not valid JSON"),
        (b"[1, 2]", "INVALID_REQUEST", "JSON object"),
        (line(operation="detect", image=IMG), "INVALID_REQUEST", "compare or verify_identity"),
        (line(operation=3, image1=IMG, image2=IMG), "INVALID_REQUEST", "compare or verify_identity"),
        (line(caller_id=["a"], image1=IMG, image2=IMG), "INVALID_REQUEST", "caller_id"),
        (line(caller_id="x" * 300, image1=IMG, image2=IMG), "INVALID_REQUEST", "caller_id"),
        (line(image1=IMG), "INVALID_REQUEST", "image2: is required"),
        (line(image1=IMG, image2=IMG, colour="blue"), "INVALID_REQUEST", "colour: is not a known field"),
        (line(image1=IMG, image2=IMG, request={}), "INVALID_REQUEST", "not both"),
        (line(request="x"), "INVALID_REQUEST", "must be a JSON object"),
        (b"\xff\xfe", "INVALID_REQUEST", "not UTF-8"),
    ],
)
def test_lines_that_are_not_requests(raw, code, message):
    p = parse_line("jsonl", raw)
    assert p.request is None and p.error is not None
    assert p.error.code == code and message in p.error.message


def test_error_messages_never_echo_what_the_line_said():
    secret_number = "110105199003071239X" * 3  # too long: rejected by the model
    p = parse_line(
        "jsonl",
        line(operation="verify_identity", caller_id="keep", name="张三", id_number=secret_number, image=IMG),
    )
    assert p.error is not None and p.caller_id == "keep" and p.operation == Operation.VERIFY_IDENTITY
    assert "id_number: is too long" in p.error.message
    assert secret_number not in p.error.message and "张三" not in p.error.message


HEADER = ["caller_id", "operation", "image1", "image2", "image", "name", "id_number", "vendor", "fallback", "request"]


def csv_line(text: str, header: list[str] = HEADER):
    return parse_line("csv", text.encode(), header)


def test_csv_cells_become_the_api_model():
    p = csv_line("a,,photos/a.jpg,s3://other/b.jpg,,,,shuxun,kuaidi100|face2,")
    assert p.error is None and p.operation == Operation.COMPARE and p.caller_id == "a"
    assert p.request.image1.s3.key == "photos/a.jpg" and p.request.image1.s3.bucket is None
    assert p.request.image2.s3.bucket == "other" and p.request.image2.s3.key == "b.jpg"
    assert p.request.fallback == ["kuaidi100", "face2"]
    p = csv_line('b,compare,https://h/a.jpg,"{""base64"": ""AAAA""}",,,,,,')
    assert p.request.image1.url == "https://h/a.jpg" and p.request.image2.base64 == "AAAA"


def test_csv_request_column_completed_by_the_other_columns():
    request = json.dumps({"image1": IMG, "image2": IMG, "vendor": "face2", "security_level": "high"})
    quoted = '"' + request.replace('"', '""') + '"'
    p = csv_line(f"c,,,photos/z.jpg,,,,shuxun,,{quoted}")
    assert p.error is None
    assert p.request.vendor == "shuxun" and p.request.security_level == "high"
    assert p.request.image2.s3.key == "photos/z.jpg" and p.request.image1.s3.key == "photos/a.jpg"


def test_csv_rows_that_are_not_requests():
    assert csv_line("a,compare,x.jpg,y.jpg,,,,,,,extra").error.message.startswith("the row has 11 fields")
    assert csv_line("a,compare,x.jpg,y.jpg,,,,,,,extra").caller_id == "a"
    assert csv_line("a,compare,x.jpg,,,,,,,").error.code == "INVALID_REQUEST"
    assert csv_line("a,,x.jpg,{bad,,,,,,").error.code == "MALFORMED_JSON"
    assert csv_line("a,,,,,,,,,{bad").error.code == "MALFORMED_JSON"
    assert csv_line('a,"x.jpg,y.jpg').error.code == "INVALID_REQUEST"
    # Fewer fields than columns is fine: spreadsheets drop empty trailing cells.
    assert csv_line("a,compare,x.jpg,y.jpg").error is None


# --- the report and the summary ----------------------------------------------------------


def test_report_lines_carry_a_result_or_an_error():
    ok = ReportLine(line=2, caller_id="c", status="ok", operation=Operation.COMPARE, request_id="r", result={"a": 1})
    assert json.loads(ok.to_json()) == {
        "line": 2,
        "caller_id": "c",
        "status": "ok",
        "operation": "compare",
        "request_id": "r",
        "result": {"a": 1},
    }
    err = ReportLine(line=3, status="error", error=ErrorBody(**InvalidRequest("bad").body()))
    data = json.loads(err.to_json())
    assert "result" not in data and data["error"]["code"] == "INVALID_REQUEST" and data["caller_id"] is None


def test_summary_counts():
    b = SummaryBuilder()
    b.add(LineState(1, "ok", "compare", "match", vendor="shuxun", billed_calls=1, attempts=1))
    b.add(LineState(2, "ok", "compare", "no_match", vendor="shuxun", billed_calls=1, attempts=2, recovered=True))
    b.add(LineState(3, "error", "compare", error_code="VENDOR_TIMEOUT", vendor="shuxun", billed_unknown=2, attempts=5))
    b.add(LineState(4, "error", None, error_code="MALFORMED_JSON", attempts=1))
    f = b.fields()
    assert f["ok"] == 2 and f["errors"] == 2
    assert f["decisions"] == {"match": 1, "no_match": 1, "uncertain": 0}
    assert f["error_codes"] == {"MALFORMED_JSON": 1, "VENDOR_TIMEOUT": 1}
    assert f["operations"] == {"compare": 3} and f["vendors"] == {"shuxun": 3}
    assert f["billed_calls"] == 2 and f["billed_unknown"] == 2
    assert f["deliveries"] == 9 and f["recovered"] == 1


def _paced_calls(rate: float, instances: int, calls: int, seed: int) -> list[tuple[float, float]]:
    """(start, end) of every paced vendor call of ``instances`` worker instances, each on
    a fake clock of its own: a random start; before one call in four a delay on its way
    (reading the images on a busy machine: 0.15 s), and a random call time (0.02-0.1 s)."""
    import random

    from facegate.batch_jobs.work import Pacer
    from facegate.config import Settings

    cfg = Settings(batch_vendor_rates={"shuxun": rate}, batch_concurrency=instances)
    rng = random.Random(seed)
    out = []
    for _ in range(instances):
        now = [rng.uniform(0, 1)]

        def sleep(s, now=now):
            assert s > 0
            now[0] += s

        pacer = Pacer(cfg, sleep=sleep, clock=lambda now=now: now[0])
        for _ in range(calls):
            now[0] += rng.choice([0.0, 0.0, 0.0, 0.15])
            pacer.before("shuxun")
            started = now[0]
            now[0] += rng.uniform(0.02, 0.1)
            pacer.after("shuxun")
            out.append((started, now[0]))
    return out


def _most_in_a_second(times: list[float]) -> int:
    times = sorted(times)
    most, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:  # the sandboxes' window: calls "in the last second"
            lo += 1
        most = max(most, hi - lo + 1)
    return most


@pytest.mark.parametrize(("rate", "instances"), [(10, 3), (10, 5), (20, 5), (50, 9), (50, 10), (19, 4)])
def test_paced_instances_never_exceed_a_vendors_rate_in_any_second(rate, instances):
    """Wherever between its start and its end the vendor counts a call, no second holds
    more than the rate: the window runs from each call's end. (The pacer before spaced
    the planned starts at instances / (rate x 0.95) s: at 10/s over 3 instances, 4 calls
    of each could fall within one second, and a call delayed on its way closer still.)"""
    import random

    calls = _paced_calls(rate, instances, calls=60, seed=rate * 100 + instances)
    rng = random.Random(7)
    for counted in (
        [s for s, _ in calls],
        [e for _, e in calls],
        [rng.uniform(s, e) for s, e in calls],
    ):
        assert _most_in_a_second(counted) <= rate


@pytest.mark.parametrize(("rate", "instances", "share"), [(10, 5, 0.9), (20, 4, 0.9), (10, 3, 0.8)])
def test_paced_instances_stay_close_to_the_rate(rate, instances, share):
    """Paced, not starved: quick calls run at the instances' whole share of the rate (the
    remainder of a rate the instances do not divide is left unused: 9 of 10/s over 3)."""
    from facegate.batch_jobs.work import Pacer
    from facegate.config import Settings

    cfg = Settings(batch_vendor_rates={"shuxun": rate}, batch_concurrency=instances)
    now = [0.0]
    pacer = Pacer(cfg, sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    ends = []
    for _ in range(200):
        pacer.before("shuxun")
        now[0] += 0.05  # the vendor's latency
        pacer.after("shuxun")
        ends.append(now[0])
    assert len(ends) / ends[-1] * instances >= share * rate


def test_the_pacer_shares_a_rate_in_whole_calls_per_second():
    from facegate.batch_jobs.context import PACING_MARGIN_S
    from facegate.batch_jobs.work import Pacer

    assert Pacer.share(10, 5) == (2, pytest.approx(1 + PACING_MARGIN_S))
    assert Pacer.share(10, 3) == (3, pytest.approx(1 + PACING_MARGIN_S))  # 9 of the 10: none can have the 10th
    assert Pacer.share(10, 20) == (1, pytest.approx(2 + PACING_MARGIN_S))  # more instances than calls a second


def test_the_pacer_leaves_vendors_without_a_rate_alone():
    from facegate.batch_jobs.context import PACING_MARGIN_S
    from facegate.batch_jobs.work import Pacer
    from facegate.config import Settings

    slept = []
    pacer = Pacer(Settings(batch_vendor_rates={"shuxun": 10.0}, batch_concurrency=10), slept.append, lambda: 0.0)
    for _ in range(5):
        pacer.before("face2")
        pacer.after("face2")
    pacer.before("face2")
    assert slept == []
    pacer.before("shuxun")
    pacer.after("shuxun")
    pacer.before("shuxun")
    assert slept == [pytest.approx(1.0 + PACING_MARGIN_S)]


def test_the_router_paces_each_vendor_call_from_its_end():
    """The pacer is the item's gate: the router tells it of every call, a retry and a
    fallback too, and the window runs from the vendor's answer: the item's own work
    before the call (image reads, decoding) and after it (the records) is not in it."""
    from facegate.batch_jobs.context import PACING_MARGIN_S
    from facegate.batch_jobs.work import Pacer
    from facegate.config import Settings
    from facegate.errors import VendorUnavailable
    from facegate.health import MemoryHealthBook
    from facegate.router import Attempts, Planned, RetryPolicy, Router

    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    cfg = Settings(batch_vendor_rates={"shuxun": 10.0, "face2": 10.0}, batch_concurrency=10)  # 1 call a window
    pacer = Pacer(cfg, sleep, lambda: now[0])
    router = Router(MemoryHealthBook(), vendor_for=lambda cls: cls, retry=RetryPolicy(1, 0), sleep=lambda s: None)
    plan = [Planned(type(v, (), {"id": v}), None) for v in ("shuxun", "face2")]
    answers = {"shuxun": [VendorUnavailable("refused", billed=False)] * 2, "face2": ["answer", "answer"]}

    def attempt(vendor, planned):
        now[0] += 0.05  # the vendor
        step = answers[planned.id].pop(0)
        if isinstance(step, Exception):
            raise step
        return SimpleNamespace(billed=True)

    now[0] += 0.3  # the item's images
    router.first(plan, attempt, Attempts(), None, pacer)
    # shuxun, shuxun's retry a window after the first call's end, face2 (not paced by shuxun's calls)
    assert slept == [pytest.approx(1.0 + PACING_MARGIN_S)]
    now[0] += 0.2  # the item's records, the next item's images
    router.first(plan[1:], attempt, Attempts(), None, pacer)
    assert slept[1] == pytest.approx(1.0 + PACING_MARGIN_S - 0.2)  # face2's window less the time since its end


def test_batch_functions_flush_their_metrics_where_metrics_are_on(monkeypatch, capsys):
    from facegate.batch_jobs.context import count
    from facegate.observability import log_metrics

    def handler(event, context):
        count("BatchItemsOk")
        return "done"

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    assert log_metrics()(handler) is handler  # off: no flush, so no "No application metrics" warning
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    context = SimpleNamespace(function_name="facegate-BatchWorkerFunction")
    assert log_metrics()(handler)({}, context) == "done"
    emf = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [e["BatchItemsOk"] for e in emf if "BatchItemsOk" in e] == [[1.0]]


class _Manifest:
    """A batch context's manifest reads, served from bytes, counted."""

    def __init__(self, data: bytes):
        self.data = data
        self.ranges: list[str] = []

    def get_manifest(self, ref, byte_range=None):
        import io

        self.ranges.append(byte_range)
        lo, hi = (int(n) for n in byte_range.removeprefix("bytes=").split("-"))
        return {"Body": io.BytesIO(self.data[lo : hi + 1])}


def _manifest_lines(*lines: str):
    from facegate.batch import ItemMessage

    data, msgs, offset = b"", [], 0
    for n, text in enumerate(lines, start=1):
        raw = text.encode()
        if text.startswith("{"):
            msgs.append(ItemMessage(batch_id="a" * 24, line=n, start=offset, end=offset + len(raw)))
        data += raw + b"\n"
        offset += len(raw) + 1
    return data, msgs


def _compare(n: int) -> str:
    return json.dumps(
        {"caller_id": f"c-{n}", "image1": {"s3": {"key": "photos/a.jpg"}}, "image2": {"s3": {"key": "photos/b.jpg"}}}
    )


def test_an_invocations_lines_are_read_in_one_ranged_get_when_close_together():
    from facegate.batch import ManifestRef
    from facegate.batch_jobs.context import Static
    from facegate.batch_jobs.lines import Lines

    data, msgs = _manifest_lines(_compare(1), _compare(2), _compare(3), "x" * 5000, _compare(5))
    ctx = _Manifest(data)
    lines = Lines(ctx)  # type: ignore[arg-type]
    static = Static(ManifestRef("b", "batches/m.jsonl", "v1"), "jsonl", None)
    first, second, third, far = msgs

    lines.read_ahead([third, first, second])  # SQS's order need not be the manifest's
    assert [lines.parse(m, static).caller_id for m in (second, first, third)] == ["c-2", "c-1", "c-3"]
    assert ctx.ranges == [f"bytes={first.start}-{third.end - 1}"]

    # A line far from the others (more gap than lines between them) is read on its own.
    ctx.ranges.clear()
    lines.read_ahead([first, far])
    assert [lines.parse(m, static).caller_id for m in (first, far)] == ["c-1", "c-5"]
    assert ctx.ranges == [f"bytes={first.start}-{first.end - 1}", f"bytes={far.start}-{far.end - 1}"]

    # A line that is not among the invocation's messages (the dead-letter drain's) likewise.
    ctx.ranges.clear()
    lines.read_ahead([])
    assert lines.parse(second, static).caller_id == "c-2" and len(ctx.ranges) == 1
