"""Kuaidi100 face compare: golden requests, every tabled code, score parsing, options."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from datetime import UTC, datetime

import pytest
from PIL import Image as PILImage

from facegate.errors import (
    InvalidOption,
    InvalidRequest,
    VendorAuthFailed,
    VendorBadResponse,
    VendorError,
    VendorQuotaExhausted,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from facegate.images import Image, fit, load_bytes
from facegate.models import Operation
from facegate.vendors import vendor_class
from facegate.vendors.base import CallContext, HttpRequest, HttpResponse, ImageRef, decide
from facegate.vendors.kuaidi100 import (
    ERRORS,
    Kuaidi100Credentials,
    Kuaidi100Options,
    Kuaidi100Vendor,
    parse_score,
)

FACE_COMPARE_CODE = "a01ec22b11c94a4e9f755a3af8c10a0d"  # the doc's 接口编号
# secret_key "a" + secret_secret "bc" = "abc", whose MD5 is RFC 1321's test vector.
SIGN_ABC = "900150983CD24FB0D6963F7D28E17F72"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class StubTransport:
    """Answers every request with one canned response and remembers what was sent."""

    def __init__(self, response: HttpResponse | None = None) -> None:
        self.response = response
        self.sent: list[tuple[str, HttpRequest]] = []

    def send(self, vendor: str, request: HttpRequest, **_kw) -> HttpResponse:
        self.sent.append((vendor, request))
        assert self.response is not None
        return self.response


def ctx(options=None, now=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC), nonce="nonce-1") -> CallContext:
    return CallContext(now=now, nonce=nonce, request_id="req-1", options=options)


def vendor(endpoint: str | None = None, transport: StubTransport | None = None) -> Kuaidi100Vendor:
    creds = Kuaidi100Credentials(secret_key="a", secret_secret="bc", secret_code=FACE_COMPARE_CODE, endpoint=endpoint)
    return Kuaidi100Vendor(creds, transport or StubTransport())  # type: ignore[arg-type]


# Bytes chosen so their base64 ("+/+/+/8=") needs every form-encoding escape.
TINY = Image(data=b"\xfb\xff\xbf\xfb\xff", format="JPEG", width=16, height=16)


def reply(body: object, status: int = 200) -> HttpResponse:
    return HttpResponse(status=status, headers={}, body=json.dumps(body, ensure_ascii=False).encode("utf-8"))


def success(score: object = "80.00", **data) -> HttpResponse:
    return reply({"code": 200, "message": "", "data": {"score": score, **data}})


def parse(response: HttpResponse):
    v = vendor()
    request = v.build_compare(ImageRef(face_token="t1"), ImageRef(face_token="t2"), ctx())
    return v.parse_compare(response, request, ctx())


# --- capabilities -------------------------------------------------------------------------


def test_declared_capabilities():
    assert vendor_class("kuaidi100") is Kuaidi100Vendor
    assert Kuaidi100Vendor.id == "kuaidi100"
    assert Kuaidi100Vendor.operations == frozenset({Operation.COMPARE})
    assert Kuaidi100Vendor.credentials_model is Kuaidi100Credentials
    assert Kuaidi100Vendor.options_model is Kuaidi100Options
    assert Kuaidi100Vendor.accepts_urls is True
    assert Kuaidi100Vendor.default_endpoint == "https://cloud.kuaidi100.com"
    assert Kuaidi100Vendor.limits.formats == frozenset({"JPEG", "PNG", "BMP"})
    assert Kuaidi100Vendor.limits.max_base64_bytes == 2_000_000


def test_base64_limit_is_the_encoded_size():
    # "2M" read as 2,000,000 (the reading no vendor can refuse), not 2 MiB.
    at_limit = Image(data=b"\0" * 1_500_000, format="JPEG", width=16, height=16)  # 2,000,000 of base64
    over = Image(data=b"\0" * 1_500_001, format="JPEG", width=16, height=16)  # 2,000,004
    assert Kuaidi100Vendor.limits.fits(at_limit)
    assert not Kuaidi100Vendor.limits.fits(over)
    assert not Kuaidi100Vendor.limits.fits(Image(data=b"x" * 64, format="WEBP", width=16, height=16))


def _png_of_base64_size(b64_size: int) -> bytes:
    """A valid 64x64 PNG whose base64 is ``b64_size`` characters long (a multiple of 4),
    padded with a private ancillary chunk that decoders skip."""
    buf = io.BytesIO()
    PILImage.new("RGB", (64, 64), (200, 120, 90)).save(buf, format="PNG")
    png = buf.getvalue()
    pad = b64_size // 4 * 3 - len(png) - 12  # 12: the chunk's length, type and CRC
    chunk_type, data = b"prVt", b"\0" * pad
    chunk = struct.pack(">I", pad) + chunk_type + data + struct.pack(">I", zlib.crc32(chunk_type + data))
    iend = png.rindex(b"IEND") - 4
    out = png[:iend] + chunk + png[iend:]
    assert len(base64.b64encode(out)) == b64_size
    return out


def test_an_image_of_exactly_2_000_000_base64_bytes_is_sent_unchanged():
    image = load_bytes(_png_of_base64_size(2_000_000))
    assert fit(image, Kuaidi100Vendor.limits) is image


@pytest.mark.parametrize("b64_size", [2_000_004, 2 * 1024 * 1024], ids=["one-quantum-over", "2MiB"])
def test_an_image_over_2_000_000_base64_bytes_is_reencoded_to_fit(b64_size):
    # Between 2,000,000 and 2 MiB the vendor may refuse (no failover on a refusal), so
    # images.fit re-encodes instead of sending it.
    image = load_bytes(_png_of_base64_size(b64_size))
    fitted = fit(image, Kuaidi100Vendor.limits)
    assert fitted is not image
    assert fitted.format in Kuaidi100Vendor.limits.formats
    assert len(fitted.base64) <= 2_000_000


def test_credentials_never_show_secrets():
    creds = Kuaidi100Credentials(secret_key="the-key", secret_secret="the-secret", secret_code="the-code")
    for text in (repr(creds), str(creds)):
        assert "the-key" not in text
        assert "the-secret" not in text


def test_other_operations_are_unsupported():
    from facegate.errors import UnsupportedOperation

    with pytest.raises(UnsupportedOperation):
        vendor().detect(ImageRef(image=TINY), 1, ctx())


# --- golden requests ---------------------------------------------------------------------


def test_golden_request_base64_and_url():
    options = Kuaidi100Options(compare_face_type="IDCARD", compare_live_control="HIGH")
    request = vendor().build_compare(
        ImageRef(image=TINY), ImageRef(url="https://img.example.com/a b.jpg?x=1&y=2"), ctx(options)
    )
    assert request.method == "POST"
    assert request.url == "https://cloud.kuaidi100.com/api"
    assert dict(request.headers) == FORM
    assert request.body == (
        b"secret_key=a"
        b"&secret_code=a01ec22b11c94a4e9f755a3af8c10a0d"
        b"&secret_sign=900150983CD24FB0D6963F7D28E17F72"
        b"&sourceImage=%2B%2F%2B%2F%2B%2F8%3D"
        b"&sourceImageType=BASE64"
        b"&sourceFaceType=LIVE"
        b"&sourceLiveControl=NONE"
        b"&compareImage=https%3A%2F%2Fimg.example.com%2Fa+b.jpg%3Fx%3D1%26y%3D2"
        b"&compareImageType=URL"
        b"&compareFaceType=IDCARD"
        b"&compareLiveControl=HIGH"
    )


def test_golden_request_face_tokens_and_endpoint_prefix():
    options = Kuaidi100Options(
        source_face_type="WATERMARK",
        source_live_control="LOW",
        compare_face_type="CERT",
        compare_live_control="NORMAL",
    )
    v = vendor(endpoint="https://gw.example.com/kd/")
    request = v.build_compare(ImageRef(face_token="tok-1"), ImageRef(face_token="tok-2"), ctx(options))
    assert request.url == "https://gw.example.com/kd/api"
    assert dict(request.headers) == FORM
    assert request.body == (
        b"secret_key=a&secret_code=a01ec22b11c94a4e9f755a3af8c10a0d&secret_sign="
        + SIGN_ABC.encode()
        + b"&sourceImage=tok-1&sourceImageType=FACE_TOKEN&sourceFaceType=WATERMARK&sourceLiveControl=LOW"
        b"&compareImage=tok-2&compareImageType=FACE_TOKEN&compareFaceType=CERT&compareLiveControl=NORMAL"
    )


def test_request_ignores_clock_and_nonce():
    a = vendor().build_compare(ImageRef(image=TINY), ImageRef(face_token="t"), ctx())
    b = vendor().build_compare(
        ImageRef(image=TINY),
        ImageRef(face_token="t"),
        ctx(now=datetime(2030, 1, 1, tzinfo=UTC), nonce="other"),
    )
    assert (a.method, a.url, dict(a.headers), a.body) == (b.method, b.url, dict(b.headers), b.body)


def test_defaults_without_options_match_the_doc():
    request = vendor().build_compare(ImageRef(face_token="x"), ImageRef(face_token="y"), ctx(None))
    assert b"&sourceFaceType=LIVE&sourceLiveControl=NONE&" in request.body
    assert request.body.endswith(b"&compareFaceType=LIVE&compareLiveControl=NONE")


def test_decoded_image_wins_over_url_and_token():
    request = vendor().build_compare(
        ImageRef(image=TINY, url="https://x.example/a.jpg", face_token="t"),
        ImageRef(url="https://x.example/b.jpg"),
        ctx(),
    )
    assert b"&sourceImage=%2B%2F%2B%2F%2B%2F8%3D&sourceImageType=BASE64&" in request.body
    assert b"x.example%2Fa.jpg" not in request.body


def test_missing_image_is_refused():
    with pytest.raises(InvalidRequest):
        vendor().build_compare(ImageRef(), ImageRef(face_token="t"), ctx())


def test_raw_options_mapping_is_validated():
    request = vendor().build_compare(
        ImageRef(face_token="x"), ImageRef(face_token="y"), ctx({"compare_live_control": "HIGH"})
    )
    assert request.body.endswith(b"&compareLiveControl=HIGH")
    with pytest.raises(InvalidOption):
        vendor().build_compare(ImageRef(face_token="x"), ImageRef(face_token="y"), ctx({"compare_live_control": "MAX"}))


def test_compare_goes_through_the_transport():
    transport = StubTransport(success("88.00", sourceToken="s", compareToken="c"))
    outcome = vendor(transport=transport).compare(ImageRef(image=TINY), ImageRef(face_token="t"), ctx())
    assert [vendor_id for vendor_id, _ in transport.sent] == ["kuaidi100"]
    assert transport.sent[0][1].url == "https://cloud.kuaidi100.com/api"
    assert outcome.similarity == pytest.approx(0.88)


# --- success -------------------------------------------------------------------------------


def test_doc_success_example():
    outcome = parse(success("80.00", sourceToken="src-token", compareToken="cmp-token"))
    assert outcome.similarity == 0.8
    assert outcome.vendor_score == 80.0
    assert dict(outcome.thresholds) == {"low": 0.70, "normal": 0.80, "high": 0.90}
    assert outcome.billed is True
    assert outcome.vendor_request_id is None
    assert outcome.vendor_match is None
    assert outcome.uncertain_band is None
    assert outcome.extra == {"face_tokens": {"image1": "src-token", "image2": "cmp-token"}}


def test_empty_tokens_are_reported_as_none():
    # The doc's example carries "" for both tokens.
    outcome = parse(success("80.00", sourceToken="", compareToken=""))
    assert outcome.extra == {"face_tokens": {"image1": None, "image2": None}}
    assert parse(success("80.00")).extra == {"face_tokens": {"image1": None, "image2": None}}


@pytest.mark.parametrize(
    ("score", "level", "decision"),
    [
        # "推荐阈值80分" does not say whether 80 itself passes: strict, never laxer.
        ("80.00", "normal", "no_match"),
        ("80.01", "normal", "match"),
        ("79.99", "normal", "no_match"),
        ("70.00", "low", "no_match"),
        ("70.01", "low", "match"),
        ("69.99", "low", "no_match"),
        ("89.99", "high", "no_match"),
        ("90.00", "high", "no_match"),
        ("90.01", "high", "match"),
    ],
)
def test_thresholds_decide(score, level, decision):
    assert decide(parse(success(score)), level)[0] == decision


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("80.00", 80.0),
        ("93.5", 93.5),
        (" 75.25 ", 75.25),
        ("+60", 60.0),
        ("0", 0.0),
        ("0.00", 0.0),
        ("100.00", 100.0),
        (80, 80.0),
        (80.55, 80.55),
        (100, 100.0),
    ],
)
def test_score_parsing(raw, expected):
    assert float(parse_score(raw)) == expected
    outcome = parse(success(raw))
    assert outcome.vendor_score == expected
    assert outcome.similarity == pytest.approx(expected / 100)


def test_string_score_divides_exactly():
    # float("70.01") / 100 is 0.7001000000000001; the vendor's text means 0.7001.
    assert parse(success("70.01")).similarity == 0.7001


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "  ",
        "abc",
        "80,00",
        "80.00%",
        "-1",
        "-0.5",
        "100.01",
        "101",
        "1e2",
        "1_0",
        "nan",
        "inf",
        "0x50",
        None,
        True,
        False,
        -3,
        100.5,
        [],
        {},
    ],
)
def test_unusable_scores(raw):
    assert parse_score(raw) is None
    with pytest.raises(VendorBadResponse) as e:
        parse(success(raw))
    assert e.value.billed is True  # code 200: the call was made and debited


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_json_numbers_are_unusable(literal):
    body = b'{"code": 200, "message": "", "data": {"score": ' + literal + b"}}"
    with pytest.raises(VendorBadResponse):
        parse(HttpResponse(status=200, headers={}, body=body))


def test_success_without_data():
    with pytest.raises(VendorBadResponse):
        parse(reply({"code": 200, "message": ""}))
    with pytest.raises(VendorBadResponse):
        parse(reply({"code": 200, "message": "", "data": "80.00"}))


def test_code_as_string_is_the_same_code():
    assert parse(reply({"code": "200", "message": "", "data": {"score": "81.00"}})).vendor_score == 81.0


# --- the code table ------------------------------------------------------------------------

TABLE = [
    ("400", VendorRejected, False),
    ("500", VendorUnavailable, False),
    ("501", VendorRejected, False),
    ("503", VendorAuthFailed, False),
    ("600", VendorAuthFailed, False),
    ("601", VendorQuotaExhausted, False),
]


def test_every_tabled_code_is_tested():
    assert {code for code, _, _ in TABLE} == set(ERRORS)


@pytest.mark.parametrize(("code", "cls", "billed"), TABLE)
@pytest.mark.parametrize("as_int", [True, False])
def test_tabled_codes(code, cls, billed, as_int):
    body = {"code": int(code) if as_int else code, "message": "vendor says no"}
    with pytest.raises(cls) as e:
        parse(reply(body))
    err = e.value
    assert type(err) is cls
    assert err.vendor == "kuaidi100"
    assert err.vendor_code == code
    assert err.vendor_message == "vendor says no"
    assert err.billed is billed


def test_errors_carry_no_credentials():
    creds = Kuaidi100Credentials(secret_key="KEY-4711", secret_secret="SECRET-0815", secret_code="CODE-42")
    v = Kuaidi100Vendor(creds, StubTransport())  # type: ignore[arg-type]
    request = v.build_compare(ImageRef(face_token="x"), ImageRef(face_token="y"), ctx())
    for code in [*ERRORS, "999"]:
        with pytest.raises(VendorError) as e:
            v.parse_compare(reply({"code": code, "message": ""}), request, ctx())
        text = f"{e.value!r} {e.value.body()}"
        for secret in ("KEY-4711", "SECRET-0815", "CODE-42"):
            assert secret not in text


def test_doc_failure_example():
    # {"code": 400, "message": ""}: an empty message is no message.
    with pytest.raises(VendorRejected) as e:
        parse(reply({"code": 400, "message": ""}))
    assert e.value.vendor_code == "400"
    assert e.value.vendor_message is None
    assert e.value.failover is False


def test_message_text_never_changes_the_mapping():
    # A message that reads like "no face" is still only a 400 to us.
    with pytest.raises(VendorRejected):
        parse(reply({"code": 400, "message": "图片中没有检测到人脸"}))


def test_failover_and_retry_flags():
    for code, expected_failover, expected_retryable in [
        ("400", False, False),
        ("500", True, True),
        ("503", True, False),
        ("601", True, False),
    ]:
        with pytest.raises(VendorError) as e:
            parse(reply({"code": code, "message": ""}))
        assert e.value.failover is expected_failover, code
        assert e.value.retryable is expected_retryable, code


@pytest.mark.parametrize("code", [999, "10000", 0, -1, 429])
def test_unknown_codes(code):
    with pytest.raises(VendorRejected) as e:
        parse(reply({"code": code, "message": "something"}))
    assert e.value.vendor_code == str(code)
    assert e.value.vendor_message == "something"
    assert e.value.billed is None


# --- malformed and HTTP-level answers -------------------------------------------------------


@pytest.mark.parametrize("body", [[], "ok", 200, None])
def test_json_that_is_not_an_object(body):
    with pytest.raises(VendorBadResponse):
        parse(reply(body))


@pytest.mark.parametrize("code", [None, True, "", "  ", 1.5, {"x": 1}])
def test_missing_or_odd_code(code):
    with pytest.raises(VendorBadResponse):
        parse(reply({"code": code, "message": ""}))


def test_no_code_on_a_5xx_is_an_outage():
    with pytest.raises(VendorUnavailable) as e:
        parse(reply({"error": "bad gateway"}, status=502))
    assert e.value.vendor_code == "502"


def test_code_on_an_error_status_still_decides():
    with pytest.raises(VendorAuthFailed):
        parse(reply({"code": 503, "message": "验证签名失败"}, status=500))


def test_success_code_with_error_status_is_not_trusted():
    with pytest.raises(VendorBadResponse):
        parse(reply({"code": 200, "message": "", "data": {"score": "90.00"}}, status=500))


def test_http_429_is_a_rate_limit():
    with pytest.raises(VendorRateLimited):
        parse(HttpResponse(status=429, headers={}, body=b"Too Many Requests"))


def test_html_500_is_an_outage():
    with pytest.raises(VendorUnavailable):
        parse(HttpResponse(status=500, headers={}, body=b"<html>Internal Server Error</html>"))


def test_truncated_json_is_a_bad_response():
    with pytest.raises(VendorBadResponse):
        parse(HttpResponse(status=200, headers={}, body=b'{"code": 200, "data": {"sco'))


# --- options ---------------------------------------------------------------------------------


def test_parse_options_defaults():
    assert Kuaidi100Vendor.parse_options({}) == Kuaidi100Options(
        source_face_type="LIVE",
        compare_face_type="LIVE",
        source_live_control="NONE",
        compare_live_control="NONE",
    )


def test_parse_options_accepts_every_documented_value():
    for face_type in ("LIVE", "IDCARD", "WATERMARK", "CERT"):
        for control in ("NONE", "LOW", "NORMAL", "HIGH"):
            opts = Kuaidi100Vendor.parse_options(
                {
                    "source_face_type": face_type,
                    "compare_face_type": face_type,
                    "source_live_control": control,
                    "compare_live_control": control,
                }
            )
            assert (opts.source_face_type, opts.compare_live_control) == (face_type, control)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"source_face_type": "live"}, "source_face_type"),  # the doc's words are upper case
        ({"compare_face_type": "PASSPORT"}, "compare_face_type"),
        ({"source_live_control": "MAX"}, "source_live_control"),
        ({"compare_live_control": 1}, "compare_live_control"),
        ({"liveness": "HIGH"}, "liveness"),  # unknown option
        ({"sourceFaceType": "LIVE"}, "sourceFaceType"),  # the wire name is not the option name
    ],
)
def test_parse_options_errors(options, field):
    with pytest.raises(InvalidOption) as e:
        Kuaidi100Vendor.parse_options(options)
    assert field in e.value.message
    assert e.value.status == 400
