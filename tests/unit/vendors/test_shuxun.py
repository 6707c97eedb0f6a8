"""Shuxun adapter: golden requests, every documented code through the parser, limits."""

from __future__ import annotations

import base64
import io
import json
import random
from datetime import UTC, datetime

import pytest
from PIL import Image as PILImage

from facegate import errors
from facegate.images import fit, load_bytes
from facegate.models import Operation
from facegate.transport import Transport
from facegate.vendors import vendor_class
from facegate.vendors.base import CallContext, HttpResponse, ImageRef, decide
from facegate.vendors.shuxun import ERRORS, RESULTS, SUCCESS_RESULT, ShuxunCredentials, ShuxunVendor

# A 16x16 greyscale PNG, made once with Pillow and pasted: its base64 holds "+", "/"
# and "=", the three characters form encoding must escape.
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAAAAAA6mKC9AAAAO0lEQVR42l3PMQ7AQAjEwCCljk7+/1OvSM1QWrBr5jl7JsAL"
    "CBAbcRIZERot7drwCLEwDfXlNtdvP8APyEgRQWRTi24AAAAASUVORK5CYII="
)
# The same text form-encoded (quote_plus), derived once by hand and pasted.
PNG_FORM = (
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAAAAAA6mKC9AAAAO0lEQVR42l3PMQ7AQAjEwCCljk7%2B%2F1OvSM1QWrBr5jl7JsAL"
    "CBAbcRIZERot7drwCLEwDfXlNtdvP8APyEgRQWRTi24AAAAASUVORK5CYII%3D"
)
# The doc's example instant, key and secret, so the golden sign is the doc's known answer.
FROZEN = datetime(2023, 4, 26, 2, 41, 44, 289000, tzinfo=UTC)
DOC_SIGN = "63c2023a929a582fff79da484f4a635719f362333ce826ed18a69b435d54f2ef"
URL = "https://api.shuxuntech.com/v1/faceCompare/check"
CT = "application/x-www-form-urlencoded; charset=UTF-8"
GOLDEN_HEADERS = {"Content-Type": CT, "appKey": "aaa", "timestamp": "1682476904289", "sign": DOC_SIGN}

DOC_SUCCESS = {
    "code": "0",
    "msg": "成功",
    "isFee": 1,
    "seqNo": "9hi5fht958638y0egkjpo8udjs76vgwx",
    "data": {
        "result": 1,
        "resultDesc": "比对成功,有数据",
        "confidence": 97.389,
        "threshold": {"threshold1": 62.327, "threshold2": 69.101, "threshold3": 73.975},
    },
}


@pytest.fixture
def ctx() -> CallContext:
    return CallContext(now=FROZEN, nonce="unused-nonce", request_id="req-1")


@pytest.fixture
def vendor() -> ShuxunVendor:
    return ShuxunVendor(ShuxunCredentials(app_key="aaa", app_secret="bbb"), Transport())


@pytest.fixture
def png() -> ImageRef:
    return ImageRef(image=load_bytes(base64.b64decode(PNG_B64)))


def reply(obj, status: int = 200) -> HttpResponse:
    body = obj if isinstance(obj, bytes) else json.dumps(obj, ensure_ascii=False).encode()
    return HttpResponse(status=status, headers={"Content-Type": "application/json"}, body=body)


def error_body(code, msg: str = "错误", is_fee=0) -> dict:
    return {"code": code, "msg": msg, "isFee": is_fee, "seqNo": None, "data": None}


def result_body(result, desc: str = "比对失败", is_fee=0) -> dict:
    data = {"result": result, "resultDesc": desc, "confidence": None, "threshold": None}
    return {"code": "0", "msg": "成功", "isFee": is_fee, "seqNo": "s" * 32, "data": data}


def parse(vendor, ctx, response, request=None):
    request = request or vendor.build_compare(
        ImageRef(url="https://a.test/1.jpg"), ImageRef(url="https://a.test/2.jpg"), ctx
    )
    return vendor.parse_compare(response, request, ctx)


def base64_request(vendor, ctx, png):
    return vendor.build_compare(png, png, ctx)


# --- what the vendor declares ---------------------------------------------------------------


def test_declared_capabilities():
    assert vendor_class("shuxun") is ShuxunVendor
    assert ShuxunVendor.id == "shuxun"
    assert ShuxunVendor.name == "数勋 Shuxun face compare"
    assert ShuxunVendor.operations == frozenset({Operation.COMPARE})
    assert ShuxunVendor.credentials_model is ShuxunCredentials
    assert ShuxunVendor.default_endpoint == "https://api.shuxuntech.com"
    assert ShuxunVendor.accepts_urls is True
    assert ShuxunVendor.limits.formats == frozenset({"JPEG", "PNG", "BMP"})
    assert ShuxunVendor.limits.max_base64_bytes == 1_000_000


