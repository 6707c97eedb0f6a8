from __future__ import annotations

import pytest
from pydantic import ValidationError

from facegate import errors, ids
from facegate.config import Settings
from facegate.models import CompareRequest, ImageInput
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
    decision, threshold = decide(OUT, level, override)
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
    assert decide(out, "high")[0] == "match"


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
    with pytest.raises(ValidationError):
        Settings.from_env({"FACEGATE_DEFAULT_VENDOR": "acme"})
