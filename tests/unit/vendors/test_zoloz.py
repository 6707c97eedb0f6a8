"""ZOLOZ face compare adapter: golden requests, response verification, every code.

Golden signatures were computed outside the code under test, with the fixture key
(``tests/fixtures/zoloz/merchant_private.pem``)::

    { printf 'POST /api/v1/zoloz/facecompare/compare\\n2188000123456789.2019-04-04T12:08:56+0530.'; \\
      cat body; } | openssl dgst -sha256 -sign merchant_private.pem | base64 -w0 \\
      | sed -e 's/+/%2B/g' -e 's#/#%2F#g' -e 's/=/%3D/g'

and the encrypted body with ``openssl enc -aes-256-ecb -K 000102…1f | base64 -w0``.
RSASSA-PKCS1-v1_5 is deterministic, so the golden Signature header is stable.
Responses are signed here with ``cryptography`` directly, not with facegate's signer.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pydantic import ValidationError
from requests.structures import CaseInsensitiveDict

from facegate.errors import (
    ImageTooLarge,
    InvalidOption,
    InvalidRequest,
    NoFace,
    VendorAuthFailed,
    VendorBadResponse,
    VendorNotConfigured,
    VendorQuotaExhausted,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from facegate.images import Image
from facegate.transport import Transport
from facegate.vendors import vendor_class
from facegate.vendors.base import CallContext, HttpResponse, ImageRef, decide
from facegate.vendors.zoloz import (
    ERRORS,
    MAX_TOTAL_BASE64,
    PATH,
    ZolozCredentials,
    ZolozOptions,
    ZolozVendor,
    biz_id,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "zoloz"
MERCHANT_PRIVATE = (FIXTURES / "merchant_private.pem").read_text()
MERCHANT_PUBLIC = (FIXTURES / "merchant_public.pem").read_text()
ZOLOZ_PRIVATE = (FIXTURES / "zoloz_private.pem").read_text()
ZOLOZ_PUBLIC = (FIXTURES / "zoloz_public.pem").read_text()
_ZOLOZ_KEY = serialization.load_pem_private_key(ZOLOZ_PRIVATE.encode(), password=None)
_MERCHANT_KEY = serialization.load_pem_private_key(MERCHANT_PRIVATE.encode(), password=None)

CLIENT_ID = "2188000123456789"
NOW = datetime(2019, 4, 4, 12, 8, 56, tzinfo=timezone(timedelta(hours=5, minutes=30)))
REQUEST_ID = "01HV3K8Z6Q4WJ9T2B5N7XRCM0D"  # a 26-character ULID, like facegate's request ids
RESPONSE_TIME = "2019-04-04T14:39:02+0800"  # six seconds after NOW, in ZOLOZ's Singapore time
AES_KEY = bytes(range(32))

IMAGE1 = Image(data=b"\xff\xd8\xff\xe0golden-face-1", format="JPEG", width=320, height=320)
IMAGE2 = Image(data=b"\xff\xd8\xff\xe0golden-face-2", format="JPEG", width=320, height=320)

GOLDEN_BODY = (
    b'{"bizId":"01HV3K8Z6Q4WJ9T2B5N7XRCM0D","face1":{"content":"/9j/4GdvbGRlbi1mYWNlLTE="},'
    b'"face2":{"content":"/9j/4GdvbGRlbi1mYWNlLTI="},"sourceOfFace2":"SELFIE"}'
)
GOLDEN_SIGNATURE = (
    "FaGVz9nenecgYUACIILncXRHcix1MA22K1vDK5hxKPEOvDWNtyoLNkXtdXDlwm6RzkRhdjm%2Fua942zLHmk9BhPQnEkjZAZPhI%2F08rHp"
    "U9eaEY%2F5j2pm1mC%2FTr1KoCjJe0GeB%2BSUrIQbyefX63JqwzVRb4pDT4lQM6QXMEbcQbq%2FPbHMlwvtvQCkqKHkzHQnSlYy2fMskwG"
    "Zgz7Q79SSHOhAQXMSfZ3XiK6%2BxAYCSd0mQ19Z1GUwQ%2BgJ0miq5njZlNeA0CfbHRUsM3Q08V%2B2PlBeutNpnJU9mR0V1I90s0dzs2%2B%"
    "2FfW0bfcGl3UxlbNPaQ9reknbSWvxbiZFXAdkkFSQ%3D%3D"
)
GOLDEN_ENCRYPTED_BODY = (
    b"epJeNARq0A2NzrcA0qY98Hdirq0qmO1Y6x7Ji6iYOq7l7pzvWSRhKXJMdV5OtR4l/8vaP6WJQ2eCItRbWwwPgYLe6xm6VOXnpnbSLEjLOQ"
    b"UY4svhyuofqFCz420CoFsLtQ0n7jBgzsEI3TxQN0h2gNpNJ+v5AyiVNluVCVfG9WbC9dR8riQiUAGpvJf569jVOytcEBNFlDrwIGJqzqDZ"
    b"BA=="
)
GOLDEN_ENCRYPTED_SIGNATURE = (
    "HuDaKZoUbY6IwlmDrT8rOb8lNK163yAa9%2F6nAS3b16Ydclx4r6s01o%2B2nLBazLOpmVfUPUDGQ9k%2B2FM3GA5LyxXoe97RgQHuxFC%2FI"
    "pKQ3pRFw5Z1UIyF2%2F6Hc4PDpRfKoOPjqKYkFxvCnYR3FPHNujQOMA%2BHAtSKDl3b26Wrrbo%2Bq4p8VTy0VkFtPpgQUsf9Y0KwKLRP3Jd"
    "D%2BiCsoSxyHPjdB1tg4ShgFB6TOc0PeDtTdxY2XYBQmiwVkhuleVO2qKDqFmgGZJtsaFe7IOsMzotYN8vCzR0YMecrSNW3%2FTksezogiHk"
    "TvpI2IjokWuScCPg47yNaHzUp%2B2SQWUFF5A%3D%3D"
)

SUCCESS = {
    "transactionId": "G000000005FID20200304000000000001570702",
    "score": 88.2,
    "samePerson": True,
    "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
}

# Every resultCode the docs list: the compare page's own, and the common table of
# docs.zoloz.com/zoloz/saas/apireference/errorhandling.
DOCUMENTED_CODES = {
    "SUCCESS",
    "INVALID_ARGUMENT",
    "UNABLE_GET_IMAGE",
    "SYSTEM_ERROR",
    "PARAM_MISSING",
    "PARAM_ILLEGAL",
    "MSG_PARSE_ERROR",
    "SIGNATURE_INVALID",
    "KEY_NOT_FOUND",
    "MERCHANT_NOT_FOUND",
    "OAUTH_FAIL",
    "OAUTH_RESOURCE_CODE_FAIL",
    "ACCESS_DENIED",
    "NO_INTERFACE_DEF",
    "REQUEST_TRAFFIC_EXCEED_LIMIT",
    "PRODUCT_QUOTA_LIMIT",
    "PROCESS_TIMEOUT",
}


def credentials(**over) -> ZolozCredentials:
    return ZolozCredentials.model_validate(
        {
            "client_id": CLIENT_ID,
            "merchant_private_key": MERCHANT_PRIVATE,
            "zoloz_public_key": ZOLOZ_PUBLIC,
            "encrypt": False,
            **over,
        }
    )


def make_vendor(**over) -> ZolozVendor:
    return ZolozVendor(credentials(**over), Transport(), aes_key_source=lambda n: AES_KEY[:n])


def ctx(**kw) -> CallContext:
    return CallContext(now=NOW, nonce="0123456789abcdef0123456789abcdef", request_id=REQUEST_ID, **kw)


def build(vendor: ZolozVendor | None = None, **kw):
    return (vendor or make_vendor()).build_compare(ImageRef(image=IMAGE1), ImageRef(image=IMAGE2), ctx(**kw))


def _aes(key: bytes, data: bytes) -> bytes:
    padder = block_padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - ZOLOZ's scheme
    return enc.update(padder.update(data) + padder.finalize()) + enc.finalize()


def _url_b64(raw: bytes) -> str:
    return quote(base64.b64encode(raw).decode(), safe="")


def zoloz_says(
    payload,
    *,
    status: int = 200,
    response_time: str | None = RESPONSE_TIME,
    signed: bool = True,
    key=_ZOLOZ_KEY,
    encrypt_with: bytes | None = None,
    wrap: bool = True,
    sign_over: bytes | None = None,
    algorithm: str = "RSA256",
) -> HttpResponse:
    """A response as ZOLOZ sends it, signed with its private key over the body as sent."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = CaseInsensitiveDict({"Content-Type": "application/json; charset=UTF-8"})
    if encrypt_with is not None:
        body = base64.b64encode(_aes(encrypt_with, body))
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        if wrap:
            wrapped = _MERCHANT_KEY.public_key().encrypt(encrypt_with, padding.PKCS1v15())
            headers["Encrypt"] = "algorithm=RSA_AES, symmetricKey=" + _url_b64(wrapped)
    if response_time is not None:
        headers["Response-Time"] = response_time
    if signed:
        signed_body = sign_over if sign_over is not None else body
        content = f"POST {PATH}\n{CLIENT_ID}.{response_time}.".encode() + signed_body
        raw = key.sign(content, padding.PKCS1v15(), hashes.SHA256())
        headers["Signature"] = f"algorithm={algorithm}, signature=" + _url_b64(raw)
    return HttpResponse(status=status, headers=headers, body=body)