def test_credentials_hide_the_secret_and_need_both_fields():
    creds = ShuxunCredentials.model_validate({"app_key": "k", "app_secret": "very-secret-value", "other": 1})
    assert "very-secret-value" not in repr(creds)
    assert "very-secret-value" not in str(creds)
    with pytest.raises(ValueError, match="app_secret"):
        ShuxunCredentials.model_validate({"app_key": "k"})
    with pytest.raises(ValueError, match="app_key"):
        ShuxunCredentials.model_validate({"app_key": "", "app_secret": "s"})


def test_other_operations_are_unsupported(vendor, ctx, png):
    with pytest.raises(errors.UnsupportedOperation):
        vendor.detect(png, 1, ctx)
    with pytest.raises(errors.UnsupportedOperation):
        vendor.features(png, ctx)


# --- golden requests ------------------------------------------------------------------------


def test_golden_request_with_two_base64_images(vendor, ctx, png):
    request = vendor.build_compare(png, png, ctx)
    assert request.method == "POST"
    assert request.url == URL
    assert dict(request.headers) == GOLDEN_HEADERS
    assert list(request.headers) == ["Content-Type", "appKey", "timestamp", "sign"]
    assert request.body == f"image1={PNG_FORM}&image2={PNG_FORM}".encode()


def test_golden_request_with_two_urls(vendor, ctx):
    request = vendor.build_compare(
        ImageRef(url="https://img.example.com/a b/1.jpg?x=1&y=2"),
        ImageRef(url="http://img.example.com/2.png"),
        ctx,
    )
    assert (request.method, request.url, dict(request.headers)) == ("POST", URL, GOLDEN_HEADERS)
    assert request.body == (
        b"imgUrl1=https%3A%2F%2Fimg.example.com%2Fa+b%2F1.jpg%3Fx%3D1%26y%3D2"
        b"&imgUrl2=http%3A%2F%2Fimg.example.com%2F2.png"
    )


def test_golden_request_mixing_url_and_base64_sends_only_the_fields_in_use(vendor, ctx, png):
    request = vendor.build_compare(png, ImageRef(url="https://img.example.com/2.jpg"), ctx)
    assert dict(request.headers) == GOLDEN_HEADERS
    assert request.body == f"image1={PNG_FORM}&imgUrl2=https%3A%2F%2Fimg.example.com%2F2.jpg".encode()


def test_a_url_wins_over_bytes_in_the_same_ref(vendor, ctx, png):
    both = ImageRef(image=png.image, url="https://img.example.com/1.jpg")
    request = vendor.build_compare(both, png, ctx)
    assert request.body.startswith(b"imgUrl1=https%3A%2F%2Fimg.example.com%2F1.jpg&image2=")
    assert b"image1=" not in request.body


def test_a_frozen_context_gives_byte_identical_requests(vendor, ctx, png):
    a, b = vendor.build_compare(png, png, ctx), vendor.build_compare(png, png, ctx)
    assert (a.method, a.url, dict(a.headers), a.body) == (b.method, b.url, dict(b.headers), b.body)


def test_the_clock_drives_timestamp_and_sign(vendor, png):
    later = CallContext(now=datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC), nonce="n", request_id="r")
    request = vendor.build_compare(png, png, later)
    assert request.headers["timestamp"] == "1704164645006"
    # sha256("aaa1704164645006bbb"), computed once by hand with sha256sum.
    assert request.headers["sign"] == "a400cfb1aede0e21999b322e36c95a6839b7d93b9e09866847941cac9b0ee8a8"


def test_endpoint_override_keeps_its_prefix(ctx, png):
    creds = ShuxunCredentials(app_key="aaa", app_secret="bbb", endpoint="https://gw.example.com/shuxun/")
    request = ShuxunVendor(creds, Transport()).build_compare(png, png, ctx)
    assert request.url == "https://gw.example.com/shuxun/v1/faceCompare/check"


def test_the_secret_never_travels(ctx, png):
    creds = ShuxunCredentials(app_key="aaa", app_secret="S3cret-never-on-the-wire")
    request = ShuxunVendor(creds, Transport()).build_compare(png, png, ctx)
    assert b"S3cret" not in request.body
    assert all("S3cret" not in v for v in request.headers.values())
    assert "S3cret" not in repr(request)


