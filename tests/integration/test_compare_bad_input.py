"""Bad input to POST /v1/compare: a clear 4xx in the contract shape, a results-log
record, and never an engine or vendor call."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from facegate.router import Router


def _png(size=(64, 64), fmt="PNG") -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 80, 40)).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), (10, 200, 30)).save(buf, format="JPEG")
    return buf.getvalue()


GOOD = {"base64": _png()}
TRUNCATED = base64.b64encode(_jpeg_bytes()[:300]).decode()
GIF = _png(fmt="GIF")
TEXT = base64.b64encode(b"hello, this is plainly not an image at all").decode()
HUGE = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * (9 * 1024 * 1024)).decode()

CASES = [
    # (id, body or raw string, status, code)
    ("not-json", "{this is not json", 400, "MALFORMED_JSON"),
    ("empty-object", {}, 400, "INVALID_REQUEST"),
    ("missing-image2", {"image1": GOOD}, 400, "INVALID_REQUEST"),
    ("image-is-string", {"image1": "abc", "image2": GOOD}, 400, "INVALID_REQUEST"),
    ("image-is-list", {"image1": [GOOD], "image2": GOOD}, 400, "INVALID_REQUEST"),
    (
        "image-two-sources",
        {"image1": {"base64": _png(), "url": "https://x.example/a.jpg"}, "image2": GOOD},
        400,
        "INVALID_REQUEST",
    ),
    ("image-no-source", {"image1": {}, "image2": GOOD}, 400, "INVALID_REQUEST"),
    ("unknown-field", {"image1": GOOD, "image2": GOOD, "colour": "blue"}, 400, "INVALID_REQUEST"),
    ("unknown-vendor", {"image1": GOOD, "image2": GOOD, "vendor": "acme"}, 400, "INVALID_REQUEST"),
    (
        "bad-security-level",
        {"image1": GOOD, "image2": GOOD, "security_level": "paranoid"},
        400,
        "INVALID_REQUEST",
    ),
    (
        "duplicate-fallback",
        {"image1": GOOD, "image2": GOOD, "fallback": ["shuxun", "shuxun"]},
        400,
        "INVALID_REQUEST",
    ),
    ("ftp-url", {"image1": {"url": "ftp://x.example/a.jpg"}, "image2": GOOD}, 400, "INVALID_REQUEST"),
    ("plain-http-url", {"image1": {"url": "http://x.example/a.jpg"}, "image2": GOOD}, 400, "INVALID_REQUEST"),
    ("url-userinfo", {"image1": {"url": "https://u:p@x.example/a.jpg"}, "image2": GOOD}, 400, "INVALID_REQUEST"),
    ("url-control-char", {"image1": {"url": "https://x.example/a\r\n.jpg"}, "image2": GOOD}, 400, "INVALID_REQUEST"),
    (
        "vendor-without-compare",
        {"image1": GOOD, "image2": GOOD, "vendor": "jumei"},
        400,
        "UNSUPPORTED_OPERATION",
    ),
    (
        "options-for-other-vendor",
        {"image1": GOOD, "image2": GOOD, "options": {"zoloz": {}}},
        400,
        "INVALID_OPTION",
    ),
    (
        "options-local-takes-none",
        {"image1": GOOD, "image2": GOOD, "options": {"local": {"x": 1}}},
        400,
        "INVALID_OPTION",
    ),
    ("face-token-to-local", {"image1": {"face_token": "abc"}, "image2": GOOD}, 400, "INVALID_REQUEST"),
    ("not-base64", {"image1": {"base64": "!!!not base64!!!"}, "image2": GOOD}, 422, "INVALID_IMAGE"),
    ("empty-base64", {"image1": {"base64": ""}, "image2": GOOD}, 422, "INVALID_IMAGE"),
    (
        "data-uri-of-nothing",
        {"image1": {"base64": "data:image/jpeg;base64,"}, "image2": GOOD},
        422,
        "INVALID_IMAGE",
    ),
    ("text-not-image", {"image1": {"base64": TEXT}, "image2": GOOD}, 422, "INVALID_IMAGE"),
    ("truncated-jpeg", {"image1": {"base64": TRUNCATED}, "image2": GOOD}, 422, "INVALID_IMAGE"),
    ("too-small", {"image1": {"base64": _png((8, 8))}, "image2": GOOD}, 422, "INVALID_IMAGE"),
    ("gif-unsupported", {"image1": {"base64": GIF}, "image2": GOOD}, 415, "UNSUPPORTED_IMAGE_FORMAT"),
    ("too-large", {"image1": {"base64": HUGE}, "image2": GOOD}, 413, "IMAGE_TOO_LARGE"),
    (
        "not-configured-vendor",
        {"image1": GOOD, "image2": GOOD, "vendor": "shuxun"},
        503,
        "VENDOR_NOT_CONFIGURED",
    ),
]


@pytest.fixture
def no_vendor_calls(monkeypatch):
    calls = []

    def spy(self, planned, *args, **kw):
        calls.append(planned.id)
        return original(self, planned, *args, **kw)

    original = Router._try  # every vendor call, whatever the strategy, goes through here
    monkeypatch.setattr(Router, "_try", spy)
    return calls


@pytest.mark.parametrize(("body", "status", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_any_vendor(aws, call_api, no_vendor_calls, body, status, code):
    raw = body if isinstance(body, str) else None
    got_status, got = call_api("compare", "POST", "/v1/compare", None if raw else body, raw_body=raw)

    assert (got_status, got["error"]["code"]) == (status, code), got
    assert set(got) == {"request_id", "error"}
    assert set(got["error"]) == {"code", "message", "retryable", "vendor", "vendor_code", "vendor_message"}
    assert got["error"]["message"]
    if code == "VENDOR_NOT_CONFIGURED":
        # Routed, but refused before anything went out: no attempt reached the vendor.
        assert got["error"]["vendor"] == "shuxun"
        assert no_vendor_calls == ["shuxun"]
    else:
        assert no_vendor_calls == []
    # Nothing is lost: the refusal is in the results log, without the request's data.
    (record,) = aws.records()
    assert record["request_id"] == got["request_id"]
    assert record["error_code"] == code
    assert record["status"] == "error"
    assert "base64" not in str(record)


def test_error_messages_never_echo_image_data(aws, call_api):
    secret_looking = base64.b64encode(b"SENSITIVE-PAYLOAD" * 4).decode()
    _, got = call_api("compare", "POST", "/v1/compare", {"image1": {"base64": secret_looking}})
    assert secret_looking not in str(got)
    _, got = call_api("compare", "POST", "/v1/compare", {"image1": {"base64": secret_looking}, "image2": GOOD})
    assert secret_looking not in str(got)


def test_wrong_content_type_is_415(aws, call_api, no_vendor_calls):
    status, got = call_api(
        "compare", "POST", "/v1/compare", raw_body="image1=x", headers={"Content-Type": "text/plain"}
    )
    assert (status, got["error"]["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert no_vendor_calls == []


def test_damage_only_a_decode_sees_is_a_422_from_the_engine_not_a_500(aws, call_api):
    """A JPEG whose structure is whole but which no decoder can read (its quantization
    tables removed) passes the structural check (facegate.images); the built-in engine,
    which decodes it, answers INVALID_IMAGE."""
    data = _jpeg_bytes()
    out, pos = bytearray(data[:2]), 2
    while data[pos + 1] != 0xDA:  # every segment before the scan, but DQT
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4])
        if data[pos + 1] != 0xDB:
            out += data[pos:end]
        pos = end
    damaged = base64.b64encode(bytes(out + data[pos:])).decode()
    status, got = call_api("compare", "POST", "/v1/compare", {"image1": {"base64": damaged}, "image2": GOOD})
    assert (status, got["error"]["code"]) == (422, "INVALID_IMAGE"), got