def parse(response: HttpResponse, request=None, **kw):
    vendor = make_vendor()
    return vendor.parse_compare(response, request or build(vendor), ctx(**kw))


def result(code: str, status: str = "F", message: str = "a message") -> dict:
    return {"result": {"resultCode": code, "resultStatus": status, "resultMessage": message}}


# --- capabilities ---------------------------------------------------------------------------------


def test_registry_and_capabilities():
    assert vendor_class("zoloz") is ZolozVendor
    assert ZolozVendor.id == "zoloz"
    assert ZolozVendor.default_endpoint == "https://sg-production-api.zoloz.com"
    assert [op.value for op in ZolozVendor.operations] == ["compare"]
    assert ZolozVendor.accepts_urls is False


def test_limits_keep_both_images_under_five_megabytes_of_base64():
    limits = ZolozVendor.limits
    assert limits.formats == frozenset({"JPEG"})
    # The service gives each of the two images half of total_bytes (raw); as base64
    # that is 4/3 as much, and the two together must stay under 5 MB.
    per_image_raw = limits.total_bytes // 2
    assert 2 * 4 * ((per_image_raw + 2) // 3) <= MAX_TOTAL_BASE64 == 5_000_000


# --- golden requests ------------------------------------------------------------------------------


def test_golden_plain_request():
    request = build()
    assert request.method == "POST"
    assert request.url == "https://sg-production-api.zoloz.com/api/v1/zoloz/facecompare/compare"
    assert dict(request.headers) == {
        "Content-Type": "application/json; charset=UTF-8",
        "Client-Id": CLIENT_ID,
        "Request-Time": "2019-04-04T12:08:56+0530",
        "Signature": "algorithm=RSA256, signature=" + GOLDEN_SIGNATURE,
    }
    assert request.body == GOLDEN_BODY


def test_golden_request_is_byte_identical_when_built_twice():
    assert build() == build()


def test_golden_signature_verifies_with_the_merchant_public_key():
    request = build()
    content = f"POST {PATH}\n{CLIENT_ID}.2019-04-04T12:08:56+0530.".encode() + request.body
    signature = base64.b64decode(unquote(request.headers["Signature"].split("signature=", 1)[1]))
    _MERCHANT_KEY.public_key().verify(signature, content, padding.PKCS1v15(), hashes.SHA256())


def test_golden_encrypted_request():
    request = build(make_vendor(encrypt=True))
    assert request.body == GOLDEN_ENCRYPTED_BODY
    assert request.headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert request.headers["Client-Id"] == CLIENT_ID
    assert request.headers["Request-Time"] == "2019-04-04T12:08:56+0530"
    # The signature covers the encrypted body as sent.
    assert request.headers["Signature"] == "algorithm=RSA256, signature=" + GOLDEN_ENCRYPTED_SIGNATURE
    # The Encrypt header is randomised by RSA padding; what it carries is fixed.
    prefix = "algorithm=RSA_AES, symmetricKey="
    assert request.headers["Encrypt"].startswith(prefix)
    wrapped = base64.b64decode(unquote(request.headers["Encrypt"][len(prefix) :]))
    assert _ZOLOZ_KEY.decrypt(wrapped, padding.PKCS1v15()) == AES_KEY
    assert b"golden" not in request.body  # no image bytes in the clear
    assert repr(AES_KEY) not in repr(request)  # the key stays out of logs


def test_endpoint_from_the_secret_gets_the_documented_path():
    request = build(make_vendor(endpoint="https://hk-production-api.zoloz.net/"))
    assert request.url == "https://hk-production-api.zoloz.net/api/v1/zoloz/facecompare/compare"


def test_source_of_face2_option():
    options = ZolozVendor.parse_options({"source_of_face2": "00000001003"})
    body = json.loads(build(options=options).body)
    assert body["sourceOfFace2"] == "00000001003"
    assert ZolozVendor.parse_options({}) == ZolozOptions(source_of_face2="SELFIE")


@pytest.mark.parametrize("options", [{"source_of_face2": "ID_PHOTO"}, {"source_of_face2": "123"}, {"sourceOfFace": 1}])
def test_invalid_options_are_refused_before_any_call(options):
    with pytest.raises(InvalidOption):
        ZolozVendor.parse_options(options)


def test_no_user_id_is_sent():
    assert "userId" not in json.loads(build().body)


@pytest.mark.parametrize(
    "request_id",
    ["x" * 33, "请求-01HV3K8Z6Q4WJ9T2B5N7XRCM0D", "line\nbreak"],
    ids=["long", "non-ascii", "control"],
)
def test_biz_id_is_hashed_when_the_request_id_does_not_fit(request_id):
    value = biz_id(request_id)
    assert len(value) == 32
    assert value == biz_id(request_id)
    assert set(value) <= set("0123456789abcdef")


def test_biz_id_is_the_request_id_when_it_fits():
    assert biz_id(REQUEST_ID) == REQUEST_ID
    assert biz_id("a" * 32) == "a" * 32


def test_two_images_over_five_megabytes_of_base64_are_refused_before_sending():
    big = Image(data=b"\xff\xd8\xff" + bytes(1_875_000), format="JPEG", width=4000, height=3000)
    with pytest.raises(ImageTooLarge) as e:
        make_vendor().build_compare(ImageRef(image=big), ImageRef(image=big), ctx())
    assert "/9j/" not in e.value.message  # no image data in the message


def test_urls_and_face_tokens_are_not_sent():
    with pytest.raises(InvalidRequest):
        make_vendor().build_compare(ImageRef(url="https://example.com/a.jpg"), ImageRef(image=IMAGE2), ctx())
    with pytest.raises(InvalidRequest):
        make_vendor().build_compare(ImageRef(image=IMAGE1), ImageRef(face_token="t"), ctx())


# --- credentials ----------------------------------------------------------------------------------


def _bare(pem: str) -> str:
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


def test_credentials_accept_the_portals_bare_base64_keys():
    creds = credentials(merchant_private_key=_bare(MERCHANT_PRIVATE), zoloz_public_key=_bare(ZOLOZ_PUBLIC))
    assert build(ZolozVendor(creds, Transport())).headers["Signature"].endswith(GOLDEN_SIGNATURE)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("merchant_private_key", "not a key"),
        ("merchant_private_key", MERCHANT_PUBLIC),  # a public key where the private one goes
        ("zoloz_public_key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
        ("zoloz_public_key", ZOLOZ_PRIVATE),  # a private key where the public one goes
        ("client_id", "2188 0001"),  # would break the header and the signed content
        ("client_id", ""),
    ],
)
def test_bad_credentials_fail_at_load_naming_the_field_without_the_value(field, value):
    with pytest.raises(ValidationError) as e:
        credentials(**{field: value})
    assert [err["loc"] for err in e.value.errors()] == [(field,)]
    if value:
        assert value not in str(e.value)


