"""聚美智数 (jumei): golden requests, every documented code through the parser, and
no personal data in any error."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from facegate.errors import (
    FacegateError,
    IdentityMismatch,
    IdentityNotFound,
    ImageTooLarge,
    InvalidIdNumber,
    InvalidImage,
    InvalidName,
    InvalidRequest,
    MultipleFaces,
    NoFace,
    PoorImageQuality,
    VendorAuthFailed,
    VendorBadResponse,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from facegate.images import Image
from facegate.models import Operation
from facegate.transport import Transport
from facegate.vendors import vendor_class
from facegate.vendors.base import CallContext, HttpResponse, Identity, ImageRef, decide
from facegate.vendors.jumei import JumeiCredentials, JumeiVendor

NAME = "张三"
ID_NUMBER = "110105199003071239"
PII = (NAME, ID_NUMBER, ID_NUMBER[6:14], ID_NUMBER[:6] + ID_NUMBER[6:10])  # incl. birth date fragments
CTX = CallContext(now=datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC), nonce="n-1", request_id="req-1")
# A few bytes whose base64 ("/9j/4PvvvgA=") needs percent-encoding; build() never decodes.
IMAGE = Image(data=b"\xff\xd8\xff\xe0\xfb\xef\xbe\x00", format="JPEG", width=100, height=100)


@pytest.fixture
def vendor() -> JumeiVendor:
    creds = JumeiCredentials(secret_id="AKIDtest", secret_key="test-secret-key")
    return JumeiVendor(creds, Transport())


def _request(vendor, name=NAME, id_number=ID_NUMBER, image=None):
    return vendor.build_verify_identity(Identity(name, id_number), image or ImageRef(image=IMAGE), CTX)


# --- declaration ------------------------------------------------------------------------


def test_declaration():
    assert vendor_class("jumei") is JumeiVendor
    assert JumeiVendor.operations == frozenset({Operation.VERIFY_IDENTITY})
    assert JumeiVendor.accepts_urls is True
    assert JumeiVendor.limits.formats == frozenset({"JPEG", "PNG", "BMP"})
    assert JumeiVendor.limits.max_bytes == 1024 * 1024


def test_credentials_default_source_and_never_show_the_key():
    creds = JumeiCredentials.model_validate({"secret_id": "AKIDx", "secret_key": "very-secret", "extra": 1})
    assert creds.source == "market"
    assert "very-secret" not in repr(creds)
    assert "very-secret" not in str(creds)


@pytest.mark.parametrize("bad", ['AK"ID', "AK,ID", "AK ID", ""])
def test_credentials_refuse_header_breaking_ids(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        JumeiCredentials(secret_id=bad, secret_key="k")


# --- golden requests ----------------------------------------------------------------------

# Signature: printf 'x-date: Sun, 01 Jun 2025 12:00:00 GMT\nx-source: market' \
#            | openssl dgst -sha1 -hmac 'test-secret-key' -binary | base64
GOLDEN_HEADERS = {
    "X-Source": "market",
    "X-Date": "Sun, 01 Jun 2025 12:00:00 GMT",
    "Authorization": (
        'hmac id="AKIDtest", algorithm="hmac-sha1", headers="x-date x-source", signature="hXc/kUwLRhTDqamyJ5YvZJ+PzkI="'
    ),
    "Content-Type": "application/x-www-form-urlencoded",
}


def test_golden_request_base64(vendor):
    req = _request(vendor)
    assert req.method == "POST"
    assert req.url == "https://service-8ce49wg7-1305308687.sh.apigw.tencentcs.com/release/idcardface/validate"
    assert dict(req.headers) == GOLDEN_HEADERS
    assert list(req.headers) == list(GOLDEN_HEADERS)
    assert req.body == (b"idcard_number=110105199003071239&imgBase64=%2F9j%2F4PvvvgA%3D&name=%E5%BC%A0%E4%B8%89")


def test_golden_request_url_and_normalised_identity(vendor):
    req = _request(
        vendor,
        name="  John   Smith ",
        id_number=" 11010519491231002x ",
        image=ImageRef(url="https://example.com/p.jpg?a=1&b=2"),
    )
    assert dict(req.headers) == GOLDEN_HEADERS  # the date and key decide the signature, not the body
    assert req.body == (
        b"idcard_number=11010519491231002X&imgUrl=https%3A%2F%2Fexample.com%2Fp.jpg%3Fa%3D1%26b%3D2&name=John+Smith"
    )


def test_same_context_same_bytes(vendor):
    a, b = _request(vendor), _request(vendor)
    assert (a.method, a.url, dict(a.headers), a.body) == (b.method, b.url, dict(b.headers), b.body)


def test_endpoint_override(vendor):
    creds = JumeiCredentials(secret_id="AKIDtest", secret_key="k", endpoint="http://127.0.0.1:9/prefix/")
    req = _request(JumeiVendor(creds, Transport()))
    assert req.url == "http://127.0.0.1:9/prefix/release/idcardface/validate"


def test_face_tokens_are_refused(vendor):
    with pytest.raises(InvalidRequest):
        _request(vendor, image=ImageRef(face_token="tok"))


@pytest.mark.parametrize(
    ("name", "id_number", "error"),
    [(NAME, "110105199003071238", InvalidIdNumber), ("张3", ID_NUMBER, InvalidName)],
)
def test_invalid_identities_never_become_requests(vendor, name, id_number, error):
    with pytest.raises(error) as exc:
        _request(vendor, name=name, id_number=id_number)
    _assert_no_pii(exc.value, name, id_number)


def test_request_repr_hides_the_identity(vendor):
    req = _request(vendor)
    for text in (repr(req), repr(req.state)):
        assert ID_NUMBER not in text
        assert NAME not in text
        assert "test-secret-key" not in text
    state = req.state
    assert ID_NUMBER not in repr(state)
    assert NAME not in repr(state)
    assert "1101**********1239" in repr(state)


# --- parsing ------------------------------------------------------------------------------


def _response(body, status: int = 200) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return HttpResponse(status=status, headers={"Content-Type": "application/json"}, body=raw)


def _result(incorrect: int, score: float = 0.0, msg: str = "…") -> dict:
    return {
        "code": 200,
        "taskNo": "568753443590770688",
        "data": {"score": score, "msg": msg, "incorrect": incorrect},
    }


def _parse(vendor, response):
    return vendor.parse_verify_identity(response, _request(vendor), CTX)


def test_success(vendor):
    outcome = _parse(vendor, _response(_result(100, 0.82, "系统判断为同一人")))
    assert outcome.similarity == 0.82
    assert outcome.vendor_score == 0.82
    assert outcome.vendor_request_id == "568753443590770688"
    assert outcome.billed is True
    assert outcome.uncertain_band == (0.40, 0.45)
    assert dict(outcome.thresholds) == {"low": 0.45, "normal": 0.45, "high": 0.55}
    assert outcome.vendor_match is None
    assert decide(outcome, "normal") == ("match", 0.45)


def test_codes_as_strings_and_numeric_task_numbers_are_accepted(vendor):
    body = {"code": "200", "taskNo": 568753443590770688, "data": {"score": 0.5, "incorrect": "100"}}
    outcome = _parse(vendor, _response(body))
    assert outcome.similarity == 0.5
    assert outcome.vendor_request_id == "568753443590770688"


@pytest.mark.parametrize(
    ("score", "level", "decision"),
    [
        (0.42, "normal", "uncertain"),  # the doc's "cannot tell" band
        (0.40, "normal", "uncertain"),
        (0.4499, "normal", "uncertain"),
        (0.42, "low", "uncertain"),  # low never turns "cannot tell" into a match
        (0.42, "high", "no_match"),  # high wants a clear margin
        (0.45, "normal", "match"),
        (0.45, "low", "match"),
        (0.39, "normal", "no_match"),
        (0.39, "low", "no_match"),
        (0.50, "high", "no_match"),
        (0.55, "high", "match"),
        (0.0, "normal", "no_match"),
        (1.0, "high", "match"),
    ],
)
def test_decisions_follow_the_doc(vendor, score, level, decision):
    outcome = _parse(vendor, _response(_result(100, score)))
    assert decide(outcome, level)[0] == decision


INCORRECT = [
    (101, "身份证号码姓名不一致", IdentityMismatch),
    (102, "库中无此号", IdentityNotFound),
    (103, "身份核验成功,数据非法", VendorRejected),
    (104, "数据非法", VendorRejected),
    (106, "人脸识别系统异常", VendorUnavailable),
    (107, "照片质量不合格", PoorImageQuality),
    (108, "上传图片文件过大", ImageTooLarge),
    (109, "身份核验成功,库中无照片", IdentityNotFound),
    (110, "身份核验成功,特征提取失败", NoFace),
    (111, "身份核验成功,检测到多于一张人脸", MultipleFaces),
    (112, "身份核验成功,图片不合法", InvalidImage),
    (113, "人像比对服务异常", VendorUnavailable),
]


@pytest.mark.parametrize(("incorrect", "msg", "error"), INCORRECT)
def test_every_incorrect_code(vendor, incorrect, msg, error):
    with pytest.raises(error) as exc:
        _parse(vendor, _response(_result(incorrect, 0.0, msg)))
    e = exc.value
    assert type(e) is error
    assert e.vendor == "jumei"
    assert e.vendor_code == str(incorrect)
    assert e.vendor_message == msg
    assert e.billed is True  # a code-200 answer: the public-security check ran
    _assert_no_pii(e)


def test_an_undocumented_incorrect_code_is_a_vendor_error(vendor):
    with pytest.raises(VendorError) as exc:
        _parse(vendor, _response(_result(105)))
    assert type(exc.value) is VendorError
    assert exc.value.vendor_code == "105"
    assert exc.value.billed is True


@pytest.mark.parametrize(
    ("code", "msg", "error"),
    [
        (400, "身份证号格式错误", VendorRejected),
        (400, "参数错误", VendorRejected),
        (500, "系统维护,请稍候再试", VendorUnavailable),
        (501, "官方数据源维护,请稍候再试", VendorUnavailable),
        (999, "其他", VendorError),
        (777, "未知", VendorError),  # undocumented
    ],
)
def test_every_top_level_code(vendor, code, msg, error):
    with pytest.raises(error) as exc:
        _parse(vendor, _response({"msg": msg, "code": code}))
    e = exc.value
    assert type(e) is error
    assert e.vendor_code == str(code)
    assert e.vendor_message == msg
    assert e.billed is False
    _assert_no_pii(e)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "HMAC signature cannot be verified, the x-date header is out of date for HMAC Authentication"),
        (401, "HMAC signature does not match"),
        (403, "HMAC signature does not match"),
        (403, "Found no validate usage plan"),
    ],
)
def test_gateway_auth_failures(vendor, status, message):
    with pytest.raises(VendorAuthFailed) as exc:
        _parse(vendor, _response({"message": message}, status))
    assert exc.value.vendor_code == str(status)
    assert exc.value.vendor_message == message
    assert exc.value.billed is False


def test_gateway_auth_failure_without_json(vendor):
    with pytest.raises(VendorAuthFailed) as exc:
        _parse(vendor, _response(b"<html>401</html>", 401))
    assert exc.value.vendor_message is None


def test_gateway_rate_limit(vendor):
    with pytest.raises(VendorRateLimited) as exc:
        _parse(vendor, _response({"message": "API rate limit exceeded"}, 429))
    assert exc.value.billed is False


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (_response(b"<html>Bad Gateway</html>", 502), VendorUnavailable),
        (_response({"message": "upstream timeout"}, 504), VendorUnavailable),
        (_response({"message": "There is no api match"}, 404), VendorRejected),
        (_response(b'{"code": 200, "data": {"trunc', 200), VendorBadResponse),
        (_response([1, 2], 200), VendorBadResponse),
        (_response({"taskNo": "1"}, 200), VendorBadResponse),
        (_response({"code": 200, "taskNo": "1"}, 200), VendorBadResponse),
        (_response({"code": 200, "data": {"score": 0.9}}, 200), VendorBadResponse),
        (_response(_result(100, 1.5), 200), VendorBadResponse),
        (_response(_result(100, -0.1), 200), VendorBadResponse),
        (_response({"code": 200, "data": {"incorrect": 100, "score": "0.9"}}, 200), VendorBadResponse),
        (_response({"code": 200, "data": {"incorrect": 100, "score": True}}, 200), VendorBadResponse),
        (_response({"code": True, "data": {}}, 200), VendorBadResponse),
    ],
)
def test_unusable_answers(vendor, response, error):
    with pytest.raises(error) as exc:
        _parse(vendor, response)
    assert type(exc.value) is error


# --- personal data --------------------------------------------------------------------------


def _assert_no_pii(e: FacegateError, name: str = NAME, id_number: str = ID_NUMBER) -> None:
    rendered = [str(e), repr(e), json.dumps(e.body(), ensure_ascii=False)]
    for text in rendered:
        for secret in (name, id_number, id_number[6:14]):
            assert secret not in text, (secret, text)


@pytest.mark.parametrize(("incorrect", "msg", "error"), [*INCORRECT, (105, "?", VendorError)])
def test_vendor_messages_echoing_the_identity_are_scrubbed(vendor, incorrect, msg, error):
    echo = f"{msg}: {NAME} {ID_NUMBER} / 11010519491231002X"
    with pytest.raises(error) as exc:
        _parse(vendor, _response(_result(incorrect, 0.0, echo)))
    _assert_no_pii(exc.value)
    assert "11010519491231002X" not in exc.value.vendor_message  # any ID-like run, not only ours
    assert "张*" in exc.value.vendor_message
    assert "1101**********1239" in exc.value.vendor_message


def test_top_level_and_gateway_messages_are_scrubbed(vendor):
    with pytest.raises(VendorRejected) as exc:
        _parse(vendor, _response({"msg": f"身份证号格式错误 {ID_NUMBER}", "code": 400}))
    _assert_no_pii(exc.value)
    with pytest.raises(VendorAuthFailed) as exc:
        _parse(vendor, _response({"message": f"bad {NAME}"}, 401))
    _assert_no_pii(exc.value)


def test_vendor_messages_are_bounded(vendor):
    with pytest.raises(VendorRejected) as exc:
        _parse(vendor, _response({"msg": "错" * 5000, "code": 400}))
    assert len(exc.value.vendor_message) <= 200


def test_a_gateway_echo_of_our_secret_id_is_scrubbed(vendor):
    # The Tencent market gateway can echo the request's Authorization header back.
    secret_id = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA"
    echo = f'HMAC signature does not match: hmac id="{secret_id}", signature="hXc/kUwLRhTDqamyJ5YvZJ+PzkI="'
    with pytest.raises(VendorAuthFailed) as exc:
        _parse(vendor, _response({"message": echo}, 401))
    assert secret_id not in json.dumps(exc.value.body())
    assert exc.value.vendor_message.startswith("HMAC signature does not match: hmac id=[redacted]")
