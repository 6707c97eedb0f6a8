"""JumeiVendor over real loopback HTTP against JumeiSandbox, which checks requests the
way the Tencent marketplace gateway and the vendor doc describe, on its own."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests

from facegate import errors
from facegate.images import fit, load_bytes
from facegate.transport import Timeouts, Transport
from facegate.vendors.base import CallContext, Identity, ImageRef, decide
from facegate.vendors.jumei import JumeiCredentials, JumeiVendor
from facegate_local.sandboxes import sandbox_class
from facegate_local.sandboxes.jumei import DEFAULT_ID_NUMBER, DEFAULT_NAME, JumeiSandbox

PERSON = Identity(DEFAULT_NAME, DEFAULT_ID_NUMBER)
PATH = "/release/idcardface/validate"


@pytest.fixture(scope="module")
def running_sandbox():
    box = JumeiSandbox().start()
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


def make_vendor(sandbox, transport, **overrides) -> JumeiVendor:
    creds = {**JumeiSandbox.default_credentials(), "endpoint": sandbox.url, **overrides}
    return JumeiVendor(JumeiCredentials.model_validate(creds), transport)


@pytest.fixture
def vendor(sandbox, transport) -> JumeiVendor:
    return make_vendor(sandbox, transport)


def context(now: datetime | None = None, level="normal") -> CallContext:
    return CallContext(
        now=now or datetime.now(UTC),
        nonce=uuid.uuid4().hex,
        request_id=str(uuid.uuid4()),
        security_level=level,
    )


@pytest.fixture
def photo(face_bytes):
    def ref(name: str = "obama.jpg") -> ImageRef:
        return ImageRef(image=fit(load_bytes(face_bytes(name)), JumeiVendor.limits))

    return ref


def test_registered_under_its_id():
    assert sandbox_class("jumei") is JumeiSandbox
    assert JumeiSandbox.vendor == "jumei"
    assert set(JumeiSandbox.default_credentials()) == {"secret_id", "secret_key", "source"}


def test_sandbox_does_not_import_facegate():
    import ast
    import inspect

    import facegate_local.sandboxes.jumei as module

    tree = ast.parse(inspect.getsource(module))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not any(m and (m == "facegate" or m.startswith("facegate.")) for m in imported), imported


# --- the happy path -----------------------------------------------------------------------


def test_verifies_an_identity(vendor, sandbox, photo):
    outcome = vendor.verify_identity(PERSON, photo(), context())
    assert outcome.similarity == 0.82
    assert outcome.billed is True
    assert outcome.vendor_request_id is not None
    assert outcome.vendor_request_id.isdigit()
    assert decide(outcome, "normal") == ("match", 0.45)
    assert sandbox.billed == 1
    assert sandbox.rejected == []


def test_the_wire_request_is_what_the_doc_describes(vendor, sandbox, photo):
    image = photo()
    vendor.verify_identity(PERSON, image, context())
    (req,) = sandbox.log
    assert req.method == "POST"
    assert req.path == PATH
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert req.headers["X-Source"] == "market"
    assert req.form() == {
        "idcard_number": DEFAULT_ID_NUMBER,
        "imgBase64": base64.b64encode(image.image.data).decode(),
        "name": DEFAULT_NAME,
    }


def test_a_url_is_passed_through(vendor, sandbox):
    outcome = vendor.verify_identity(PERSON, ImageRef(url="https://example.com/me.jpg"), context())
    assert outcome.similarity == 0.82
    assert sandbox.log[0].form()["imgUrl"] == "https://example.com/me.jpg"


def test_the_uncertain_band_over_the_wire(transport, photo):
    with JumeiSandbox(score=0.42) as box:
        outcome = make_vendor(box, transport).verify_identity(PERSON, photo(), context())
    assert decide(outcome, "normal")[0] == "uncertain"
    assert decide(outcome, "high")[0] == "no_match"


# --- the identity ---------------------------------------------------------------------------


def test_a_name_that_does_not_match_the_number(vendor, sandbox, photo):
    with pytest.raises(errors.IdentityMismatch) as e:
        vendor.verify_identity(Identity("李四", DEFAULT_ID_NUMBER), photo(), context())
    assert e.value.vendor_code == "101"
    assert e.value.billed is True
    assert sandbox.billed == 1
    for text in (str(e.value), repr(e.value), str(e.value.body())):
        assert "李四" not in text
        assert DEFAULT_ID_NUMBER not in text


def test_an_unknown_number(vendor, sandbox, photo):
    with pytest.raises(errors.IdentityNotFound) as e:
        vendor.verify_identity(Identity(DEFAULT_NAME, "11010519491231002X"), photo(), context())
    assert e.value.vendor_code == "102"


def test_an_invalid_number_never_reaches_the_vendor(vendor, sandbox, photo):
    with pytest.raises(errors.InvalidIdNumber):
        vendor.verify_identity(Identity(DEFAULT_NAME, "110105199003071238"), photo(), context())
    assert sandbox.requests == 0


@pytest.mark.parametrize(
    ("incorrect", "cls"),
    [
        (103, errors.VendorRejected),
        (104, errors.VendorRejected),
        (106, errors.VendorUnavailable),
        (107, errors.PoorImageQuality),
        (108, errors.ImageTooLarge),
        (109, errors.IdentityNotFound),
        (110, errors.NoFace),
        (111, errors.MultipleFaces),
        (112, errors.InvalidImage),
        (113, errors.VendorUnavailable),
    ],
)
def test_forced_incorrect_codes(vendor, sandbox, photo, incorrect, cls):
    sandbox.next_incorrect = incorrect
    with pytest.raises(cls) as e:
        vendor.verify_identity(PERSON, photo(), context())
    assert e.value.vendor_code == str(incorrect)
    assert e.value.billed is True
    # A forced code is used once.
    assert vendor.verify_identity(PERSON, photo(), context()).similarity == 0.82


# --- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize("skew", [timedelta(minutes=16), timedelta(minutes=-16)])
def test_an_x_date_sixteen_minutes_off_is_refused(vendor, sandbox, photo, skew):
    with pytest.raises(errors.VendorAuthFailed) as e:
        vendor.verify_identity(PERSON, photo(), context(datetime.now(UTC) + skew))
    assert e.value.vendor_code == "401"
    assert e.value.billed is False
    assert sandbox.rejected == [
        "HMAC signature cannot be verified, the x-date header is out of date for HMAC Authentication"
    ]
    assert sandbox.billed == 0


def test_an_x_date_fourteen_minutes_off_is_accepted(vendor, sandbox, photo):
    outcome = vendor.verify_identity(PERSON, photo(), context(datetime.now(UTC) - timedelta(minutes=14)))
    assert outcome.similarity == 0.82


def test_a_wrong_secret_key_is_an_auth_failure(sandbox, transport, photo):
    vendor = make_vendor(sandbox, transport, secret_key="not-the-key")
    with pytest.raises(errors.VendorAuthFailed) as e:
        vendor.verify_identity(PERSON, photo(), context())
    assert e.value.vendor_message == "HMAC signature does not match"
    assert sandbox.rejected == ["HMAC signature does not match"]
    assert sandbox.billed == 0


def test_an_unknown_secret_id_is_an_auth_failure(sandbox, transport, photo):
    vendor = make_vendor(sandbox, transport, secret_id="AKIDunknown")
    with pytest.raises(errors.VendorAuthFailed):
        vendor.verify_identity(PERSON, photo(), context())
    assert sandbox.rejected == ["HMAC signature cannot be verified"]


def test_a_different_source_is_signed_and_accepted(sandbox, transport, photo):
    outcome = make_vendor(sandbox, transport, source="facegate").verify_identity(PERSON, photo(), context())
    assert outcome.billed is True
    assert sandbox.log[0].headers["X-Source"] == "facegate"


# --- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        ("http_500", errors.VendorUnavailable),
        ("malformed", errors.VendorBadResponse),
        ("rate_limit", errors.VendorRateLimited),
        # Tencent gives an exhausted package no status or code of its own (see the
        # adapter's docstring): it is indistinguishable from throttling.
        ("quota", errors.VendorRateLimited),
        ("auth", errors.VendorAuthFailed),
        ("reset", errors.VendorConnectionLost),
    ],
)
def test_faults_become_the_right_errors(vendor, sandbox, photo, fault, cls):
    sandbox.fail_next(fault)
    with pytest.raises(cls) as e:
        vendor.verify_identity(PERSON, photo(), context())
    assert type(e.value) is cls
    assert sandbox.billed == 0
    if fault in ("rate_limit", "quota", "auth"):
        assert e.value.billed is False
    # The next call goes through.
    assert vendor.verify_identity(PERSON, photo(), context()).similarity == 0.82


def test_a_read_timeout_is_a_timeout_that_may_have_been_billed(photo):
    # Its own sandbox: the stalled handler outlives the test. The stall (1 s)
    # outlasts the read timeout (0.3 s).
    box = JumeiSandbox(timeout_s=1.0).start()
    transport = Transport(Timeouts(connect=2.0, read=0.3))
    try:
        box.fail_next("timeout")
        with pytest.raises(errors.VendorTimeout) as e:
            make_vendor(box, transport).verify_identity(PERSON, photo(), context())
    finally:
        transport.close()
        box.stop()
    assert e.value.sent is True
    assert e.value.billed is None
    assert e.value.failover is False


# --- the sandbox holds to the docs on its own (raw requests) -----------------------------------


def _sign(key: str, x_date: str, source: str) -> str:
    # Written here from the doc's samples, independently of facegate.signing.
    mac = hmac.new(key.encode(), f"x-date: {x_date}\nx-source: {source}".encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def raw_post(sandbox, data, *, x_date=None, source="market", auth=None, headers=None, path=PATH):
    creds = JumeiSandbox.default_credentials()
    x_date = x_date or format_datetime(datetime.now(UTC), usegmt=True)
    if auth is None:
        sig = _sign(creds["secret_key"], x_date, source)
        auth = f'hmac id="{creds["secret_id"]}", algorithm="hmac-sha1", headers="x-date x-source", signature="{sig}"'
    h = {"X-Date": x_date, "X-Source": source, "Authorization": auth, **(headers or {})}
    h = {k: v for k, v in h.items() if v is not None}
    return requests.post(sandbox.url + path, data=data, headers=h, timeout=10)


@pytest.fixture
def jpeg_b64(face_bytes):
    return base64.b64encode(face_bytes("obama2.jpg")).decode()


def test_raw_the_doc_samples_shape_with_an_empty_placeholder_is_served(sandbox, jpeg_b64):
    form = {"idcard_number": DEFAULT_ID_NUMBER, "imgBase64": jpeg_b64, "imgUrl": "", "name": DEFAULT_NAME}
    r = raw_post(sandbox, form)
    assert r.status_code == 200
    body = r.json()
    assert body["code"] == 200
    assert body["data"] == {"score": 0.82, "msg": "系统判断为同一人", "incorrect": 100}


@pytest.mark.parametrize(
    ("auth", "why"),
    [
        (None, "HMAC signature cannot be verified, a validate authorization header is required"),
        ("Basic abc", "HMAC authorization format error"),
        ('hmac id="AKIDsandboxJumei0000000000000000", algorithm="hmac-sha1"', "HMAC id or signature missing"),
        (
            'hmac id="AKIDsandboxJumei0000000000000000", algorithm="hmac-md5", headers="x-date x-source", '
            'signature="x"',
            "HMAC algorithm hmac-md5 not supported",
        ),
        (
            'hmac id="AKIDsandboxJumei0000000000000000", algorithm="hmac-sha1", headers="x-source", signature="x"',
            "HMAC signature cannot be verified, a valid date or x-date header is required",
        ),
    ],
)
def test_raw_malformed_authorization(sandbox, auth, why):
    r = raw_post(sandbox, {"name": "x"}, headers={"Authorization": auth})  # None: no header at all
    assert r.status_code == 401
    assert r.json() == {"message": why}
    assert sandbox.rejected == [why]


def _german_x_date(now: datetime) -> str:
    days = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")
    months = ("Jan", "Feb", "Mär", "Apr", "Mai", "Jun", "Jul", "Aug", "Sep", "Okt", "Nov", "Dez")
    return f"{days[now.weekday()]}, {now:%d} {months[now.month - 1]} {now:%Y %H:%M:%S} GMT"


def test_raw_a_locale_formatted_x_date_is_refused(sandbox, jpeg_b64):
    # What strftime("%a, %d %b …") gives under a German LC_TIME (a Chinese one gives
    # "一, 19 3月": not even a valid header value): correctly signed, still refused.
    r = raw_post(sandbox, {"name": "x"}, x_date=_german_x_date(datetime.now(UTC)))
    assert r.status_code == 401
    assert "valid x-date header" in r.json()["message"]


def test_raw_a_weekday_that_does_not_fit_the_date_is_refused(sandbox):
    good = format_datetime(datetime.now(UTC), usegmt=True)
    wrong_day = ("Tue" if good.startswith("Mon") else "Mon") + good[3:]
    r = raw_post(sandbox, {"name": "x"}, x_date=wrong_day)
    assert r.status_code == 401
    assert "valid x-date header" in r.json()["message"]


@pytest.mark.parametrize(
    ("form", "msg"),
    [
        ({"idcard_number": DEFAULT_ID_NUMBER, "name": DEFAULT_NAME}, "参数错误"),  # no image
        ({"idcard_number": DEFAULT_ID_NUMBER, "imgUrl": "https://e/x", "name": ""}, "参数错误"),
        ({"imgUrl": "https://e/x", "name": DEFAULT_NAME}, "参数错误"),
        (
            {"idcard_number": "110105199003071238", "imgUrl": "https://e/x", "name": DEFAULT_NAME},
            "身份证号格式错误",
        ),
    ],
)
def test_raw_parameter_errors(sandbox, form, msg):
    r = raw_post(sandbox, form)
    assert r.status_code == 200
    assert r.json() == {"msg": msg, "code": 400}
    assert sandbox.billed == 0


def test_raw_both_images_is_a_parameter_error(sandbox, jpeg_b64):
    form = {
        "idcard_number": DEFAULT_ID_NUMBER,
        "imgBase64": jpeg_b64,
        "imgUrl": "https://e/x",
        "name": DEFAULT_NAME,
    }
    assert raw_post(sandbox, form).json()["code"] == 400


def test_raw_json_body_is_a_parameter_error(sandbox):
    # The doc's curl line sends JSON; every code sample sends a form. The sandbox takes forms.
    r = raw_post(
        sandbox,
        b'{"idcard_number":"110105199003071239","imgUrl":"https://e/x","name":"x"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.json() == {"msg": "参数错误", "code": 400}


def test_raw_a_non_image_is_112(sandbox):
    form = {"idcard_number": DEFAULT_ID_NUMBER, "imgBase64": base64.b64encode(b"GIF89a....").decode()}
    r = raw_post(sandbox, {**form, "name": DEFAULT_NAME})
    assert r.json()["data"]["incorrect"] == 112
    assert sandbox.billed == 1


def test_raw_an_oversized_image_is_108(transport, jpeg_b64):
    with JumeiSandbox(max_image_bytes=1000) as box:
        form = {"idcard_number": DEFAULT_ID_NUMBER, "imgBase64": jpeg_b64, "name": DEFAULT_NAME}
        assert raw_post(box, form).json()["data"]["incorrect"] == 108


def test_raw_an_unknown_path_is_a_gateway_404(sandbox):
    r = raw_post(sandbox, {"name": "x"}, path="/release/other")
    assert r.status_code == 404