def test_credentials_repr_hides_the_keys():
    creds = credentials()
    assert "PRIVATE" not in repr(creds)
    assert "PRIVATE" not in str(creds)
    assert CLIENT_ID not in repr(creds)


def test_no_credentials_is_not_configured():
    vendor = ZolozVendor(None, Transport())  # type: ignore[arg-type]
    with pytest.raises(VendorNotConfigured):
        vendor.build_compare(ImageRef(image=IMAGE1), ImageRef(image=IMAGE2), ctx())


# --- success --------------------------------------------------------------------------------------


def test_success():
    outcome = parse(zoloz_says(SUCCESS))
    assert outcome.similarity == pytest.approx(0.882)
    assert outcome.vendor_score == 88.2
    assert outcome.vendor_match is True
    assert outcome.vendor_request_id == "G000000005FID20200304000000000001570702"
    assert outcome.billed is True
    assert dict(outcome.thresholds) == {"low": 0.6, "normal": 0.7, "high": 0.8}
    assert decide(outcome, "normal") == ("match", 0.7)
    assert decide(outcome, "high") == ("match", 0.8)


def test_zoloz_verdict_decides_at_normal_and_the_score_elsewhere():
    outcome = parse(zoloz_says({**SUCCESS, "score": 75.0, "samePerson": False}))
    assert decide(outcome, "normal") == ("no_match", 0.7)  # ZOLOZ's own threshold is not published
    assert decide(outcome, "low") == ("match", 0.6)
    assert decide(outcome, "high") == ("no_match", 0.8)


