"""Face2Vendor over real loopback HTTP against Face2Sandbox, which checks requests from
the vendor doc on its own (its own string to sign, its own SM3withSM2 verification)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from facegate import errors
from facegate.images import Image, fit, load_bytes
from facegate.transport import Timeouts, Transport
from facegate.vendors.base import CallContext, ImageRef, decide
from facegate.vendors.face2 import Face2Credentials, Face2Vendor
from facegate_local.sandboxes import sandbox_class
from facegate_local.sandboxes.face2 import Face2Sandbox

SIGN_TYPES = ["SHA256", "SM2"]


@pytest.fixture(scope="module", params=SIGN_TYPES)
def running_sandbox(request):
    box = Face2Sandbox(sign_type=request.param).start()
    yield box
    box.stop()


@pytest.fixture
def sandbox(running_sandbox):
    running_sandbox.reset()
    return running_sandbox


@pytest.fixture
def transport():
    t = Transport()
    yield t
    t.close()


def make_vendor(sandbox, transport, **overrides) -> Face2Vendor:
    creds = {**sandbox.default_credentials(), "endpoint": sandbox.url, **overrides}
    return Face2Vendor(Face2Credentials.model_validate(creds), transport)


@pytest.fixture
def vendor(sandbox, transport) -> Face2Vendor:
    return make_vendor(sandbox, transport)


def context(now: datetime | None = None) -> CallContext:
    return CallContext(now=now or datetime.now(UTC), nonce=uuid.uuid4().hex, request_id=str(uuid.uuid4()))


@pytest.fixture
def photo(face_bytes):
    def ref(name: str) -> ImageRef:
        return ImageRef(image=fit(load_bytes(face_bytes(name)), Face2Vendor.limits))

    return ref


def test_registered_under_its_id():
    assert sandbox_class("face2") is Face2Sandbox
    assert Face2Sandbox.vendor == "face2"


def test_default_credentials_have_the_contract_shape():
    assert set(Face2Sandbox().default_credentials()) == {"app_id", "app_secret", "sign_type", "version"}
    sm2 = Face2Sandbox(sign_type="SM2").default_credentials()
    assert set(sm2) == {"app_id", "app_secret", "sign_type", "version", "sm2_private_key"}
    assert sm2["sign_type"] == "SM2"
    assert len(base64.b64decode(sm2["sm2_private_key"])) == 32


# --- the three operations --------------------------------------------------------------------


@pytest.mark.parametrize("box_order", ["labelled", "example"])
def test_detect(vendor, sandbox, photo, monkeypatch, box_order):
    # The doc's table and its example disagree on the box order; either answer reads the same.
    monkeypatch.setattr(sandbox, "box_order", box_order)
    image = photo("obama.jpg")
    outcome = vendor.detect(image, 5, context())
    assert sandbox.rejected == []
    (face,) = outcome.faces
    width, height = image.image.width, image.image.height
    # The sandbox puts its one face in the middle: left w/4, top h/5, half the size.
    assert (face.left, face.top, face.width, face.height) == (
        width // 4,
        height // 5,
        width // 2,
        height // 2,
    )
    assert outcome.billed is True
    assert outcome.vendor_request_id is not None
    assert sandbox.billed == 1


def test_compare_identical_photos(vendor, sandbox, photo):
    outcome = vendor.compare(photo("obama.jpg"), photo("obama.jpg"), context())
    assert sandbox.rejected == []
    assert (outcome.vendor_score, outcome.similarity, outcome.vendor_match) == (0.0, 1.0, True)
    assert decide(outcome, "high") == ("match", 0.55)
    assert sandbox.billed == 1


def test_compare_different_photos_agrees_with_the_vendors_verdict(vendor, sandbox, photo):
    outcome = vendor.compare(photo("obama.jpg"), photo("biden.jpg"), context())
    assert 0.2 <= outcome.vendor_score < 1.8
    assert outcome.similarity == pytest.approx(1 - outcome.vendor_score / 2)
    assert outcome.vendor_match is (outcome.vendor_score <= 1.1)
    # The sandbox's verdict and the normal threshold say the same thing.
    assert (decide(outcome, "normal")[0] == "match") is (outcome.similarity >= 0.45)
    # The same pair the other way round is the same distance.
    again = vendor.compare(photo("biden.jpg"), photo("obama.jpg"), context())
    assert again.vendor_score == outcome.vendor_score


def test_features(vendor, sandbox, photo):
    outcome = vendor.features(photo("obama2.jpg"), context())
    assert sandbox.rejected == []
    assert len(outcome.embedding) == 512
    assert math.fsum(x * x for x in outcome.embedding) == pytest.approx(1.0, abs=1e-6)
    assert outcome.model == "face2-arcface-512"
    assert vendor.features(photo("obama2.jpg"), context()).embedding == outcome.embedding
    assert vendor.features(photo("obama.jpg"), context()).embedding != outcome.embedding
    assert sandbox.billed == 3


def test_the_wire_request_is_what_the_doc_describes(vendor, sandbox, photo):
    image = photo("obama.jpg")
    vendor.detect(image, 3, context())
    (seen,) = sandbox.log
    assert (seen.method, seen.path) == ("POST", "/face2/locate")
    assert seen.headers["Content-Type"].startswith("application/json")
    body = seen.json()
    assert set(body) == {"appId", "version", "signType", "signData", "encType", "timestamp", "data"}
    assert body["signType"] == sandbox.sign_type
    assert body["encType"] == "plain"
    assert isinstance(body["timestamp"], int)
    assert body["data"] == {"image": image.image.base64, "max_face_num": 3}


def test_a_large_png_fitted_to_the_limits_is_accepted(vendor, sandbox, face_bytes):
    outcome = vendor.features(ImageRef(image=fit(load_bytes(face_bytes("32bit.png")), Face2Vendor.limits)), context())
    assert len(outcome.embedding) == 512
    assert sandbox.rejected == []


# --- images the vendor refuses (sent unfitted on purpose) -----------------------------------------


def test_over_2_mb_of_base64_is_9002(vendor, sandbox):
    big = Image(data=b"\xff\xd8\xff" + bytes(1_600_000), format="JPEG", width=1000, height=1000)
    assert len(big.base64) > 2 * 1024 * 1024
    with pytest.raises(errors.ImageTooLarge) as e:
        vendor.features(ImageRef(image=big), context())
    assert (e.value.vendor_code, e.value.billed) == ("9002", False)
    assert sandbox.rejected == [f"image base64 is {len(big.base64)} B (9002)"]
    assert sandbox.billed == 0


def test_not_an_image_is_9901(vendor, sandbox, photo):
    text = Image(data=b"plain text, not a picture", format="JPEG", width=100, height=100)
    with pytest.raises(errors.InvalidImage) as e:
        vendor.compare(photo("obama.jpg"), ImageRef(image=text), context())
    assert e.value.vendor_code == "9901"
    assert sandbox.rejected == ["image2 is not an image (9901)"]


# --- auth ------------------------------------------------------------------------------------------


def test_wrong_app_secret_is_an_auth_failure(sandbox, transport, photo):
    vendor = make_vendor(sandbox, transport, app_secret="NOT-THE-SECRET")
    with pytest.raises(errors.VendorAuthFailed) as e:
        vendor.features(photo("obama.jpg"), context())
    assert (e.value.vendor_code, e.value.vendor_message, e.value.billed) == ("9800", "无效签名", False)
    assert "NOT-THE-SECRET" not in e.value.message
    assert sandbox.rejected == ["signature mismatch (9800)"]
    assert sandbox.billed == 0


def test_unknown_app_id_is_an_auth_failure(sandbox, transport, photo):
    vendor = make_vendor(sandbox, transport, app_id="SOMEONE-ELSE")
    with pytest.raises(errors.VendorAuthFailed) as e:
        vendor.features(photo("obama.jpg"), context())
    assert e.value.vendor_code == "9801"
    assert sandbox.rejected == ["unknown appId (9801)"]


@pytest.mark.parametrize("skew", [timedelta(minutes=-10), timedelta(minutes=10)], ids=["behind", "ahead"])
def test_a_skewed_clock_is_9802(vendor, sandbox, photo, skew):
    with pytest.raises(errors.VendorAuthFailed, match="clock") as e:
        vendor.features(photo("obama.jpg"), context(datetime.now(UTC) + skew))
    assert e.value.vendor_code == "9802"
    assert len(sandbox.rejected) == 1
    assert sandbox.rejected[0].startswith("timestamp ")
    assert sandbox.rejected[0].endswith(" s off the sandbox clock (9802)")


def test_a_sign_type_the_app_is_not_registered_for_is_9801(sandbox, transport, photo):
    other = "SM2" if sandbox.sign_type == "SHA256" else "SHA256"
    key = Face2Sandbox(sign_type="SM2").default_credentials()["sm2_private_key"]
    vendor = make_vendor(sandbox, transport, sign_type=other, sm2_private_key=key)
    with pytest.raises(errors.VendorAuthFailed) as e:
        vendor.features(photo("obama.jpg"), context())
    assert e.value.vendor_code == "9801"
    assert sandbox.rejected == [f"signType '{other}' is not the app's (9801)"]


def test_sm2_with_another_key_is_9800(transport, photo):
    box = Face2Sandbox(sign_type="SM2").start()
    try:
        stranger = Face2Sandbox(sign_type="SM2").default_credentials()["sm2_private_key"]
        vendor = make_vendor(box, transport, sm2_private_key=stranger)
        with pytest.raises(errors.VendorAuthFailed) as e:
            vendor.features(photo("obama.jpg"), context())
    finally:
        box.stop()
    assert e.value.vendor_code == "9800"
    assert box.rejected == ["signature mismatch (9800)"]


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "cls", "vendor_code", "billed"),
    [
        ("http_500", errors.VendorUnavailable, "500", None),
        ("malformed", errors.VendorBadResponse, None, None),
        ("rate_limit", errors.VendorRateLimited, "429", False),
        ("quota", errors.VendorQuotaExhausted, "402", False),
        ("auth", errors.VendorAuthFailed, "9800", False),
        ("reset", errors.VendorConnectionLost, None, None),
    ],
)
def test_faults_become_the_right_errors(vendor, sandbox, photo, fault, cls, vendor_code, billed):
    sandbox.fail_next(fault)
    with pytest.raises(errors.VendorError) as e:
        vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), context())
    assert type(e.value) is cls
    assert e.value.vendor == "face2"
    assert e.value.vendor_code == vendor_code
    assert e.value.billed is billed
    assert sandbox.billed == 0
    # The fault was one-off: the next call goes through and is the only one billed.
    assert vendor.compare(photo("obama.jpg"), photo("obama2.jpg"), context()).billed is True
    assert sandbox.billed == 1


def test_a_read_timeout_is_a_timeout_that_may_have_been_billed(photo):
    # Its own sandbox: the stalled handler thread outlives the test. The stall (1 s)
    # outlasts the read timeout (0.3 s).
    box = Face2Sandbox(timeout_s=1.0).start()
    transport = Transport(Timeouts(connect=2.0, read=0.3))
    try:
        box.fail_next("timeout")
        with pytest.raises(errors.VendorTimeout) as e:
            make_vendor(box, transport).features(photo("obama.jpg"), context())
    finally:
        transport.close()
        box.stop()
    assert (e.value.sent, e.value.billed, e.value.failover) == (True, None, False)
    assert box.billed == 0


# --- signed responses (not documented, but verified when present) -----------------------------


@pytest.mark.parametrize("sign_type", SIGN_TYPES)
def test_signed_responses_are_verified(transport, photo, sign_type):
    box = Face2Sandbox(sign_type=sign_type, sign_responses=True).start()
    try:
        vendor = make_vendor(box, transport)
        outcome = vendor.compare(photo("obama.jpg"), photo("biden.jpg"), context())
        assert outcome.billed is True
        box.fail_next("bad_signature")
        with pytest.raises(errors.VendorBadResponse, match="does not verify"):
            vendor.compare(photo("obama.jpg"), photo("biden.jpg"), context())
        assert box.billed == 2  # the vendor did the work; its answer just cannot be trusted
    finally:
        box.stop()


def test_an_sm2_signed_response_without_the_vendor_key_is_refused(transport, photo):
    box = Face2Sandbox(sign_type="SM2", sign_responses=True).start()
    try:
        creds = {k: v for k, v in box.default_credentials().items() if k != "sm2_vendor_public_key"}
        vendor = Face2Vendor(Face2Credentials.model_validate({**creds, "endpoint": box.url}), transport)
        with pytest.raises(errors.VendorBadResponse, match="sm2_vendor_public_key"):
            vendor.features(photo("obama.jpg"), context())
    finally:
        box.stop()


# --- the sandbox holds to the doc on its own (raw requests, no facegate signer) -----------------


def raw_post(sandbox, path: str, params: dict, *, content_type: str = "application/json"):
    r = requests.post(
        sandbox.url + path,
        data=json.dumps(params, ensure_ascii=False).encode(),
        headers={"Content-Type": content_type},
        timeout=10,
    )
    return r


def doc_signed(creds: dict, data: dict, *, drop: str | None = None, signed_sign_type: str = "SHA256") -> dict:
    """SHA256-signed parameters, written here from the doc, independently of facegate."""
    params = {
        "appId": creds["app_id"],
        "version": "1",
        "signType": "SHA256",
        "encType": "plain",
        "timestamp": int(datetime.now(UTC).timestamp()),
        "data": data,
    }
    pairs = []
    for key in sorted(params):
        value = params[key]
        if key == "data":
            value = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if key == "signType":
            value = signed_sign_type
        pairs.append(f"{key}={value}")
    text = "&".join(pairs) + "&key=" + creds["app_secret"]
    params["signData"] = base64.b64encode(hashlib.sha256(text.encode()).hexdigest().encode()).decode()
    if drop:
        del params[drop]
    return params


@pytest.fixture(scope="module")
def running_sha_box():
    box = Face2Sandbox().start()
    yield box
    box.stop()


@pytest.fixture
def sha_box(running_sha_box):
    running_sha_box.reset()
    return running_sha_box


@pytest.fixture
def jpeg_b64(face_bytes):
    return base64.b64encode(face_bytes("obama2.jpg")).decode()


def test_raw_a_doc_signed_request_with_unordered_data_is_served(sha_box, jpeg_b64):
    creds = sha_box.default_credentials()
    # Key order in the body does not matter: the sandbox re-sorts data itself.
    params = doc_signed(creds, {"max_face_num": 2, "image": jpeg_b64})
    params["data"] = {"max_face_num": 2, "image": jpeg_b64}
    body = raw_post(sha_box, "/face2/locate", params).json()
    assert (body["code"], body["success"], body["data"]["msg"], body["data"]["face_num"]) == (
        0,
        True,
        "success",
        1,
    )
    assert len(body["data"]["locations"][0]) == 4
    assert body["signType"] == "plain"
    assert sha_box.billed == 1


def test_raw_the_docs_mixed_example_would_be_refused(sha_box, jpeg_b64):
    # The doc's example parameters say signType SHA256 while its string to sign says
    # signType=SM2. signType is a signed field, so a server checking honestly refuses that.
    params = doc_signed(sha_box.default_credentials(), {"image": jpeg_b64}, signed_sign_type="SM2")
    assert params["signType"] == "SHA256"
    assert raw_post(sha_box, "/face2/features", params).json()["code"] == 9800
    assert sha_box.rejected == ["signature mismatch (9800)"]


@pytest.mark.parametrize(
    ("drop", "code", "why"),
    [
        ("signData", 9801, "appId, signType or signData missing (9801)"),
        ("timestamp", 9801, "timestamp missing or not an integer (9801)"),
        ("version", 9001, "version missing (9001)"),
        ("encType", 9001, "encType missing (9001)"),
    ],
)
def test_raw_missing_envelope_fields(sha_box, jpeg_b64, drop, code, why):
    params = doc_signed(sha_box.default_credentials(), {"image": jpeg_b64}, drop=drop)
    body = raw_post(sha_box, "/face2/features", params).json()
    assert (body["code"], body["success"]) == (code, False)
    assert sha_box.rejected == [why]
    assert sha_box.billed == 0


@pytest.mark.parametrize(
    ("path", "data", "code", "why"),
    [
        ("/face2/verify", {"image1": "IMG"}, 9001, "image2 missing (9001)"),
        (
            "/face2/locate",
            {"image": "IMG", "max_face_num": 0},
            9001,
            "max_face_num is not a positive integer (9001)",
        ),
        ("/face2/features", {"image": "not base64!"}, 9901, "image is not base64 (9901)"),
        ("/face2/features", {}, 9001, "image missing (9001)"),
    ],
)
def test_raw_data_fields(sha_box, jpeg_b64, path, data, code, why):
    data = {k: (jpeg_b64 if v == "IMG" else v) for k, v in data.items()}
    body = raw_post(sha_box, path, doc_signed(sha_box.default_credentials(), data)).json()
    assert body["code"] == code
    assert body["data"]["msg"]
    assert sha_box.rejected == [why]


def test_raw_a_tampered_body_is_9800(sha_box, jpeg_b64, face_bytes):
    params = doc_signed(sha_box.default_credentials(), {"image": jpeg_b64})
    params["data"]["image"] = base64.b64encode(face_bytes("biden.jpg")).decode()
    assert raw_post(sha_box, "/face2/features", params).json()["code"] == 9800


def test_raw_transport_level_refusals(sha_box, jpeg_b64):
    params = doc_signed(sha_box.default_credentials(), {"image": jpeg_b64})
    assert raw_post(sha_box, "/face2/nope", params).status_code == 404
    assert raw_post(sha_box, "/face2/features", params, content_type="text/plain").status_code == 415
    assert requests.get(sha_box.url + "/face2/features", timeout=10).status_code == 405
    r = requests.post(
        sha_box.url + "/face2/features",
        data=b"{oops",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert r.json()["code"] == 9001
