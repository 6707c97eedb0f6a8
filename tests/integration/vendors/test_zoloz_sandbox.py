"""The ZOLOZ adapter against its sandbox over real loopback HTTP, plain and encrypted.

The sandbox checks requests from ZOLOZ's documentation with its own code (and its
own key pairs), so agreeing with it means agreeing with the protocol, not with
facegate's signer.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from facegate import images
from facegate.errors import (
    NoFace,
    VendorAuthFailed,
    VendorBadResponse,
    VendorConnectionLost,
    VendorQuotaExhausted,
    VendorRateLimited,
    VendorRejected,
    VendorTimeout,
    VendorUnavailable,
)
from facegate.transport import Timeouts, Transport
from facegate.vendors.base import CallContext, ImageRef, decide
from facegate.vendors.zoloz import ZolozCredentials, ZolozVendor
from facegate_local.sandboxes import sandbox_class
from facegate_local.sandboxes.zoloz import ZolozSandbox

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "zoloz"
REQUEST_ID = "01HV3K8Z6Q4WJ9T2B5N7XRCM0D"


@pytest.fixture(scope="module")
def _server():
    # One server for the module (stopping one waits out its 0.5 s poll); each test
    # gets it back clean.
    with ZolozSandbox(timeout_s=1.5) as sb:
        yield sb


@pytest.fixture
def sandbox(_server):
    _server.reset()
    _server.score = 88.2
    yield _server
    _server.reset()


@pytest.fixture
def transport():
    t = Transport(Timeouts(connect=2.0, read=5.0))
    yield t
    t.close()


@pytest.fixture(params=[False, True], ids=["plain", "encrypted"])
def encrypt(request) -> bool:
    return request.param


def adapter(sandbox: ZolozSandbox, transport: Transport, **over) -> ZolozVendor:
    secret = {**sandbox.default_credentials(), "endpoint": sandbox.url, **over}
    return ZolozVendor(ZolozCredentials.model_validate(secret), transport)


def ctx(now: datetime | None = None) -> CallContext:
    return CallContext(now=now or datetime.now(UTC), nonce="0" * 32, request_id=REQUEST_ID)


@pytest.fixture
def refs(face_bytes):
    def make(name1: str = "obama.jpg", name2: str = "obama2.jpg") -> tuple[ImageRef, ImageRef]:
        # As the service does: decode once, then fit to the vendor's limits and budget.
        budget = ZolozVendor.limits.total_bytes // 2
        return tuple(  # type: ignore[return-value]
            ImageRef(image=images.fit(images.load_bytes(face_bytes(n)), ZolozVendor.limits, budget))
            for n in (name1, name2)
        )

    return make


def test_registered_sandbox():
    assert sandbox_class("zoloz") is ZolozSandbox


def test_success(sandbox, transport, refs, encrypt):
    vendor = adapter(sandbox, transport, encrypt=encrypt)
    outcome = vendor.compare(*refs(), ctx())
    assert outcome.vendor_score == 88.2
    assert outcome.similarity == pytest.approx(0.882)
    assert outcome.vendor_match is True
    assert outcome.billed is True
    assert outcome.vendor_request_id.startswith("G000000005FID")
    assert decide(outcome, "normal")[0] == "match"
    assert sandbox.billed == 1
    assert sandbox.rejected == []
    sent = sandbox.log[-1]
    assert sent.headers["Client-Id"] == "2188000123456789"
    if encrypt:
        assert sent.headers["Encrypt"].startswith("algorithm=RSA_AES, symmetricKey=")
        assert b"bizId" not in sent.body  # nothing readable on the wire
    else:
        assert json.loads(sent.body)["bizId"] == REQUEST_ID


def test_encrypted_answers_come_back_encrypted(sandbox, transport, refs):
    vendor = adapter(sandbox, transport, encrypt=True)
    request = vendor.build_compare(*refs(), ctx())
    response = transport.send("zoloz", request)
    assert response.headers["Encrypt"].startswith("algorithm=RSA_AES, symmetricKey=")
    assert b"samePerson" not in response.body
    assert vendor.parse_compare(response, request, ctx()).vendor_match is True


def test_identical_images_score_100(sandbox, transport, refs, encrypt):
    outcome = adapter(sandbox, transport, encrypt=encrypt).compare(*refs("obama.jpg", "obama.jpg"), ctx())
    assert outcome.vendor_score == 100.0
    assert outcome.similarity == 1.0


def test_a_png_is_sent_as_jpeg(sandbox, transport, refs):
    image1, image2 = refs("32bit.png", "obama.jpg")
    assert image1.image.format == "JPEG"
    assert adapter(sandbox, transport).compare(image1, image2, ctx()).billed is True


def test_no_match(sandbox, transport, refs, encrypt):
    sandbox.score = 12.5
    outcome = adapter(sandbox, transport, encrypt=encrypt).compare(*refs("obama.jpg", "biden.jpg"), ctx())
    assert outcome.vendor_match is False
    assert decide(outcome, "normal")[0] == "no_match"


def test_wrong_merchant_key_is_an_auth_failure(sandbox, transport, refs, encrypt):
    wrong = (FIXTURES / "merchant_private.pem").read_text()  # not the key the sandbox knows
    vendor = adapter(sandbox, transport, encrypt=encrypt, merchant_private_key=wrong)
    with pytest.raises(VendorAuthFailed) as e:
        vendor.compare(*refs(), ctx())
    assert e.value.vendor_code == "SIGNATURE_INVALID"
    assert e.value.billed is False
    assert sandbox.rejected == ["the signature does not verify with the merchant public key"]
    assert sandbox.billed == 0


def test_wrong_client_id(sandbox, transport, refs):
    with pytest.raises(VendorAuthFailed) as e:
        adapter(sandbox, transport, client_id="2188000000000000").compare(*refs(), ctx())
    # The sandbox signs its refusal for the client id it was given, so it verifies.
    assert e.value.vendor_code == "MERCHANT_NOT_FOUND"
    assert sandbox.rejected == ["unknown Client-Id"]


def test_a_stale_request_time_is_refused(sandbox, transport, refs):
    with pytest.raises(VendorRejected) as e:
        adapter(sandbox, transport).compare(*refs(), ctx(datetime.now(UTC) - timedelta(minutes=10)))
    assert e.value.vendor_code == "PARAM_ILLEGAL"
    assert sandbox.rejected == ["Request-Time is more than 5 minutes off"]


@pytest.mark.parametrize("window_s", [100.0, 300.0])
def test_the_configured_response_window_decides_freshness(sandbox, transport, refs, window_s):
    # Our clock 200 s behind the sandbox's: the sandbox still takes the request (its own
    # window is 5 minutes) and signs its answer 200 s from our time.
    behind = datetime.now(UTC) - timedelta(seconds=200)
    context = CallContext(now=behind, nonce="0" * 32, request_id=REQUEST_ID, response_max_skew_s=window_s)
    if window_s > 200:
        assert adapter(sandbox, transport).compare(*refs(), context).billed is True
    else:
        with pytest.raises(VendorBadResponse, match=r"is 20\d s from this request's time \(allowed 100 s\)"):
            adapter(sandbox, transport).compare(*refs(), context)
    assert sandbox.rejected == []


def test_a_request_time_in_another_zone_is_fine(sandbox, transport, refs):
    now = datetime.now(UTC).astimezone(datetime.now().astimezone().tzinfo)
    assert adapter(sandbox, transport).compare(*refs(), ctx(now)).billed is True


def test_an_answer_signed_by_someone_else_is_refused(sandbox, transport, refs):
    other_zoloz_key = (FIXTURES / "zoloz_public.pem").read_text()
    vendor = adapter(sandbox, transport, zoloz_public_key=other_zoloz_key)
    with pytest.raises(VendorBadResponse, match="does not verify"):
        vendor.compare(*refs(), ctx())
    assert sandbox.billed == 1  # ZOLOZ did the work; we still do not believe the answer


def test_a_tampered_answer_is_refused(sandbox, transport, refs, encrypt):
    sandbox.score = 12.5  # a no-match that the tampering turns into a match
    sandbox.fail_next("bad_signature")
    with pytest.raises(VendorBadResponse, match="does not verify"):
        adapter(sandbox, transport, encrypt=encrypt).compare(*refs("obama.jpg", "biden.jpg"), ctx())


def test_no_face_found(sandbox, transport, encrypt):
    # Bytes that pass facegate's JPEG check by magic only, as a stand-in for an
    # image in which ZOLOZ finds nothing: the sandbox refuses non-images.
    junk = images.Image(data=b"\x00not a jpeg", format="JPEG", width=100, height=100)
    with pytest.raises(NoFace) as e:
        adapter(sandbox, transport, encrypt=encrypt).compare(ImageRef(image=junk), ImageRef(image=junk), ctx())
    assert e.value.vendor_code == "UNABLE_GET_IMAGE"
    assert sandbox.rejected == ["face1.content is not a JPG, PNG or BMP image"]


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("rate_limit", VendorRateLimited, "REQUEST_TRAFFIC_EXCEED_LIMIT"),
        ("quota", VendorQuotaExhausted, "PRODUCT_QUOTA_LIMIT"),
        ("auth", VendorAuthFailed, "SIGNATURE_INVALID"),
        ("http_500", VendorUnavailable, "500"),
        ("malformed", VendorBadResponse, None),
        ("reset", VendorConnectionLost, None),
    ],
)
def test_faults(sandbox, transport, refs, encrypt, fault, error, code):
    sandbox.fail_next(fault)
    vendor = adapter(sandbox, transport, encrypt=encrypt)
    with pytest.raises(error) as e:
        vendor.compare(*refs(), ctx())
    assert type(e.value) is error
    assert e.value.vendor_code == code
    assert sandbox.billed == 0
    # The fault was one-off: the next call goes through.
    assert vendor.compare(*refs(), ctx()).billed is True


def test_timeout(refs):
    # Its own sandbox: the stalled handler thread outlives the test.
    short = Transport(Timeouts(connect=1.0, read=0.3))
    with ZolozSandbox(timeout_s=1.0) as stalled:
        stalled.fail_next("timeout")
        with pytest.raises(VendorTimeout) as e:
            adapter(stalled, short).compare(*refs(), ctx())
    short.close()
    assert e.value.sent is True
    assert e.value.billed is None


# --- the sandbox on its own: raw requests signed here with cryptography ---------------------------


def _raw_post(sandbox, body: bytes, *, path: str = "/api/v1/zoloz/facecompare/compare", **headers):
    key = serialization.load_pem_private_key(sandbox.default_credentials()["merchant_private_key"].encode(), None)
    time_str = headers.pop("request_time", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"))
    content = f"POST {path}\n2188000123456789.{time_str}.".encode() + body
    raw_sig = base64.b64encode(key.sign(content, padding.PKCS1v15(), hashes.SHA256())).decode()
    sent = {
        "Content-Type": "application/json; charset=UTF-8",
        "Client-Id": "2188000123456789",
        "Request-Time": time_str,
        "Signature": f"algorithm=RSA256, signature={headers.pop('signature', quote(raw_sig, safe=''))}",
        **headers,
    }
    r = requests.post(sandbox.url + path, data=body, headers=sent, timeout=5)
    return r, raw_sig


def _raw_body(face_bytes, **over) -> bytes:
    content = base64.b64encode(face_bytes("obama.jpg")).decode()
    payload = {"bizId": "raw-1", "face1": {"content": content}, "face2": {"content": content}, **over}
    return json.dumps(payload).encode()


def test_raw_the_pages_time_spelling_and_an_unencoded_signature_are_accepted(sandbox, face_bytes):
    body = _raw_body(face_bytes)
    now = datetime.now(UTC).astimezone(timezone(timedelta(hours=5, minutes=30)))
    time_str = now.strftime("%Y-%m-%dT%H:%M:%S+05:30")
    key = serialization.load_pem_private_key(sandbox.default_credentials()["merchant_private_key"].encode(), None)
    content = f"POST /api/v1/zoloz/facecompare/compare\n2188000123456789.{time_str}.".encode() + body
    raw_sig = base64.b64encode(key.sign(content, padding.PKCS1v15(), hashes.SHA256())).decode()
    r, _ = _raw_post(sandbox, body, request_time=time_str, signature=raw_sig)
    assert r.json()["result"]["resultCode"] == "SUCCESS"
    assert r.json()["score"] == 100.0


def test_raw_answers_are_signed_with_the_zoloz_key_the_credentials_name(sandbox, face_bytes):
    r, _ = _raw_post(sandbox, _raw_body(face_bytes))
    public = serialization.load_pem_public_key(sandbox.default_credentials()["zoloz_public_key"].encode())
    content = (
        f"POST /api/v1/zoloz/facecompare/compare\n2188000123456789.{r.headers['Response-Time']}.".encode() + r.content
    )
    signature = unquote(r.headers["Signature"].split("signature=", 1)[1])
    public.verify(base64.b64decode(signature), content, padding.PKCS1v15(), hashes.SHA256())
    assert r.headers["Response-Time"].endswith("+0800")


@pytest.mark.parametrize(
    ("over", "code", "why"),
    [
        ({"bizId": ""}, "INVALID_ARGUMENT", "bizId is null or empty"),
        ({"bizId": "x" * 33}, "PARAM_ILLEGAL", "bizId is longer than 32 bytes"),
        ({"sourceOfFace2": "PASSPORT"}, "PARAM_ILLEGAL", "sourceOfFace2 is neither SELFIE nor a docType"),
        ({"face2": {"content": ""}}, "UNABLE_GET_IMAGE", "face2.content is null or empty"),
        (
            {"face2": {"content": "bm90IGFuIGltYWdl"}},
            "UNABLE_GET_IMAGE",
            "face2.content is not a JPG, PNG or BMP image",
        ),
    ],
)
def test_raw_field_checks(sandbox, face_bytes, over, code, why):
    r, _ = _raw_post(sandbox, _raw_body(face_bytes, **over))
    assert r.json()["result"]["resultCode"] == code
    assert sandbox.rejected == [why]
    assert sandbox.billed == 0


def test_raw_an_unknown_path_is_no_interface(sandbox, face_bytes):
    r, _ = _raw_post(sandbox, _raw_body(face_bytes), path="/api/v1/zoloz/facecompare/other")
    assert r.json()["result"]["resultCode"] == "NO_INTERFACE_DEF"


def test_raw_a_plain_body_declared_encrypted_is_refused(sandbox, face_bytes):
    r, _ = _raw_post(sandbox, _raw_body(face_bytes), Encrypt="algorithm=RSA_AES, symmetricKey=AAAA")
    assert r.json()["result"]["resultCode"] == "MSG_PARSE_ERROR"
    assert sandbox.rejected == ["Content-Type is not text/plain; charset=UTF-8"]


def test_raw_text_plain_without_encryption_is_refused(sandbox, face_bytes):
    r, _ = _raw_post(sandbox, _raw_body(face_bytes), **{"Content-Type": "text/plain; charset=UTF-8"})
    assert r.json()["result"]["resultCode"] == "MSG_PARSE_ERROR"