@pytest.mark.parametrize("ref", [ImageRef(face_token="tok-123"), ImageRef()])
def test_refs_without_bytes_or_url_are_refused_before_sending(vendor, ctx, png, ref):
    with pytest.raises(errors.InvalidRequest) as e:
        vendor.build_compare(png, ref, ctx)
    assert e.value.vendor == "shuxun"
    assert "tok-123" not in e.value.message


# --- success --------------------------------------------------------------------------------


def test_parses_the_doc_success_example(vendor, ctx):
    outcome = parse(vendor, ctx, reply(DOC_SUCCESS))
    assert outcome.similarity == pytest.approx(0.97389)
    assert outcome.vendor_score == 97.389
    assert outcome.thresholds == {
        "low": pytest.approx(0.62327),
        "normal": pytest.approx(0.69101),
        "high": pytest.approx(0.73975),
    }
    assert outcome.vendor_request_id == "9hi5fht958638y0egkjpo8udjs76vgwx"
    assert outcome.billed is True
    assert outcome.vendor_match is None
    assert outcome.uncertain_band is None


@pytest.mark.parametrize(
    ("confidence", "level", "decision"),
    [
        (97.389, "high", "match"),
        (70.0, "normal", "match"),
        (70.0, "high", "no_match"),
        (65.0, "low", "match"),
        (65.0, "normal", "no_match"),
        (50.0, "low", "no_match"),
    ],
)
def test_security_levels_use_threshold1_2_3(vendor, ctx, confidence, level, decision):
    body = json.loads(json.dumps(DOC_SUCCESS))
    body["data"]["confidence"] = confidence
    outcome = parse(vendor, ctx, reply(body))
    assert decide(outcome, level)[0] == decision


def test_success_accepts_an_integer_score_and_code_and_unknown_billing(vendor, ctx):
    body = json.loads(json.dumps(DOC_SUCCESS))
    body["code"] = 0
    body["data"]["confidence"] = 100
    del body["isFee"]
    body["seqNo"] = None
    outcome = parse(vendor, ctx, reply(body))
    assert outcome.similarity == 1.0
    assert outcome.billed is None
    assert outcome.vendor_request_id is None


# --- every documented code --------------------------------------------------------------------

# Written out from the doc's code table on purpose, not derived from the module's table.
DOCUMENTED_CODES = [
    ("1", "参数错误", errors.VendorRejected),
    ("2", "无记录", errors.VendorRejected),
    ("3", "第三方服务异常", errors.VendorUnavailable),
    ("4", "签名错误", errors.VendorAuthFailed),
    ("5", "余额不足", errors.VendorQuotaExhausted),
    ("6", "调用频率超限", errors.VendorRateLimited),
    ("7", "账号停用", errors.VendorAuthFailed),
    ("8", "接口已停用", errors.VendorAuthFailed),
    ("9", "联系服务商开通接口权限", errors.VendorAuthFailed),
    ("10", "ip不在白名单", errors.VendorAuthFailed),
    ("11", "系统异常", errors.VendorUnavailable),
    ("12", "实名状态错误", errors.VendorAuthFailed),
    ("99", "其他异常", errors.VendorRejected),
]


def test_the_table_covers_exactly_the_documented_codes():
    assert set(ERRORS) == {code for code, _, _ in DOCUMENTED_CODES}
    assert set(RESULTS) | {SUCCESS_RESULT} == {"1", "2", "3"}


@pytest.mark.parametrize(("code", "msg", "cls"), DOCUMENTED_CODES)
@pytest.mark.parametrize(("is_fee", "billed"), [(0, False), (1, True)])
def test_every_documented_code(vendor, ctx, code, msg, cls, is_fee, billed):
    with pytest.raises(errors.FacegateError) as e:
        parse(vendor, ctx, reply(error_body(code, msg, is_fee)))
    assert type(e.value) is cls
    assert e.value.vendor == "shuxun"
    assert e.value.vendor_code == code
    assert e.value.vendor_message == msg
    assert e.value.billed is billed


def test_the_doc_error_example(vendor, ctx):
    body = {"code": "1", "msg": "必须上传2张人脸照片", "isFee": 0, "seqNo": None, "data": None}
    with pytest.raises(errors.VendorRejected) as e:
        parse(vendor, ctx, reply(body))
    assert e.value.body() == {
        "code": "VENDOR_REJECTED",
        "message": "shuxun reported a parameter error",
        "retryable": False,
        "vendor": "shuxun",
        "vendor_code": "1",
        "vendor_message": "必须上传2张人脸照片",
    }
    assert e.value.billed is False


