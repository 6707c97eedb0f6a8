from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from facegate import errors, ids
from facegate.config import Settings
from facegate.models import CompareRequest, ImageInput, Operation
from facegate.vendors.base import CompareOutcome, decide


def test_image_input_is_exactly_one_source():
    assert ImageInput(base64="abc").kind == "base64"
    assert ImageInput(s3={"key": "a.jpg"}).kind == "s3"
    for bad in ({}, {"base64": "a", "url": "https://x"}, {"url": "file:///etc/passwd"}, {"shape": 1}):
        with pytest.raises(ValidationError):
            ImageInput.model_validate(bad)


def test_image_url_syntax_leaves_http_to_the_stage_but_refuses_userinfo_and_control_characters():
    assert ImageInput(url="http://img.example/a.jpg").url == "http://img.example/a.jpg"  # the stage decides
    assert ImageInput(url="https://img.example/a%20b.jpg?x=1@2").kind == "url"  # '@' past the host is fine
    for bad in ("https://user:pass@img.example/a.jpg", "https://user@img.example/", "https://img.example/a\n.jpg",
                "https://img.example/\x00", "https://img.example/\x7f"):  # fmt: skip
        with pytest.raises(ValidationError):
            ImageInput(url=bad)


def test_compare_request_defaults():
    req = CompareRequest.model_validate({"image1": {"base64": "a"}, "image2": {"url": "https://x.example/a.jpg"}})
    assert (req.vendor, req.fallback, req.security_level, req.options) == (None, [], "normal", {})