def test_without_same_person_the_normal_threshold_decides():
    payload = {k: v for k, v in SUCCESS.items() if k != "samePerson"}
    outcome = parse(zoloz_says({**payload, "score": 71}))
    assert outcome.vendor_match is None
    assert decide(outcome, "normal") == ("match", 0.7)


def test_transaction_id_inside_result_is_used_when_the_top_level_one_is_missing():
    payload = {
        "score": 10.0,
        "samePerson": False,
        "result": {**SUCCESS["result"], "transactionId": "G-inner"},
    }
    assert parse(zoloz_says(payload)).vendor_request_id == "G-inner"


@pytest.mark.parametrize("score", [None, -1, 100.5, "88.2", True, float("nan")])
def test_a_score_off_the_scale_is_a_bad_response(score):
    payload = {**SUCCESS, "score": score}
    if score is None:
        del payload["score"]
    body = json.dumps(payload).encode()  # NaN is written as the bare token NaN
    with pytest.raises(VendorBadResponse):
        parse(zoloz_says(body))


def test_same_person_must_be_a_boolean():
    with pytest.raises(VendorBadResponse):
        parse(zoloz_says({**SUCCESS, "samePerson": "true"}))


@pytest.mark.parametrize(("status", "http"), [("F", 200), ("U", 200), (None, 200), ("S", 500)])
def test_success_code_with_a_failed_status_is_not_trusted(status, http):
    payload = {**SUCCESS, "result": {**SUCCESS["result"], "resultStatus": status}}
    with pytest.raises(VendorBadResponse):
        parse(zoloz_says(payload, status=http))