def test_error_classes_route_as_intended(vendor, ctx):
    def raised(code):
        with pytest.raises(errors.VendorError) as e:
            parse(vendor, ctx, reply(error_body(code)))
        return e.value

    # rate limit and outages: try again, or elsewhere
    for code in ("6", "3", "11"):
        assert raised(code).retryable
        assert raised(code).failover
    assert not raised("1").failover  # the vendor answered: no second opinion
    assert not raised("99").retryable


def test_an_integer_code_is_read_like_the_string(vendor, ctx):
    with pytest.raises(errors.VendorAuthFailed) as e:
        parse(vendor, ctx, reply(error_body(4, "签名错误")))
    assert e.value.vendor_code == "4"


def test_an_error_code_wins_over_the_http_status(vendor, ctx):
    with pytest.raises(errors.VendorQuotaExhausted):
        parse(vendor, ctx, reply(error_body("5", "余额不足"), status=403))


def test_a_negative_code_is_not_a_code_at_all(vendor, ctx):
    with pytest.raises(errors.VendorBadResponse):
        parse(vendor, ctx, reply(error_body("-1", "奇怪")))


@pytest.mark.parametrize("code", ["13", "100"])
def test_undocumented_codes_are_a_rejection_carrying_the_code(vendor, ctx, code):
    with pytest.raises(errors.VendorRejected) as e:
        parse(vendor, ctx, reply(error_body(code, "奇怪", 1)))
    assert e.value.vendor_code == code
    assert e.value.vendor_message == "奇怪"
    assert e.value.billed is True


def test_a_long_vendor_message_is_capped(vendor, ctx):
    with pytest.raises(errors.VendorRejected) as e:
        parse(vendor, ctx, reply(error_body("99", "x" * 5000)))
    assert e.value.vendor_message == "x" * 200


def test_missing_isfee_means_billing_unknown(vendor, ctx):
    body = error_body("4", "签名错误")
    del body["isFee"]
    with pytest.raises(errors.VendorAuthFailed) as e:
        parse(vendor, ctx, reply(body))
    assert e.value.billed is None


# --- every documented result ------------------------------------------------------------------


@pytest.mark.parametrize(("is_fee", "billed"), [(0, False), (1, True)])
def test_result_2_no_data_is_a_rejection(vendor, ctx, png, is_fee, billed):
    with pytest.raises(errors.VendorRejected) as e:
        parse(vendor, ctx, reply(result_body(2, "比对成功,无数据", is_fee)), base64_request(vendor, ctx, png))
    assert (e.value.vendor_code, e.value.vendor_message, e.value.billed) == (
        "result:2",
        "比对成功,无数据",
        billed,
    )


@pytest.mark.parametrize(("is_fee", "billed"), [(0, False), (1, True)])
def test_result_3_with_base64_images_is_an_invalid_image(vendor, ctx, png, is_fee, billed):
    desc = "比对失败,无法正确解析、未按要求传入参数、下载图片超时"
    with pytest.raises(errors.InvalidImage) as e:
        parse(vendor, ctx, reply(result_body(3, desc, is_fee)), base64_request(vendor, ctx, png))
    assert type(e.value) is errors.InvalidImage
    assert (e.value.vendor_code, e.value.vendor_message, e.value.billed) == ("result:3", desc, billed)


@pytest.mark.parametrize("mixed", [False, True])
def test_result_3_when_a_url_was_sent_is_an_unavailable_image(vendor, ctx, png, mixed):
    first = png if mixed else ImageRef(url="https://img.example.com/1.jpg")
    request = vendor.build_compare(first, ImageRef(url="https://img.example.com/2.jpg"), ctx)
    with pytest.raises(errors.ImageUnavailable) as e:
        parse(vendor, ctx, reply(result_body(3)), request)
    assert e.value.vendor_code == "result:3"
    assert e.value.billed is False


def test_result_falls_back_to_msg_when_there_is_no_description(vendor, ctx, png):
    body = result_body(2)
    del body["data"]["resultDesc"]
    with pytest.raises(errors.VendorRejected) as e:
        parse(vendor, ctx, reply(body), base64_request(vendor, ctx, png))
    assert e.value.vendor_message == "成功"


def test_an_undocumented_result_is_a_bad_response(vendor, ctx):
    with pytest.raises(errors.VendorBadResponse) as e:
        parse(vendor, ctx, reply(result_body(4, "新结果", 1)))
    assert e.value.vendor_code == "result:4"
    assert e.value.billed is True