def test_every_error_class_has_a_distinct_fitting_status():
    def walk(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from walk(sub)

    for cls in walk(errors.FacegateError):
        assert cls.code.isupper() and " " not in cls.code
        if issubclass(cls, errors.CallerError):
            assert 400 <= cls.status < 500, cls
        elif issubclass(cls, errors.VendorError):
            assert cls.status in (429, 502, 503, 504), cls


def test_error_body_is_the_contract_shape():
    e = errors.VendorQuotaExhausted("quota used up", vendor="shuxun", vendor_code=5, vendor_message="余额不足")
    assert e.body() == {
        "code": "VENDOR_QUOTA_EXHAUSTED",
        "message": "quota used up",
        "retryable": False,
        "vendor": "shuxun",
        "vendor_code": "5",
        "vendor_message": "余额不足",
    }


def test_read_timeout_may_have_billed_and_must_not_fail_over():
    sent = errors.VendorTimeout("slow", sent=True)
    unsent = errors.VendorTimeout("no connect", sent=False)
    assert (sent.failover, sent.billed) == (False, None)
    assert (unsent.failover, unsent.billed) == (True, False)


# A Tencent market secret id, shaped like a real one (AKID + 32 characters).
SECRET_ID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA"
GATEWAY_SIGNATURE = "hXc/kUwLRhTDqamyJ5YvZJ+PzkI="
ZOLOZ_SIGNATURE = "KEqbiG3Pp%2BFBEwvHE6ZCJHtLgzQUf4Db2Ed%2FbvpdK5VaHSORM6y2s4l%2FSy8rT0WQ%3D%3D"
SHA256_HEX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize(
    ("echo", "secrets", "kept"),
    [
        (  # the jumei (Tencent market) gateway echoing the request's Authorization
            f'HMAC signature does not match: hmac id="{SECRET_ID}", algorithm="hmac-sha1", '
            f'headers="x-date x-source", signature="{GATEWAY_SIGNATURE}"',
            [SECRET_ID, GATEWAY_SIGNATURE, "hXc/kUwLRhTD"],
            ["HMAC signature does not match", 'algorithm="hmac-sha1"'],
        ),
        (f"Authorization: hmac id={SECRET_ID}, signature={GATEWAY_SIGNATURE}", [SECRET_ID, "hXc"], ["Authorization"]),
        (f'{{"Authorization": "hmac id=\\"{SECRET_ID}\\""}}', [SECRET_ID], []),
        ("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig expired", ["eyJhbGci", ".sig"], ["expired"]),
        ("appKey=7f3a9c2e5b8d41f6a0c3e9b2 无效", ["7f3a9c2e5b8d41f6a0c3e9b2"], ["appKey=", "无效"]),  # shuxun
        ("appKey:7f3a9c2e5b8d41f6, appSecret:Qw3rTy9uIo", ["7f3a9c2e5b8d41f6", "Qw3rTy9uIo"], []),
        (f"sign={SHA256_HEX} 签名错误", [SHA256_HEX], ["签名错误"]),  # shuxun's sha256 sign
        (f"signature check failed for {SHA256_HEX}", [SHA256_HEX], ["signature check failed for"]),
        (  # kuaidi100's form fields
            "secret_key=kd100Key9&secret_code=c0de&secret_sign=A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6",
            ["kd100Key9", "A1B2C3D4E5F6"],
            ["secret_key="],
        ),
        (f"Signature: algorithm=RSA256, signature={ZOLOZ_SIGNATURE}", ["KEqbiG3Pp", "Sy8rT0WQ"], ["Signature"]),
        (f"bad response {ZOLOZ_SIGNATURE.replace('%2B', '+').replace('%2F', '/')}", ["KEqbiG3Pp"], ["bad response"]),
        (
            "signData=MjA3MmJkOGFmYjY3OGMwM2NlOWJlMTQyMDJlNDdiMTIwMzFhYTQyYTBhOGM4NTkzNzIzZDcwMjcwMDdlZjgwNA==",
            ["MjA3MmJk"],
            ["signData="],
        ),  # face2
        ('{"appKey":"k-1234","secret_key":"s3cr3t!","token":"t0k"}', ["k-1234", "s3cr3t!", "t0k"], ['"appKey":']),
        ("token=abc.def; access_token: xyz 已过期", ["abc.def", "xyz"], ["已过期"]),
        ("X-Api-Key: live_51HxQ password=hunter2", ["live_51HxQ", "hunter2"], []),
    ],
)
def test_credential_like_vendor_messages_are_scrubbed(echo, secrets, kept):
    e = errors.VendorAuthFailed("the vendor refused our credentials", vendor="jumei", vendor_message=echo)
    rendered = json.dumps(e.body(), ensure_ascii=False)
    for secret in secrets:
        assert secret not in e.vendor_message and secret not in rendered, (secret, e.vendor_message)
    for text in kept:
        assert text in e.vendor_message, (text, e.vendor_message)
    assert "[redacted]" in e.vendor_message


@pytest.mark.parametrize(
    "message",
    [
        "参数错误",
        "余额不足",
        "无效签名",
        "调用时间错误,unixtime超出接受范围",
        "身份证号1101**********1239与姓名张*不一致",
        "HMAC signature does not match",
        "Authorization header is missing",
        "signType SM2 is not enabled; sign_method=md5 signType=SHA256",
        "G000000005FID20200304000000000001570702",  # a ZOLOZ transaction id
        "see https://cloud.kuaidi100.com/api for the key rules",
    ],
)
def test_ordinary_vendor_messages_are_passed_on_unchanged(message):
    assert errors.VendorRejected("refused", vendor="x", vendor_message=message).vendor_message == message
    assert errors.scrub_vendor_message(message) == message


def test_vendor_messages_are_capped_after_scrubbing():
    assert len(errors.VendorRejected("refused", vendor_message="错" * 5000).vendor_message) == 200
    # The secret straddles the cap: cutting first would leave a prefix too short to recognise.
    echo = "x" * 190 + " " + SHA256_HEX
    scrubbed = errors.scrub_vendor_message(echo)
    assert len(scrubbed) == errors.VENDOR_MESSAGE_MAX
    assert SHA256_HEX[:9] not in scrubbed
    assert errors.scrub_vendor_message(None) is None
    assert errors.scrub_vendor_message("") is None


def test_request_ids_are_unique_and_sort_by_time():
    a = ids.new_request_id(1_700_000_000_000)
    b = ids.new_request_id(1_700_000_000_001)
    assert ids.is_request_id(a) and len(a) == 26
    assert a < b
    assert ids.timestamp_ms(a) == 1_700_000_000_000
    assert len({ids.new_request_id() for _ in range(2000)}) == 2000
    assert not ids.is_request_id("../../etc/passwd")


OUT = CompareOutcome(similarity=0.7, vendor_score=70, thresholds={"low": 0.6, "normal": 0.69, "high": 0.8})


@pytest.mark.parametrize(
    ("level", "override", "expected"),
    [
        ("low", None, "match"),
        ("normal", None, "match"),
        ("high", None, "no_match"),
        ("normal", 0.75, "no_match"),
    ],
)
def test_decide_uses_the_level_threshold_or_the_stage_override(level, override, expected):
    decision, threshold = decide(OUT, level, None if override is None else {level: override})
    assert decision == expected
    assert threshold == (override if override is not None else OUT.thresholds[level])


def test_decide_prefers_the_vendors_verdict_at_normal():
    out = CompareOutcome(
        similarity=0.9,
        vendor_score=0.1,
        thresholds={"low": 0.5, "normal": 0.6, "high": 0.7},
        vendor_match=False,
    )
    assert decide(out, "normal")[0] == "no_match"
    # high needs the verdict too (it used to say match here: laxer than normal).
    assert decide(out, "high")[0] == "no_match"
    assert decide(out, "low")[0] == "match"  # verdict or the low threshold


def test_decide_reports_the_uncertain_band():
    band = dict(thresholds={"low": 0.45, "normal": 0.45, "high": 0.5}, uncertain_band=(0.40, 0.45), vendor_score=None)
    assert decide(CompareOutcome(similarity=0.42, **band), "normal")[0] == "uncertain"
    assert decide(CompareOutcome(similarity=0.39, **band), "normal")[0] == "no_match"
    assert decide(CompareOutcome(similarity=0.46, **band), "normal")[0] == "match"


def test_settings_from_env():
    cfg = Settings.from_env(
        {
            "FACEGATE_STAGE": "prod",
            "FACEGATE_FALLBACK": "shuxun, zoloz",
            "FACEGATE_THRESHOLDS": '{"local": {"high": 0.7}}',
        }
    )
    assert cfg.secret_name("zoloz") == "facegate/prod/vendors/zoloz"
    assert cfg.fallback == ["shuxun", "zoloz"]
    assert cfg.thresholds == {"local": {"high": 0.7}}
    assert cfg.zoloz_response_max_skew_s == 300  # not in ZOLOZ's doc: our default
    assert Settings.from_env({"FACEGATE_ZOLOZ_RESPONSE_MAX_SKEW_S": "90"}).zoloz_response_max_skew_s == 90
    with pytest.raises(ValidationError):
        Settings.from_env({"FACEGATE_ZOLOZ_RESPONSE_MAX_SKEW_S": "0"})
    with pytest.raises(ValidationError):
        Settings.from_env({"FACEGATE_DEFAULT_VENDOR": "acme"})


def test_the_zoloz_response_window_reaches_every_call_context():
    from facegate.health import MemoryHealthBook
    from facegate.router import Planned
    from facegate.service import Call, Caller, Service
    from facegate.vendors.zoloz import ZolozVendor

    cfg = Settings(zoloz_response_max_skew_s=42)
    service = Service(cfg, store=object(), health=MemoryHealthBook())  # type: ignore[arg-type]
    context = service._ctx(Call(Operation.COMPARE, Caller("req-1")), Planned(ZolozVendor, None))
    assert context.response_max_skew_s == 42


def test_an_image_s_base64_never_reaches_a_repr():
    # Powertools formats the route's arguments into a debug message on every request:
    # the image text must not be in it (privacy), nor cost a megabyte-long repr.
    from facegate.models import CompareRequest

    text = "SECRETIMAGE" + "A" * 4000 + "=="
    req = CompareRequest.model_validate(
        {"vendor": "shuxun", "image1": {"base64": text}, "image2": {"url": "https://example.com/b.jpg"}}
    )
    assert "SECRETIMAGE" not in repr(req) and "SECRETIMAGE" not in str(req)
    assert len(repr(req)) < 400
    assert req.image1.base64 == text