# --- every code -----------------------------------------------------------------------------------


def test_the_table_covers_every_documented_code():
    assert set(ERRORS) | {"SUCCESS"} == DOCUMENTED_CODES


@pytest.mark.parametrize(
    ("code", "status", "error", "billed"),
    [
        ("INVALID_ARGUMENT", "F", VendorRejected, False),
        ("UNABLE_GET_IMAGE", "F", NoFace, None),
        ("SYSTEM_ERROR", "U", VendorUnavailable, None),
        ("PARAM_MISSING", "F", VendorRejected, False),
        ("PARAM_ILLEGAL", "F", VendorRejected, False),
        ("MSG_PARSE_ERROR", "F", VendorRejected, False),
        ("SIGNATURE_INVALID", "F", VendorAuthFailed, False),
        ("KEY_NOT_FOUND", "F", VendorAuthFailed, False),
        ("MERCHANT_NOT_FOUND", "F", VendorAuthFailed, False),
        ("OAUTH_FAIL", "F", VendorAuthFailed, False),
        ("OAUTH_RESOURCE_CODE_FAIL", "F", VendorAuthFailed, False),
        ("ACCESS_DENIED", "F", VendorAuthFailed, False),
        ("NO_INTERFACE_DEF", "F", VendorNotConfigured, False),
        ("REQUEST_TRAFFIC_EXCEED_LIMIT", "F", VendorRateLimited, False),
        ("PRODUCT_QUOTA_LIMIT", "F", VendorQuotaExhausted, False),
        ("PROCESS_TIMEOUT", "F", VendorUnavailable, None),
    ],
)
def test_every_code(code, status, error, billed):
    with pytest.raises(error) as e:
        parse(zoloz_says(result(code, status, "the vendor's words")))
    assert type(e.value) is error
    assert e.value.vendor == "zoloz"
    assert e.value.vendor_code == code
    assert e.value.vendor_message == "the vendor's words"
    assert e.value.billed is billed