# --- malformed answers -----------------------------------------------------------------------


def _success_with(**changes) -> dict:
    body = json.loads(json.dumps(DOC_SUCCESS))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = body
        for p in parents:
            node = node[p]
        if value is ...:
            del node[leaf]
        else:
            node[leaf] = value
    return body


@pytest.mark.parametrize(
    "body",
    [
        [1, 2],
        "just a string",
        {"msg": "no code"},
        {"code": None, "msg": "x", "isFee": 0},
        {"code": True, "msg": "x", "isFee": 0},
        {"code": "abc", "msg": "x", "isFee": 0},
        _success_with(data=None),
        _success_with(data__result=...),
        _success_with(data__result="one"),
        _success_with(data__confidence=...),
        _success_with(data__confidence="97.389"),
        _success_with(data__confidence=-0.5),
        _success_with(data__confidence=100.01),
        _success_with(data__confidence=True),
        _success_with(data__threshold=...),
        _success_with(data__threshold=None),
        _success_with(data__threshold__threshold3=...),
        _success_with(data__threshold__threshold2="69"),
        _success_with(data__threshold__threshold1=80.0),  # above threshold2: levels inverted
    ],
    ids=lambda b: json.dumps(b, ensure_ascii=True)[:60],
)
def test_malformed_bodies_are_bad_responses(vendor, ctx, body):
    with pytest.raises(errors.VendorBadResponse) as e:
        parse(vendor, ctx, reply(body))
    assert e.value.vendor == "shuxun"


def test_a_nan_score_is_a_bad_response(vendor, ctx):
    raw = json.dumps(DOC_SUCCESS).replace("97.389", "NaN").encode()
    with pytest.raises(errors.VendorBadResponse):
        parse(vendor, ctx, reply(raw))


def test_a_malformed_success_keeps_the_billing_flag(vendor, ctx):
    with pytest.raises(errors.VendorBadResponse) as e:
        parse(vendor, ctx, reply(_success_with(data__confidence=...)))
    assert e.value.billed is True


def test_truncated_json_is_a_bad_response(vendor, ctx):
    with pytest.raises(errors.VendorBadResponse):
        parse(vendor, ctx, reply(b'{"code": "0", "data": {"trunc'))


def test_success_code_under_an_error_status_is_a_bad_response(vendor, ctx):
    with pytest.raises(errors.VendorBadResponse):
        parse(vendor, ctx, reply(DOC_SUCCESS, status=500))


@pytest.mark.parametrize(
    ("status", "body", "cls", "vendor_code"),
    [
        (500, b"<html>Internal Server Error</html>", errors.VendorUnavailable, "500"),
        (502, b"Bad Gateway", errors.VendorUnavailable, "502"),
        (503, b'{"status": 503, "error": "Service Unavailable"}', errors.VendorUnavailable, "503"),
        (429, b"slow down", errors.VendorRateLimited, "429"),
        (404, b'{"status": 404, "error": "Not Found"}', errors.VendorBadResponse, None),
        (200, b"<html>login</html>", errors.VendorBadResponse, None),
    ],
)
def test_http_level_failures(vendor, ctx, status, body, cls, vendor_code):
    with pytest.raises(errors.VendorError) as e:
        parse(vendor, ctx, reply(body, status=status))
    assert type(e.value) is cls
    assert e.value.vendor_code == vendor_code


# --- limits ----------------------------------------------------------------------------------


def _noise_png(side: int) -> bytes:
    # Random pixels barely compress, so a small side gives a big file, deterministically.
    pixels = random.Random(7).randbytes(side * side * 3)
    buf = io.BytesIO()
    PILImage.frombytes("RGB", (side, side), pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_fit_brings_a_large_image_under_the_base64_cap():
    big = load_bytes(_noise_png(600))
    assert len(big.base64) > 1_000_000
    fitted = fit(big, ShuxunVendor.limits)
    assert len(fitted.base64) <= 1_000_000
    assert fitted.format in ShuxunVendor.limits.formats


def test_fit_reencodes_webp_which_is_not_in_the_safe_formats():
    buf = io.BytesIO()
    PILImage.new("RGB", (64, 64), (200, 120, 90)).save(buf, format="WEBP")
    webp = load_bytes(buf.getvalue())
    assert fit(webp, ShuxunVendor.limits).format == "JPEG"


def test_a_face_photo_under_the_cap_is_sent_unchanged(face_bytes):
    image = load_bytes(face_bytes("obama.jpg"))
    assert fit(image, ShuxunVendor.limits) is image
