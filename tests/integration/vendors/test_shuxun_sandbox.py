"""ShuxunVendor over real loopback HTTP against ShuxunSandbox, which checks requests
from the vendor doc on its own."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from facegate import errors
from facegate.images import fit, load_bytes
from facegate.transport import Timeouts, Transport
from facegate.vendors.base import CallContext, ImageRef
from facegate.vendors.shuxun import ShuxunCredentials, ShuxunVendor
from facegate_local.sandboxes import sandbox_class
from facegate_local.sandboxes.shuxun import ShuxunSandbox

CT = "application/x-www-form-urlencoded; charset=UTF-8"
DOC_THRESHOLDS = {"low": 0.62327, "normal": 0.69101, "high": 0.73975}


@pytest.fixture(scope="module")
def running_sandbox():
    box = ShuxunSandbox().start()
    yield box
    box.stop()


@pytest.fixture
def sandbox(running_sandbox):
    running_sandbox.reset()  # counters, log, rejections and pending faults
    return running_sandbox


@pytest.fixture
def transport():
    t = Transport()
    yield t
    t.close()


def make_vendor(sandbox, transport, **overrides) -> ShuxunVendor:
    creds = {**ShuxunSandbox.default_credentials(), "endpoint": sandbox.url, **overrides}
    return ShuxunVendor(ShuxunCredentials.model_validate(creds), transport)


@pytest.fixture
def vendor(sandbox, transport) -> ShuxunVendor:
    return make_vendor(sandbox, transport)


def context(now: datetime | None = None) -> CallContext:
    return CallContext(now=now or datetime.now(UTC), nonce=uuid.uuid4().hex, request_id=str(uuid.uuid4()))


@pytest.fixture
def photo(face_bytes):
    def ref(name: str) -> ImageRef:
        return ImageRef(image=fit(load_bytes(face_bytes(name)), ShuxunVendor.limits))

    return ref


def test_registered_under_its_id():
    assert sandbox_class("shuxun") is ShuxunSandbox
    assert ShuxunSandbox.vendor == "shuxun"


def test_compares_two_photos(vendor, sandbox, photo):
    outcome = vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), context())
    assert sandbox.rejected == []
    assert outcome.similarity == pytest.approx(0.931)
    assert outcome.vendor_score == pytest.approx(93.1)
    assert outcome.thresholds == pytest.approx(DOC_THRESHOLDS)
    assert outcome.billed is True
    assert outcome.vendor_request_id is not None
    assert len(outcome.vendor_request_id) == 32
    assert sandbox.billed == 1


def test_the_wire_request_is_what_the_doc_describes(vendor, sandbox, photo):
    image1, image2 = photo("obama.jpg"), photo("obama2.jpg")
    vendor.compare(image1, image2, context())
    (seen,) = sandbox.log
    assert (seen.method, seen.path) == ("POST", "/v1/faceCompare/check")
    assert seen.headers["Content-Type"] == CT
    assert seen.headers["appKey"] == "sandbox-shuxun-app-key"
    assert seen.form() == {"image1": image1.image.base64, "image2": image2.image.base64}
    assert base64.b64decode(seen.form()["image1"]) == image1.image.data


def test_identical_photos_score_100(vendor, sandbox, photo):
    outcome = vendor.compare(photo("obama.jpg"), photo("obama.jpg"), context())
    assert outcome.similarity == 1.0
    assert sandbox.billed == 1


def test_sandbox_score_is_configurable(transport, photo):
    low = ShuxunSandbox(score=41.5).start()
    try:
        outcome = make_vendor(low, transport).compare(photo("obama.jpg"), photo("biden.jpg"), context())
    finally:
        low.stop()
    assert outcome.similarity == pytest.approx(0.415)


def test_urls_are_passed_through_and_billed(vendor, sandbox, photo):
    outcome = vendor.compare(ImageRef(url="https://img.example.com/a.jpg?sig=1&x=2"), photo("obama2.jpg"), context())
    assert outcome.billed is True
    assert sandbox.log[0].form()["imgUrl1"] == "https://img.example.com/a.jpg?sig=1&x=2"
    assert sandbox.billed == 1


def test_a_large_photo_fitted_to_the_limits_is_accepted(vendor, sandbox, face_bytes):
    raw = load_bytes(face_bytes("32bit.png"))
    assert len(raw.base64) > 1_000_000  # over the doc's 1 MB as sent
    fitted = fit(raw, ShuxunVendor.limits)
    outcome = vendor.compare(ImageRef(image=fitted), ImageRef(image=fitted), context())
    assert outcome.similarity == 1.0
    assert sandbox.rejected == []


def test_an_unfitted_oversized_photo_is_refused_by_the_sandbox(vendor, sandbox, face_bytes, photo):
    raw = ImageRef(image=load_bytes(face_bytes("32bit.png")))
    with pytest.raises(errors.InvalidImage) as e:
        vendor.compare(raw, photo("obama.jpg"), context())
    assert e.value.vendor_code == "result:3"
    assert e.value.billed is False
    assert len(sandbox.rejected) == 1
    assert sandbox.rejected[0].startswith("image1: base64 is ")
    assert sandbox.billed == 0


# --- auth ------------------------------------------------------------------------------------


def test_wrong_app_secret_is_an_auth_failure(sandbox, transport, photo):
    vendor = make_vendor(sandbox, transport, app_secret="not-the-secret")
    with pytest.raises(errors.VendorAuthFailed) as e:
        vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), context())
    assert (e.value.vendor_code, e.value.vendor_message, e.value.billed) == ("4", "签名错误", False)
    assert "not-the-secret" not in e.value.message
    assert sandbox.rejected == ["sign does not match sha256(appKey+timestamp+appSecret)"]
    assert sandbox.billed == 0


def test_unknown_app_key_is_an_auth_failure(sandbox, transport, photo):
    vendor = make_vendor(sandbox, transport, app_key="someone-else")
    with pytest.raises(errors.VendorAuthFailed):
        vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), context())
    assert sandbox.rejected == ["unknown appKey"]


@pytest.mark.parametrize("skew", [timedelta(minutes=-10), timedelta(minutes=10)])
def test_a_timestamp_outside_the_window_is_an_auth_failure(vendor, sandbox, photo, skew):
    with pytest.raises(errors.VendorAuthFailed) as e:
        vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), context(datetime.now(UTC) + skew))
    assert e.value.vendor_code == "4"
    assert len(sandbox.rejected) == 1
    assert "outside the ±300 s window" in sandbox.rejected[0]


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "cls", "vendor_code"),
    [
        ("http_500", errors.VendorUnavailable, "500"),
        ("malformed", errors.VendorBadResponse, None),
        ("rate_limit", errors.VendorRateLimited, "6"),
        ("quota", errors.VendorQuotaExhausted, "5"),
        ("auth", errors.VendorAuthFailed, "10"),
        ("reset", errors.VendorConnectionLost, None),
    ],
)
def test_faults_become_the_right_errors(vendor, sandbox, photo, fault, cls, vendor_code):
    sandbox.fail_next(fault)
    with pytest.raises(errors.VendorError) as e:
        vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), context())
    assert type(e.value) is cls
    assert e.value.vendor == "shuxun"
    assert e.value.vendor_code == vendor_code
    assert sandbox.billed == 0
    # The fault was one-off: the next call goes through and is the only one billed.
    outcome = vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), context())
    assert outcome.billed is True
    assert sandbox.billed == 1


def test_vendor_business_faults_are_answered_unbilled(vendor, sandbox, photo):
    for fault, cls in (
        ("rate_limit", errors.VendorRateLimited),
        ("quota", errors.VendorQuotaExhausted),
        ("auth", errors.VendorAuthFailed),
    ):
        sandbox.fail_next(fault)
        with pytest.raises(cls) as e:
            vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), context())
        assert e.value.billed is False


def test_a_read_timeout_is_a_timeout_that_may_have_been_billed(photo):
    # Its own sandbox: the stalled handler thread outlives the test and should not
    # share counters with the others. The stall (1 s) outlasts the read timeout (0.3 s).
    box = ShuxunSandbox(timeout_s=1.0).start()
    transport = Transport(Timeouts(connect=2.0, read=0.3))
    try:
        vendor = make_vendor(box, transport)
        box.fail_next("timeout")
        with pytest.raises(errors.VendorTimeout) as e:
            vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), context())
    finally:
        transport.close()
        box.stop()
    assert e.value.sent is True
    assert e.value.billed is None
    assert e.value.failover is False
    assert box.billed == 0


# --- the sandbox holds to the doc on its own (raw requests, no facegate) ---------------------


def raw_post(sandbox, body, *, timestamp=None, sign=None, content_type=CT, app_key=None):
    key, secret = ShuxunSandbox.default_credentials().values()
    app_key = app_key or key
    timestamp = timestamp or str(time.time_ns() // 1_000_000)
    # Written here from the doc, independently of facegate.signing.
    sign = sign or hashlib.sha256(f"{app_key}{timestamp}{secret}".encode()).hexdigest()
    headers = {"Content-Type": content_type, "appKey": app_key, "timestamp": timestamp, "sign": sign}
    r = requests.post(sandbox.url + "/v1/faceCompare/check", data=body, headers=headers, timeout=10)
    assert r.status_code == 200
    return r.json()


@pytest.fixture
def jpeg_b64(face_bytes):
    return base64.b64encode(face_bytes("obama2.jpg")).decode()


def test_raw_the_docs_sample_shape_with_empty_url_fields_is_served(sandbox, jpeg_b64):
    body = raw_post(sandbox, {"image1": jpeg_b64, "imgUrl1": "", "image2": jpeg_b64, "imgUrl2": ""})
    assert body["code"] == "0"
    assert body["isFee"] == 1
    assert body["data"]["result"] == 1
    assert set(body["data"]["threshold"]) == {"threshold1", "threshold2", "threshold3"}
    assert sandbox.billed == 1


def test_raw_an_uppercase_sign_is_refused(sandbox, jpeg_b64):
    timestamp = str(time.time_ns() // 1_000_000)
    key, secret = ShuxunSandbox.default_credentials().values()
    upper = hashlib.sha256(f"{key}{timestamp}{secret}".encode()).hexdigest().upper()
    body = raw_post(sandbox, {"image1": jpeg_b64, "image2": jpeg_b64}, timestamp=timestamp, sign=upper)
    assert (body["code"], body["isFee"], body["data"]) == ("4", 0, None)


def test_raw_a_timestamp_in_seconds_is_refused(sandbox, jpeg_b64):
    body = raw_post(sandbox, {"image1": jpeg_b64, "image2": jpeg_b64}, timestamp=str(int(time.time())))
    assert body["code"] == "4"
    assert "window" in sandbox.rejected[0]


def test_raw_an_unescaped_plus_breaks_the_image(sandbox, jpeg_b64):
    assert "+" in jpeg_b64  # the point of the test: form decoding turns "+" into " "
    body = raw_post(sandbox, f"image1={jpeg_b64}&image2={jpeg_b64}".encode())
    assert (body["code"], body["isFee"], body["data"]["result"]) == ("0", 0, 3)
    assert sandbox.rejected == ["image1: not valid base64"]
    assert sandbox.billed == 0


@pytest.mark.parametrize(
    ("form", "why"),
    [
        ({"image1": "x"}, "need exactly one of image2/imgUrl2, got 0"),
        (
            {"image1": "x", "imgUrl1": "https://a.test/1.jpg", "image2": "x"},
            "need exactly one of image1/imgUrl1, got 2",
        ),
    ],
)
def test_raw_exactly_two_images_are_required(sandbox, form, why):
    body = raw_post(sandbox, form)
    assert (body["code"], body["msg"], body["isFee"]) == ("1", "必须上传2张人脸照片", 0)
    assert sandbox.rejected == [why]


def test_raw_a_non_image_is_a_failed_compare(sandbox, jpeg_b64):
    body = raw_post(sandbox, {"image1": base64.b64encode(b"plain text, not a picture").decode(), "image2": jpeg_b64})
    assert body["data"]["result"] == 3
    assert sandbox.rejected == ["image1: not an image"]


def test_raw_json_content_type_is_a_parameter_error(sandbox):
    body = raw_post(sandbox, b"{}", content_type="application/json")
    assert body["code"] == "1"
    assert sandbox.rejected == ["content type application/json is not application/x-www-form-urlencoded"]


def test_raw_unknown_fields_are_a_parameter_error(sandbox, jpeg_b64):
    body = raw_post(sandbox, {"image1": jpeg_b64, "image2": jpeg_b64, "imageUrl1": "https://a.test/x.jpg"})
    assert body["code"] == "1"
    assert sandbox.rejected == ["unknown fields ['imageUrl1']"]


def test_sandbox_credentials_can_be_chosen(transport, photo):
    box = ShuxunSandbox({"app_key": "k2", "app_secret": "s2"}).start()
    try:
        vendor = make_vendor(box, transport, app_key="k2", app_secret="s2")
        assert vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), context()).billed is True
        with pytest.raises(errors.VendorAuthFailed):
            make_vendor(box, transport).compare(photo("obama.jpg"), photo("obama2.jpg"), context())
    finally:
        box.stop()