def test_codes_map_the_same_on_an_http_error_status_when_signed():
    with pytest.raises(VendorUnavailable) as e:
        parse(zoloz_says(result("SYSTEM_ERROR", "U"), status=500))
    assert e.value.vendor_code == "SYSTEM_ERROR"


@pytest.mark.parametrize(("status", "error"), [("F", VendorRejected), ("U", VendorUnavailable), (None, VendorRejected)])
def test_undocumented_codes(status, error):
    with pytest.raises(error) as e:
        parse(zoloz_says(result("SOMETHING_NEW", status)))
    assert e.value.vendor_code == "SOMETHING_NEW"
    assert e.value.billed is None


def test_long_vendor_messages_are_capped():
    with pytest.raises(VendorRejected) as e:
        parse(zoloz_says(result("PARAM_ILLEGAL", "F", "x" * 5000)))
    assert len(e.value.vendor_message) == 200


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"score": 99}', b'{"result": {"resultCode": 7}}'])
def test_signed_but_unreadable_bodies_are_bad_responses(body):
    with pytest.raises(VendorBadResponse):
        parse(zoloz_says(body))


# --- never trust an unsigned or tampered answer ---------------------------------------------------


def test_an_unsigned_success_is_refused():
    with pytest.raises(VendorBadResponse, match="not signed"):
        parse(zoloz_says(SUCCESS, signed=False))


def test_a_signature_without_response_time_is_refused():
    response = zoloz_says(SUCCESS)
    del response.headers["Response-Time"]
    with pytest.raises(VendorBadResponse, match="not signed"):
        parse(response)


def test_a_tampered_verdict_is_refused():
    response = zoloz_says({**SUCCESS, "score": 12.0, "samePerson": False})
    forged = response.body.replace(b'"samePerson": false', b'"samePerson": true').replace(b"12.0", b"99.0")
    assert forged != response.body
    with pytest.raises(VendorBadResponse, match="does not verify"):
        parse(HttpResponse(response.status, response.headers, forged))


def test_a_changed_response_time_is_refused():
    response = zoloz_says(SUCCESS)
    response.headers["Response-Time"] = "2019-04-04T14:39:03+0800"
    with pytest.raises(VendorBadResponse, match="does not verify"):
        parse(response)


def test_a_response_signed_by_another_key_is_refused():
    with pytest.raises(VendorBadResponse, match="does not verify"):
        parse(zoloz_says(SUCCESS, key=_MERCHANT_KEY))


