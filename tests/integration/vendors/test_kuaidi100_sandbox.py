"""The Kuaidi100 adapter and the real transport against the Kuaidi100 sandbox, over
loopback HTTP. The sandbox checks requests from the vendor doc on its own, so the
two agreeing means the adapter speaks the documented protocol."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest

from facegate.errors import (
    VendorAuthFailed,
    VendorBadResponse,
    VendorConnectionLost,
    VendorQuotaExhausted,
    VendorRateLimited,
    VendorRejected,
    VendorTimeout,
    VendorUnavailable,
)
from facegate.images import fit, load_bytes
from facegate.transport import Timeouts, Transport
from facegate.vendors.base import CallContext, HttpRequest, ImageRef, decide
from facegate.vendors.kuaidi100 import Kuaidi100Credentials, Kuaidi100Options, Kuaidi100Vendor
from facegate_local.sandboxes import sandbox_class
from facegate_local.sandboxes.kuaidi100 import Kuaidi100Sandbox


@pytest.fixture(scope="module")
def sandbox():
    with Kuaidi100Sandbox(timeout_s=3.0) as sb:
        yield sb


@pytest.fixture(autouse=True)
def _clean(sandbox):
    sandbox.reset()
    sandbox.score = "93.50"
    yield
    sandbox.reset()


@pytest.fixture(scope="module")
def transport():
    t = Transport()
    yield t
    t.close()


def make_vendor(sandbox, transport, **override) -> Kuaidi100Vendor:
    creds = {**Kuaidi100Sandbox.default_credentials(), **override}
    return Kuaidi100Vendor(Kuaidi100Credentials(**creds, endpoint=sandbox.url), transport)


@pytest.fixture
def vendor(sandbox, transport):
    return make_vendor(sandbox, transport)


@pytest.fixture(scope="module")
def photo(face_bytes):
    """A test photo as the service hands it to the adapter: decoded and fitted."""

    def get(name: str) -> ImageRef:
        return ImageRef(image=fit(load_bytes(face_bytes(name)), Kuaidi100Vendor.limits))

    return get


def ctx(options=None) -> CallContext:
    return CallContext(now=datetime.now(UTC), nonce="n", request_id="r", options=options)


def last_form(sandbox) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(sandbox.log[-1].body.decode()).items()}


# --- the happy path ---------------------------------------------------------------------


def test_registered_sandbox():
    assert sandbox_class("kuaidi100") is Kuaidi100Sandbox
    assert set(Kuaidi100Sandbox.default_credentials()) == {"secret_key", "secret_secret", "secret_code"}


def test_sandbox_does_not_import_facegate():
    code = (
        "import sys, facegate_local.sandboxes.kuaidi100;"
        "bad = [m for m in sys.modules if m == 'facegate' or m.startswith('facegate.')];"
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0  # noqa: S603


def test_compare_two_photos(sandbox, vendor, photo):
    outcome = vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), ctx())
    assert sandbox.rejected == []
    assert outcome.vendor_score == 93.5
    assert outcome.similarity == 0.935
    assert outcome.billed is True
    assert decide(outcome, "normal") == ("match", 0.80)
    tokens = outcome.extra["face_tokens"]
    assert tokens["image1"]
    assert tokens["image2"]
    assert tokens["image1"] != tokens["image2"]
    assert sandbox.billed == 1
    form = last_form(sandbox)
    assert (form["sourceImageType"], form["compareImageType"]) == ("BASE64", "BASE64")
    assert sandbox.log[-1].path == "/api"


def test_identical_photos_score_100(sandbox, vendor, photo):
    outcome = vendor.compare(photo("obama.jpg"), photo("obama.jpg"), ctx())
    assert outcome.similarity == 1.0
    assert outcome.extra["face_tokens"]["image1"] == outcome.extra["face_tokens"]["image2"]


def test_configured_score(sandbox, vendor, photo):
    sandbox.score = "61.25"
    outcome = vendor.compare(photo("obama.jpg"), photo("biden.jpg"), ctx())
    assert outcome.similarity == 0.6125
    assert decide(outcome, "low")[0] == "no_match"


def test_options_reach_the_vendor(sandbox, vendor, photo):
    options = Kuaidi100Options(compare_face_type="IDCARD", source_live_control="HIGH")
    vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), ctx(options))
    form = last_form(sandbox)
    assert (form["sourceLiveControl"], form["compareFaceType"]) == ("HIGH", "IDCARD")
    assert (form["sourceFaceType"], form["compareLiveControl"]) == ("LIVE", "NONE")


def test_face_token_round_trip(sandbox, vendor, photo):
    first = vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), ctx())
    tokens = first.extra["face_tokens"]

    again = vendor.compare(ImageRef(face_token=tokens["image1"]), ImageRef(face_token=tokens["image2"]), ctx())
    assert sandbox.rejected == []
    form = last_form(sandbox)
    assert (form["sourceImageType"], form["compareImageType"]) == ("FACE_TOKEN", "FACE_TOKEN")
    assert again.similarity == 0.935
    assert again.extra["face_tokens"] == tokens  # the vendor hands the same tokens back

    # A token stands for its photo: the token of obama.jpg against obama.jpg itself.
    same = vendor.compare(ImageRef(face_token=tokens["image1"]), photo("obama.jpg"), ctx())
    assert same.similarity == 1.0
    assert sandbox.billed == 3


def test_unknown_face_token_is_refused(sandbox, vendor, photo):
    with pytest.raises(VendorRejected) as e:
        vendor.compare(ImageRef(face_token="not-issued"), photo("obama.jpg"), ctx())
    assert e.value.vendor_code == "400"
    assert e.value.billed is False
    assert sandbox.rejected == ["sourceImage: FACE_TOKEN was not issued by this server"]
    assert sandbox.billed == 0


def test_url_images_go_through(sandbox, vendor):
    outcome = vendor.compare(
        ImageRef(url="https://img.example.com/a.jpg"), ImageRef(url="https://img.example.com/b.jpg"), ctx()
    )
    assert outcome.similarity == 0.935
    form = last_form(sandbox)
    assert (form["sourceImageType"], form["sourceImage"]) == ("URL", "https://img.example.com/a.jpg")


# --- auth ---------------------------------------------------------------------------------


def test_wrong_secret(sandbox, transport, photo):
    vendor = make_vendor(sandbox, transport, secret_secret="not-the-secret")
    with pytest.raises(VendorAuthFailed) as e:
        vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), ctx())
    assert e.value.vendor_code == "503"
    assert e.value.billed is False
    assert sandbox.rejected == ["secret_sign is not upper(md5(secret_key+secret_secret))"]
    assert sandbox.billed == 0


def test_unknown_key(sandbox, transport, photo):
    vendor = make_vendor(sandbox, transport, secret_key="who-is-this")
    with pytest.raises(VendorAuthFailed) as e:
        vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), ctx())
    assert e.value.vendor_code == "600"
    assert sandbox.rejected == ["unknown secret_key"]


def test_wrong_secret_code(sandbox, transport, photo):
    vendor = make_vendor(sandbox, transport, secret_code="399d4fec7299432b96928ad2657e3996")
    with pytest.raises(VendorAuthFailed) as e:
        vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), ctx())
    assert e.value.vendor_code == "600"
    assert sandbox.rejected == ["secret_code is not the face-compare API bought with this key"]


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "billed"),
    [
        ("http_500", VendorUnavailable, None),
        ("malformed", VendorBadResponse, None),
        ("rate_limit", VendorRateLimited, False),
        ("quota", VendorQuotaExhausted, False),
        ("auth", VendorAuthFailed, False),
        ("reset", VendorConnectionLost, None),  # dropped after the request went out
    ],
)
def test_faults(sandbox, vendor, photo, fault, error, billed):
    sandbox.fail_next(fault)
    with pytest.raises(error) as e:
        vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), ctx())
    assert type(e.value) is error
    assert e.value.vendor == "kuaidi100"
    assert e.value.billed is billed
    assert sandbox.billed == 0
    # The fault was one-shot: the next call is answered normally.
    assert vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), ctx()).billed is True
    assert sandbox.billed == 1


def test_fault_codes_are_the_tabled_ones(sandbox, vendor, photo):
    for fault, code in (("quota", "601"), ("auth", "503")):
        sandbox.fail_next(fault)
        with pytest.raises((VendorQuotaExhausted, VendorAuthFailed)) as e:
            vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), ctx())
        assert e.value.vendor_code == code


def test_timeout(sandbox, photo):
    sandbox.timeout_s = 2.0
    short = Transport(Timeouts(connect=1.0, read=0.3))
    try:
        vendor = make_vendor(sandbox, short)
        sandbox.fail_next("timeout")
        with pytest.raises(VendorTimeout) as e:
            vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), ctx())
        assert e.value.sent is True  # the request was out: it may have been billed
        assert e.value.billed is None
        assert e.value.failover is False
    finally:
        short.close()
        sandbox.timeout_s = 3.0


def test_billed_counter_matches_outcomes(sandbox, vendor, photo):
    plan = [None, "quota", None, "auth", "http_500", None, "rate_limit"]
    billed: list[bool | None] = []
    for fault in plan:
        if fault:
            sandbox.fail_next(fault)
        try:
            billed.append(vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), ctx()).billed)
        except (VendorQuotaExhausted, VendorAuthFailed, VendorUnavailable, VendorRateLimited) as e:
            billed.append(e.billed)
    assert billed == [True, False, True, False, None, True, False]
    assert sandbox.billed == billed.count(True)
    assert sandbox.requests == len(plan)


# --- the sandbox's own checks, with hand-made requests ------------------------------------


def raw(sandbox, transport, body: bytes, content_type: str = "application/x-www-form-urlencoded", path="/api"):
    import json

    request = HttpRequest("POST", sandbox.url + path, {"Content-Type": content_type}, body)
    response = transport.send("kuaidi100", request)
    return response.status, (json.loads(response.body) if response.status == 200 else response.body)


def signed_form(**fields) -> bytes:
    from urllib.parse import urlencode

    from facegate.signing.kuaidi100 import secret_sign

    creds = Kuaidi100Sandbox.default_credentials()
    base = {
        "secret_key": creds["secret_key"],
        "secret_code": creds["secret_code"],
        "secret_sign": secret_sign(creds["secret_key"], creds["secret_secret"]),
        "sourceImage": "https://img.example.com/a.jpg",
        "sourceImageType": "URL",
        "sourceFaceType": "LIVE",
        "sourceLiveControl": "NONE",
        "compareImage": "https://img.example.com/b.jpg",
        "compareImageType": "URL",
        "compareFaceType": "LIVE",
        "compareLiveControl": "NONE",
    }
    base.update(fields)
    return urlencode({k: v for k, v in base.items() if v is not None}).encode()


def test_sandbox_accepts_a_well_formed_request(sandbox, transport):
    status, body = raw(sandbox, transport, signed_form())
    assert status == 200
    assert body["code"] == 200
    assert body["data"]["score"] == "93.50"


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"compareLiveControl": None}, "missing or empty fields: compareLiveControl"),
        ({"sourceFaceType": ""}, "missing or empty fields: sourceFaceType"),
        ({"sourceFaceType": "live"}, "sourceFaceType is not one of ['CERT', 'IDCARD', 'LIVE', 'WATERMARK']"),
        ({"compareLiveControl": "MAX"}, "compareLiveControl is not one of ['HIGH', 'LOW', 'NONE', 'NORMAL']"),
        (
            {"sourceImageType": "FILE"},
            "sourceImage: image type 'FILE' is not one of ['BASE64', 'FACE_TOKEN', 'URL']",
        ),
        ({"compareImage": "ftp://x/y.jpg"}, "compareImage: URL is not an http(s) URL"),
        (
            {"sourceImageType": "BASE64", "sourceImage": "not base64!"},
            "sourceImage: BASE64 image is not valid base64",
        ),
        (
            {"sourceImageType": "BASE64", "sourceImage": "aGVsbG8gd29ybGQh"},
            "sourceImage: BASE64 data is not a decodable image",
        ),
        (
            {"sourceImageType": "BASE64", "sourceImage": "A" * (2 * 1024 * 1024 + 4)},
            "sourceImage: BASE64 image is larger than 2M encoded",
        ),
        (  # "2M" read as 2,000,000: one base64 quantum over is refused
            {"sourceImageType": "BASE64", "sourceImage": "A" * (2_000_000 + 4)},
            "sourceImage: BASE64 image is larger than 2M encoded",
        ),
        (
            {"secret_sign": "900150983cd24fb0d6963f7d28e17f72"},
            "secret_sign is not upper(md5(secret_key+secret_secret))",
        ),
    ],
)
def test_sandbox_refuses(sandbox, transport, fields, why):
    status, body = raw(sandbox, transport, signed_form(**fields))
    assert status == 200
    assert body["code"] in (400, 503)
    assert sandbox.rejected == [why]
    assert sandbox.billed == 0


def test_sandbox_lowercase_sign_is_refused_even_if_the_hash_matches(sandbox, transport):
    from facegate.signing.kuaidi100 import secret_sign

    creds = Kuaidi100Sandbox.default_credentials()
    _, body = raw(
        sandbox,
        transport,
        signed_form(secret_sign=secret_sign(creds["secret_key"], creds["secret_secret"]).lower()),
    )
    assert body["code"] == 503


def test_sandbox_wants_a_form(sandbox, transport):
    status, body = raw(sandbox, transport, b'{"secret_key": "x"}', content_type="application/json")
    assert (status, body["code"]) == (200, 400)
    assert sandbox.rejected == ["content type application/json instead of application/x-www-form-urlencoded"]


def test_sandbox_only_serves_api(sandbox, transport):
    status, _ = raw(sandbox, transport, signed_form(), path="/other")
    assert status == 404
    assert sandbox.rejected == ["unknown path /other"]