def test_a_signature_for_another_client_is_refused():
    response = zoloz_says(SUCCESS)
    vendor = ZolozVendor(credentials(client_id="2188000000000000"), Transport())
    with pytest.raises(VendorBadResponse):
        vendor.parse_compare(response, build(vendor), ctx())


@pytest.mark.parametrize("algorithm", ["RSA1", "rsa256", "HMAC256"])
def test_other_signature_algorithms_are_refused(algorithm):
    with pytest.raises(VendorBadResponse, match="malformed"):
        parse(zoloz_says(SUCCESS, algorithm=algorithm))


def test_an_error_code_is_not_trusted_unsigned_either():
    # A forged "rate limited" on HTTP 200 would make us fail over for nothing.
    with pytest.raises(VendorBadResponse):
        parse(zoloz_says(result("REQUEST_TRAFFIC_EXCEED_LIMIT"), signed=False))


def test_an_unsigned_5xx_is_an_outage_not_an_answer():
    response = HttpResponse(502, CaseInsensitiveDict({"Content-Type": "text/html"}), b"<html>Bad Gateway</html>")
    with pytest.raises(VendorUnavailable) as e:
        parse(response)
    assert e.value.vendor_code == "502"
    assert e.value.billed is None


def test_an_unsigned_429_is_a_rate_limit():
    with pytest.raises(VendorRateLimited) as e:
        parse(HttpResponse(429, CaseInsensitiveDict(), b""))
    assert e.value.billed is False


def test_a_stale_signed_success_is_refused_as_a_replay():
    with pytest.raises(VendorBadResponse, match=r"is 664 s from this request's time \(allowed 300 s\)"):
        parse(zoloz_says(SUCCESS, response_time="2019-04-04T14:50:00+0800"))  # 11 minutes later


def test_a_signed_success_from_before_the_request_is_refused():
    with pytest.raises(VendorBadResponse, match=r"is 86394 s from this request's time"):
        parse(zoloz_says(SUCCESS, response_time="2019-04-03T14:39:02+0800"))


# NOW is 14:38:56 in ZOLOZ's +0800; the default window is 300 s either way.
@pytest.mark.parametrize(
    "response_time",
    ["2019-04-04T14:43:56+0800", "2019-04-04T14:33:56+0800"],
    ids=["300s-later", "300s-earlier"],
)
def test_a_signed_success_just_inside_the_window_is_accepted(response_time):
    assert parse(zoloz_says(SUCCESS, response_time=response_time)).billed is True


@pytest.mark.parametrize(
    "response_time",
    ["2019-04-04T14:43:57+0800", "2019-04-04T14:33:55+0800"],
    ids=["301s-later", "301s-earlier"],
)
def test_a_signed_success_just_outside_the_window_is_refused(response_time):
    with pytest.raises(VendorBadResponse, match=r"is 301 s from this request's time \(allowed 300 s\)") as e:
        parse(zoloz_says(SUCCESS, response_time=response_time))
    assert e.value.code == "VENDOR_BAD_RESPONSE"


@pytest.mark.parametrize(
    ("response_time", "fresh"),
    [
        ("2019-04-04T14:39:56+0800", True),  # 60 s later
        ("2019-04-04T14:37:56+0800", True),  # 60 s earlier
        ("2019-04-04T14:39:57+0800", False),  # 61 s later
        ("2019-04-04T14:37:55+0800", False),  # 61 s earlier
    ],
)
def test_a_configured_window_is_applied(response_time, fresh):
    response = zoloz_says(SUCCESS, response_time=response_time)
    if fresh:
        assert parse(response, response_max_skew_s=60).billed is True
    else:
        with pytest.raises(VendorBadResponse, match=r"is 61 s from this request's time \(allowed 60 s\)"):
            parse(response, response_max_skew_s=60)


def test_a_wider_configured_window_accepts_what_the_default_refuses():
    eleven_minutes_later = zoloz_says(SUCCESS, response_time="2019-04-04T14:50:00+0800")
    assert parse(eleven_minutes_later, response_max_skew_s=900).billed is True


@pytest.mark.parametrize("response_time", ["2019-04-04 14:39:02", "1554359342", "2019-04-04T14:39:02.123+0800"])
def test_a_signed_success_with_an_unreadable_time_is_refused(response_time):
    with pytest.raises(VendorBadResponse, match="documented format"):
        parse(zoloz_says(SUCCESS, response_time=response_time))


@pytest.mark.parametrize("response_time", ["2019-04-04T06:39:02+0000", "2019-04-03T22:39:02-08:00"])
def test_any_offset_spelling_of_a_fresh_time_is_accepted(response_time):
    assert parse(zoloz_says(SUCCESS, response_time=response_time)).billed is True


def test_a_stale_error_still_maps_to_its_code():
    # Replaying an error gains an attacker nothing; the code is the useful part.
    with pytest.raises(VendorAuthFailed):
        parse(zoloz_says(result("SIGNATURE_INVALID"), response_time="2019-04-04T20:00:00+0800"))


# --- encrypted answers ----------------------------------------------------------------------------


def test_an_encrypted_answer_is_verified_then_decrypted_with_its_own_key():
    vendor = make_vendor(encrypt=True)
    response_key = bytes(range(100, 132))  # ZOLOZ's key, not ours
    response = zoloz_says(SUCCESS, encrypt_with=response_key)
    assert b"samePerson" not in response.body
    outcome = vendor.parse_compare(response, build(vendor), ctx())
    assert outcome.vendor_match is True
    assert outcome.vendor_score == 88.2


def test_an_encrypted_answer_must_be_signed_over_the_ciphertext():
    vendor = make_vendor(encrypt=True)
    response = zoloz_says(SUCCESS, encrypt_with=bytes(range(100, 132)), sign_over=json.dumps(SUCCESS).encode())
    with pytest.raises(VendorBadResponse, match="does not verify"):
        vendor.parse_compare(response, build(vendor), ctx())


def test_an_older_gateway_reusing_the_request_key_is_decrypted():
    vendor = make_vendor(encrypt=True)
    response = zoloz_says(SUCCESS, encrypt_with=AES_KEY, wrap=False)  # no Encrypt header
    assert parse_with(vendor, response).vendor_match is True


def test_a_plain_gateway_error_to_an_encrypted_request_is_read():
    vendor = make_vendor(encrypt=True)
    with pytest.raises(VendorAuthFailed):
        parse_with(vendor, zoloz_says(result("SIGNATURE_INVALID")))


@pytest.mark.parametrize(
    "encrypt_header",
    [
        "algorithm=RSA_AES, symmetricKey=AAAA",  # not one RSA block
        "algorithm=RSA_AES",  # no key
        "algorithm=AES, symmetricKey=AAAA",  # another algorithm
    ],
)
def test_an_unreadable_encrypt_header_is_a_bad_response(encrypt_header):
    vendor = make_vendor(encrypt=True)
    response = zoloz_says(SUCCESS, encrypt_with=bytes(range(100, 132)))
    response.headers["Encrypt"] = encrypt_header  # not covered by the signature
    with pytest.raises(VendorBadResponse, match="does not decrypt"):
        parse_with(vendor, response)


def test_a_key_wrapped_for_someone_else_does_not_decrypt():
    vendor = make_vendor(encrypt=True)
    response = zoloz_says(SUCCESS, encrypt_with=bytes(range(100, 132)))
    other = _ZOLOZ_KEY.public_key().encrypt(bytes(range(200, 232)), padding.PKCS1v15())
    response.headers["Encrypt"] = "algorithm=RSA_AES, symmetricKey=" + _url_b64(other)
    # OpenSSL's implicit rejection turns the failure into random bytes, so where it
    # surfaces (key size, padding, JSON) varies; that it is refused does not.
    with pytest.raises(VendorBadResponse):
        parse_with(vendor, response)


def parse_with(vendor: ZolozVendor, response: HttpResponse):
    return vendor.parse_compare(response, build(vendor), ctx())
