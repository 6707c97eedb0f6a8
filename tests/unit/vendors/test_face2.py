"""face2 adapter: golden requests, every documented code through the parser, box and
distance normalisation, response signatures, credentials."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from facegate import errors
from facegate.images import Image, ImageLimits, load_bytes
from facegate.models import Operation
from facegate.signing import face2 as signing
from facegate.transport import Transport
from facegate.vendors import vendor_class
from facegate.vendors.base import CallContext, HttpResponse, ImageRef, decide
from facegate.vendors.face2 import (
    CODES,
    MODEL,
    THRESHOLDS,
    Face2Credentials,
    Face2Vendor,
    similarity_from_distance,
)

# A 16x16 greyscale PNG, made once with Pillow and pasted; its base64 holds "+" and "/".
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAAAAAA6mKC9AAAAO0lEQVR4nGNk4EIFjGvRBaLQBdjRBbagCySiC/ChC+xGF8hAFx"
    "BFFziELpCPLiCDLnASXaAMXUAZTQAARNAPiZm0fSYAAAAASUVORK5CYII="
)
FROZEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)  # unix 1714979289
BASE = "https://face2.example.com/api"
HEADERS = {"Content-Type": "application/json;charset=UTF-8", "Accept": "application/json"}
DOC_SM2_KEY = "JShsBOJL0RgPAoPttEB1hgtPAvCikOl0V1oTOYL7k5U="

# Golden wire forms: the string each request signs (written out by hand from the doc's
# rules) and the body sent (keys sorted, compact). signData is pinned too.
GOLDEN = {
    Operation.DETECT: (
        "/face2/locate",
        f'appId=APP-0001&data={{"image":"{PNG_B64}","max_face_num":5}}&encType=plain&signType=SHA256'
        "&timestamp=1714979289&version=1&key=SECRET-0001",
        f'{{"appId":"APP-0001","data":{{"image":"{PNG_B64}","max_face_num":5}},"encType":"plain",'
        '"signData":"ODYzOWRmY2YzYzU2M2JkZjJlNjhmNmM1OTFjNDg4YTc5OWY2ODMyMDA3ZWNlZGI1OGM4NmRkOTc5ZTY2OWVjMA==",'
        '"signType":"SHA256","timestamp":1714979289,"version":"1"}',
    ),
    Operation.COMPARE: (
        "/face2/verify",
        f'appId=APP-0001&data={{"image1":"{PNG_B64}","image2":"{PNG_B64}"}}&encType=plain&signType=SHA256'
        "&timestamp=1714979289&version=1&key=SECRET-0001",
        f'{{"appId":"APP-0001","data":{{"image1":"{PNG_B64}","image2":"{PNG_B64}"}},"encType":"plain",'
        '"signData":"YmY2Mjg0N2ViZGQxOTE1NzE1ZTFjYTViMDUyMTQ1ZjgzNTUwMzU1NmNhOTAxOGU4NzhhNjI5ODM0ZmRmMWVhYw==",'
        '"signType":"SHA256","timestamp":1714979289,"version":"1"}',
    ),
    Operation.FEATURES: (
        "/face2/features",
        f'appId=APP-0001&data={{"image":"{PNG_B64}"}}&encType=plain&signType=SHA256'
        "&timestamp=1714979289&version=1&key=SECRET-0001",
        f'{{"appId":"APP-0001","data":{{"image":"{PNG_B64}"}},"encType":"plain",'
        '"signData":"NmRmZTNiZjhhNjgzZWMwYzUzMzU3MDAyN2VjYzViYmE2OTgxOTlkMDE5NmYxMjU4Yzc0OWM2ZTAwMzYwOGEzMg==",'
        '"signType":"SHA256","timestamp":1714979289,"version":"1"}',
    ),
}


@pytest.fixture
def ctx() -> CallContext:
    return CallContext(now=FROZEN, nonce="unused-nonce", request_id="req-1")


def make_vendor(**overrides) -> Face2Vendor:
    fields = {"app_id": "APP-0001", "app_secret": "SECRET-0001", "endpoint": BASE + "/", **overrides}
    return Face2Vendor(Face2Credentials.model_validate(fields), Transport())


@pytest.fixture
def vendor() -> Face2Vendor:
    return make_vendor()


@pytest.fixture
def png() -> ImageRef:
    return ImageRef(image=load_bytes(base64.b64decode(PNG_B64)))


def build(vendor: Face2Vendor, op: Operation, png: ImageRef, ctx: CallContext):
    if op is Operation.DETECT:
        return vendor.build_detect(png, 5, ctx)
    if op is Operation.COMPARE:
        return vendor.build_compare(png, png, ctx)
    return vendor.build_features(png, ctx)


def reply(obj, status: int = 200) -> HttpResponse:
    body = obj if isinstance(obj, bytes) else json.dumps(obj, ensure_ascii=False).encode()
    return HttpResponse(status=status, headers={"Content-Type": "application/json"}, body=body)


def success(data: dict) -> dict:
    return {
        "appId": "APP-0001",
        "code": 0,
        "data": {**data, "msg": "success", "requestId": "202209281709289cfaac99b62c26f65346fe767c976c1a"},
        "encType": "plain",
        "signType": "plain",
        "success": True,
        "timestamp": 1662013631,
    }


def failure(code, msg: str = "错误") -> dict:
    return {"code": code, "data": {"msg": msg}, "encType": "plain", "signType": "plain", "success": False}


# --- registration and capabilities --------------------------------------------------------


def test_registered_with_its_capabilities():
    assert vendor_class("face2") is Face2Vendor
    assert Face2Vendor.id == "face2"
    assert Face2Vendor.name == "face2 API"
    assert Face2Vendor.operations == {Operation.DETECT, Operation.COMPARE, Operation.FEATURES}
    assert Face2Vendor.default_endpoint is None
    assert Face2Vendor.accepts_urls is False


def test_limits_are_2_mb_of_base64_in_jpeg_png_or_bmp():
    limits: ImageLimits = Face2Vendor.limits
    assert limits.formats == {"JPEG", "PNG", "BMP"}
    fits = Image(data=b"\xff\xd8\xff" + bytes(1_499_997), format="JPEG", width=100, height=100)
    too_big = Image(data=b"\xff\xd8\xff" + bytes(1_500_001), format="JPEG", width=100, height=100)
    assert len(fits.base64) == 2_000_000
    assert limits.fits(fits)
    assert not limits.fits(too_big)
    webp = Image(data=b"RIFF\x00\x00\x00\x00WEBP", format="WEBP", width=100, height=100)
    assert not limits.fits(webp)


def test_without_an_endpoint_face2_is_not_configured(png, ctx):
    vendor = Face2Vendor(Face2Credentials(app_id="a", app_secret="s"), Transport())
    with pytest.raises(errors.VendorNotConfigured):
        vendor.build_features(png, ctx)


# --- golden requests --------------------------------------------------------------------------


@pytest.mark.parametrize("op", list(GOLDEN), ids=lambda op: op.value)
def test_golden_request(vendor, png, ctx, op):
    path, text, body = GOLDEN[op]
    request = build(vendor, op, png, ctx)
    assert request.method == "POST"
    assert request.url == BASE + path
    assert dict(request.headers) == HEADERS
    assert request.body == body.encode("utf-8")
    # signData is base64 of the hex SHA-256 of the hand-written string, UTF-8.
    expected = base64.b64encode(hashlib.sha256(text.encode()).hexdigest().encode()).decode()
    assert json.loads(request.body)["signData"] == expected
    # A frozen context gives the same bytes every time.
    assert build(vendor, op, png, ctx).body == request.body


@pytest.mark.parametrize("op", list(GOLDEN), ids=lambda op: op.value)
def test_golden_request_sm2(png, ctx, op):
    vendor = make_vendor(sign_type="SM2", sm2_private_key=DOC_SM2_KEY)
    path, text, body = GOLDEN[op]
    request = build(vendor, op, png, ctx)
    assert request.url == BASE + path
    sent = json.loads(request.body)
    signature = sent.pop("signData")
    # SM2 signatures are randomised: everything but signData is golden, and
    # signData must verify over the doc's string under the key's public half.
    golden = json.loads(body)
    del golden["signData"]
    assert sent == {**golden, "signType": "SM2"}
    sm2_text = text.replace("signType=SHA256", "signType=SM2")
    assert signing.verify_sm2(sm2_text, signature, signing.sm2_public_key(DOC_SM2_KEY))
    assert len(base64.b64decode(signature)) == 64
    # The body is still sorted and compact around it.
    assert request.body == json.dumps({**sent, "signData": signature}, sort_keys=True, separators=(",", ":")).encode(
        "utf-8"
    )


def test_version_and_non_ascii_secrets_are_signed_as_given(png, ctx):
    vendor = make_vendor(version=2, app_secret="密钥")
    request = vendor.build_features(png, ctx)
    sent = json.loads(request.body)
    assert sent["version"] == "2"
    text = (
        f'appId=APP-0001&data={{"image":"{PNG_B64}"}}&encType=plain&signType=SHA256'
        "&timestamp=1714979289&version=2&key=密钥"
    )
    assert sent["signData"] == base64.b64encode(hashlib.sha256(text.encode()).hexdigest().encode()).decode()


def test_images_must_be_bytes(vendor, ctx):
    with pytest.raises(errors.InvalidRequest):
        vendor.build_features(ImageRef(url="https://example.com/a.jpg"), ctx)
    with pytest.raises(errors.InvalidRequest):
        vendor.build_features(ImageRef(face_token="tok"), ctx)


# --- success bodies ---------------------------------------------------------------------------


def test_locate_boxes_are_top_right_bottom_left(vendor, png, ctx):
    request = vendor.build_detect(png, 5, ctx)
    body = success({"face_num": 2, "locations": [[10, 110, 210, 30], [5.4, 50.6, 60, 0]]})
    outcome = vendor.parse_detect(reply(body), request, ctx)
    assert [(f.left, f.top, f.width, f.height) for f in outcome.faces] == [(30, 10, 80, 200), (0, 5, 51, 55)]
    assert outcome.vendor_request_id == "202209281709289cfaac99b62c26f65346fe767c976c1a"
    assert outcome.billed is True


def test_locate_with_no_faces(vendor, png, ctx):
    request = vendor.build_detect(png, 5, ctx)
    outcome = vendor.parse_detect(reply(success({"face_num": 0, "locations": []})), request, ctx)
    assert outcome.faces == []


def test_the_docs_locate_example_is_read_in_the_order_it_is_a_box_in(vendor, png, ctx):
    # The doc labels locations [top, right, bottom, left], yet its example is a box only
    # as [left, top, right, bottom] (read as labelled, right < left). It used to be
    # refused as VENDOR_BAD_RESPONSE; now the one valid reading is taken.
    body = success({"face_num": 2, "locations": [[1145, 364, 1335, 607], [764, 391, 947, 641]]})
    outcome = vendor.parse_detect(reply(body), vendor.build_detect(png, 5, ctx), ctx)
    assert [(f.left, f.top, f.width, f.height) for f in outcome.faces] == [(1145, 364, 190, 243), (764, 391, 183, 250)]


def _box_readings(out: str) -> dict[str, float]:
    """The Face2BoxReading counts written to stdout as CloudWatch EMF, by reading."""
    counts: dict[str, float] = {}
    for line in out.splitlines():
        emf = json.loads(line) if line.startswith("{") else {}
        if "Face2BoxReading" in emf:
            (dimensions,) = emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
            assert set(dimensions) == {"service", "reading"}  # the dimension stays on this metric
            counts[emf["reading"]] = counts.get(emf["reading"], 0) + sum(emf["Face2BoxReading"])
    return counts


@pytest.mark.parametrize(
    ("locations", "expected"),
    [
        ([[10, 110, 210, 30]], {"labelled": 1}),
        ([[1145, 364, 1335, 607], [764, 391, 947, 641]], {"example": 2}),
        ([[10, 110, 210, 30], [1145, 364, 1335, 607]], {"labelled": 1, "example": 1}),
        ([], {}),
    ],
    ids=["labelled", "example", "mixed", "no-faces"],
)
def test_the_box_reading_is_counted_as_a_metric(vendor, png, ctx, capsys, locations, expected):
    request = vendor.build_detect(png, 5, ctx)
    capsys.readouterr()
    vendor.parse_detect(reply(success({"face_num": len(locations), "locations": locations})), request, ctx)
    assert _box_readings(capsys.readouterr().out) == expected


@pytest.mark.parametrize(
    "locations",
    [
        None,
        "[]",
        [[1, 2, 3]],
        [[1, 2, 3, "4"]],
        [[10, 20, 10, 5]],
        [[10, 5, 20, 5]],
        [[1, 2, 3, True]],
        [[300, 200, 100, 50]],  # bottom above top as labelled, right left of left as the example
        [[10, 110, 210, 30], [300, 200, 100, 50]],  # one bad box spoils the answer
    ],
    ids=["missing", "string", "three", "text", "zero-height", "zero-width", "bool", "inverted-both", "one-bad"],
)
def test_malformed_locations_are_bad_responses(vendor, png, ctx, locations):
    body = success({"face_num": 1, "locations": locations})
    with pytest.raises(errors.VendorBadResponse):
        vendor.parse_detect(reply(body), vendor.build_detect(png, 1, ctx), ctx)


def test_verify_the_docs_example(vendor, png, ctx):
    body = success({"is_match": True, "score": 0.06643416019927911})
    outcome = vendor.parse_compare(reply(body), vendor.build_compare(png, png, ctx), ctx)
    assert outcome.vendor_score == 0.06643416019927911
    assert outcome.similarity == pytest.approx(1 - 0.06643416019927911 / 2)
    assert outcome.vendor_match is True
    assert outcome.thresholds == THRESHOLDS
    assert outcome.billed is True
    assert outcome.vendor_request_id == "202209281709289cfaac99b62c26f65346fe767c976c1a"
    assert decide(outcome, "normal") == ("match", 0.45)
    assert decide(outcome, "high") == ("match", 0.55)


def test_the_assumed_distance_scale_never_overrules_is_match_false(vendor, png, ctx):
    # Distance 1.0 → similarity 0.5: above low (0.40) and normal (0.45). It used to be
    # a match at low; the mapping is our assumption, so the vendor's "different" stands.
    request = vendor.build_compare(png, png, ctx)
    outcome = vendor.parse_compare(reply(success({"is_match": False, "score": 1.0})), request, ctx)
    assert outcome.similarity == 0.5
    assert decide(outcome, "normal") == ("no_match", 0.45)  # the vendor's word
    assert decide(outcome, "low") == ("no_match", 0.40)
    assert decide(outcome, "high") == ("no_match", 0.55)


@pytest.mark.parametrize(
    ("distance", "similarity"),
    [(0.0, 1.0), (0.066, 0.967), (0.9, 0.55), (1.1, 0.45), (1.2, 0.40), (2.0, 0.0), (3.5, 0.0)],
)
def test_distance_mapping(distance, similarity):
    assert similarity_from_distance(distance) == pytest.approx(similarity)


def test_distance_mapping_is_monotone_decreasing_over_the_unit_vector_range():
    values = [similarity_from_distance(d / 100) for d in range(201)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert (values[0], values[-1]) == (1.0, 0.0)


def test_thresholds_ascend_and_match_their_distances():
    assert THRESHOLDS["low"] < THRESHOLDS["normal"] < THRESHOLDS["high"]
    assert [similarity_from_distance(d) for d in (1.2, 1.1, 0.9)] == pytest.approx(
        [THRESHOLDS["low"], THRESHOLDS["normal"], THRESHOLDS["high"]]
    )


@pytest.mark.parametrize(
    "data",
    [
        {"is_match": True},
        {"score": -0.1},
        {"score": "0.5"},
        {"score": True},
        {"score": 0.5, "is_match": "yes"},
    ],
    ids=["no-score", "negative", "string", "bool", "is-match-string"],
)
def test_malformed_verify_answers_are_bad_responses(vendor, png, ctx, data):
    with pytest.raises(errors.VendorBadResponse):
        vendor.parse_compare(reply(success(data)), vendor.build_compare(png, png, ctx), ctx)


def test_verify_without_is_match_falls_back_to_thresholds(vendor, png, ctx):
    outcome = vendor.parse_compare(reply(success({"score": 0.2})), vendor.build_compare(png, png, ctx), ctx)
    assert outcome.vendor_match is None
    assert decide(outcome, "normal") == ("match", 0.45)


def test_features_are_512_floats(vendor, png, ctx):
    features = [0.053627726, -0.040755205, 0.029853795, 0.038380787, -0.03890704] + [0] * 507
    outcome = vendor.parse_features(reply(success({"features": features})), vendor.build_features(png, ctx), ctx)
    assert len(outcome.embedding) == 512
    assert outcome.embedding[:2] == [0.053627726, -0.040755205]
    assert all(isinstance(x, float) for x in outcome.embedding)
    assert outcome.model == MODEL == "face2-arcface-512"
    assert outcome.billed is True


@pytest.mark.parametrize(
    "features",
    [None, [0.1] * 511, [0.1] * 513, [0.1] * 511 + ["x"], [0.1] * 511 + [None]],
    ids=["missing", "511", "513", "text", "null"],
)
def test_malformed_features_are_bad_responses(vendor, png, ctx, features):
    with pytest.raises(errors.VendorBadResponse):
        vendor.parse_features(reply(success({"features": features})), vendor.build_features(png, ctx), ctx)


# --- every documented code ------------------------------------------------------------------


DOCUMENTED = {
    "9001": errors.VendorRejected,
    "9002": errors.ImageTooLarge,
    "9901": errors.InvalidImage,
    "9800": errors.VendorAuthFailed,
    "9801": errors.VendorAuthFailed,
    "9802": errors.VendorAuthFailed,
}


def test_the_code_table_is_exactly_the_documented_codes():
    assert {code: entry.error for code, entry in CODES.items()} == DOCUMENTED


@pytest.mark.parametrize("op", list(GOLDEN), ids=lambda op: op.value)
@pytest.mark.parametrize(("code", "cls"), list(DOCUMENTED.items()))
@pytest.mark.parametrize("as_text", [False, True], ids=["int", "str"])
def test_every_documented_code(vendor, png, ctx, op, code, cls, as_text):
    request = build(vendor, op, png, ctx)
    body = failure(code if as_text else int(code), "厂商说明")
    with pytest.raises(errors.FacegateError) as e:
        getattr(vendor, f"parse_{op.value}")(reply(body), request, ctx)
    assert type(e.value) is cls
    assert (e.value.vendor, e.value.vendor_code, e.value.vendor_message) == ("face2", code, "厂商说明")
    assert e.value.billed is False


def test_clock_skew_says_so(vendor, png, ctx):
    with pytest.raises(errors.VendorAuthFailed, match="clock") as e:
        vendor.parse_features(reply(failure(9802, "调用时间错误")), vendor.build_features(png, ctx), ctx)
    assert e.value.vendor_code == "9802"


def test_the_message_falls_back_to_top_level_msg_and_is_bounded(vendor, png, ctx):
    body = {"code": 9001, "msg": "缺少参数" + "x" * 500}
    with pytest.raises(errors.VendorRejected) as e:
        vendor.parse_features(reply(body), vendor.build_features(png, ctx), ctx)
    assert e.value.vendor_message.startswith("缺少参数")
    assert len(e.value.vendor_message) == 200
    assert "x" * 300 not in e.value.message


def test_an_undocumented_code_is_a_vendor_error_of_unknown_billing(vendor, png, ctx):
    with pytest.raises(errors.VendorError) as e:
        vendor.parse_features(reply(failure(9999, "系统繁忙")), vendor.build_features(png, ctx), ctx)
    assert type(e.value) is errors.VendorError
    assert (e.value.vendor_code, e.value.vendor_message, e.value.billed) == ("9999", "系统繁忙", None)


# --- transport-level answers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "cls", "vendor_code"),
    [
        (429, b"", errors.VendorRateLimited, "429"),
        (402, {"code": 402, "msg": "quota exhausted"}, errors.VendorQuotaExhausted, "402"),
        (401, b'{"error":"unauthorized"}', errors.VendorAuthFailed, "401"),
        (403, b'{"error":"forbidden"}', errors.VendorAuthFailed, "403"),
        (500, b"<html>oops</html>", errors.VendorUnavailable, "500"),
        (503, {"code": 503, "msg": "busy"}, errors.VendorUnavailable, "503"),
        (404, b'{"status":404}', errors.VendorRejected, "404"),
        (200, b"<html>proxy page</html>", errors.VendorBadResponse, None),
        (200, b'{"code": 0, "data": {"trunc', errors.VendorBadResponse, None),
        (200, b"[1, 2]", errors.VendorBadResponse, None),
        (200, b'{"data": {"msg": "success"}}', errors.VendorBadResponse, None),
        (200, b'{"code": 0, "data": null}', errors.VendorBadResponse, None),
    ],
    ids=[
        "429",
        "402-quota",
        "401",
        "403",
        "500-html",
        "503-json",
        "404",
        "200-html",
        "truncated",
        "array",
        "no-code",
        "no-data",
    ],
)
def test_http_level_answers(vendor, png, ctx, status, body, cls, vendor_code):
    with pytest.raises(errors.FacegateError) as e:
        vendor.parse_features(reply(body, status), vendor.build_features(png, ctx), ctx)
    assert type(e.value) is cls
    assert e.value.vendor == "face2"
    assert e.value.vendor_code == vendor_code


def test_a_documented_code_wins_over_the_http_status(vendor, png, ctx):
    with pytest.raises(errors.ImageTooLarge):
        vendor.parse_features(reply(failure(9002), 400), vendor.build_features(png, ctx), ctx)


# --- response signatures ------------------------------------------------------------------------


SECRET = "SECRET-0001"


def signed_sha256(body: dict, secret: str = SECRET, *, raw_data: str | None = None) -> bytes:
    """A SHA256-signed response, signed here with hashlib from the doc's rules."""
    body = {**body, "signType": "SHA256"}
    data_text = raw_data or json.dumps(body["data"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    parts = []
    for key in sorted(body):
        value = body[key]
        text = data_text if key == "data" else (value if isinstance(value, str) else json.dumps(value))
        parts.append(f"{key}={text}")
    string = "&".join([*parts, f"key={secret}"])
    body["signData"] = base64.b64encode(hashlib.sha256(string.encode()).hexdigest().encode()).decode()
    text = json.dumps(body, ensure_ascii=False)
    if raw_data is not None:
        text = text.replace(json.dumps(body["data"], ensure_ascii=False), raw_data)
    return text.encode()


def test_a_sha256_signed_response_is_verified(vendor, png, ctx):
    body = signed_sha256(success({"is_match": True, "score": 0.25}))
    outcome = vendor.parse_compare(reply(body), vendor.build_compare(png, png, ctx), ctx)
    assert outcome.vendor_score == 0.25


def test_a_signed_response_keeps_numbers_as_the_vendor_wrote_them(vendor, png, ctx):
    # Java writes 1.0E-5; re-serialising Python's float would write 1e-05 and fail.
    data = (
        '{"is_match":true,"msg":"success","requestId":"202209281709289cfaac99b62c26f65346fe767c976c1a","score":1.0E-5}'
    )
    body = signed_sha256(success({"is_match": True, "score": 1.0e-5}), raw_data=data)
    assert b"1.0E-5" in body
    outcome = vendor.parse_compare(reply(body), vendor.build_compare(png, png, ctx), ctx)
    assert outcome.vendor_score == 1.0e-5


def test_a_signed_error_response_is_verified_before_its_code_is_read(vendor, png, ctx):
    body = signed_sha256(failure(9901, "base64编码异常"))
    with pytest.raises(errors.InvalidImage):
        vendor.parse_features(reply(body), vendor.build_features(png, ctx), ctx)
    forged = signed_sha256(failure(9901, "base64编码异常"), secret="someone-else")
    with pytest.raises(errors.VendorBadResponse, match="does not verify"):
        vendor.parse_features(reply(forged), vendor.build_features(png, ctx), ctx)


def test_a_tampered_signed_response_is_refused(vendor, png, ctx):
    body = json.loads(signed_sha256(success({"is_match": False, "score": 1.5})))
    body["data"]["is_match"] = True
    with pytest.raises(errors.VendorBadResponse, match="does not verify") as e:
        vendor.parse_compare(reply(body), vendor.build_compare(png, png, ctx), ctx)
    assert e.value.billed is None


@pytest.mark.parametrize(
    "change",
    [{"signType": "SHA256"}, {"signType": "SHA256", "signData": ""}, {"signType": "RSA", "signData": "x"}],
    ids=["sha256-without-signdata", "empty-signdata", "unknown-signtype"],
)
def test_a_claimed_but_uncheckable_signature_is_refused(vendor, png, ctx, change):
    body = {**success({"features": [0.0] * 512}), **change}
    with pytest.raises(errors.VendorBadResponse):
        vendor.parse_features(reply(body), vendor.build_features(png, ctx), ctx)


def test_sm2_signed_responses_need_the_vendors_public_key(png, ctx):
    vendor_key = DOC_SM2_KEY  # stands in for face2's own key
    body = {**success({"is_match": True, "score": 0.5}), "signType": "SM2"}
    body["signData"] = signing.sign_sm2(signing.string_to_sign(body, "SECRET-0001"), vendor_key)
    without = make_vendor()
    with pytest.raises(errors.VendorBadResponse, match="sm2_vendor_public_key"):
        without.parse_compare(reply(body), without.build_compare(png, png, ctx), ctx)
    public = signing.sm2_public_key(vendor_key)
    with_key = make_vendor(sm2_vendor_public_key=public)
    assert with_key.parse_compare(reply(body), with_key.build_compare(png, png, ctx), ctx).similarity == 0.75
    body["data"]["score"] = 0.1
    with pytest.raises(errors.VendorBadResponse, match="does not verify"):
        with_key.parse_compare(reply(body), with_key.build_compare(png, png, ctx), ctx)


# --- credentials ------------------------------------------------------------------------------


def test_credentials_defaults():
    creds = Face2Credentials(app_id="a", app_secret="TOPSECRET")
    assert (creds.sign_type, creds.version, creds.sm2_private_key, creds.endpoint) == (
        "SHA256",
        "1",
        None,
        None,
    )
    assert "TOPSECRET" not in repr(creds)


def test_sm2_needs_a_private_key():
    with pytest.raises(ValidationError) as e:
        Face2Credentials(app_id="a", app_secret="s", sign_type="SM2")
    assert [err["loc"] for err in e.value.errors()] == [("sm2_private_key",)]


def test_a_bad_sm2_private_key_is_refused_naming_the_field():
    bad = base64.b64encode(bytes(32)).decode()
    with pytest.raises(ValidationError) as e:
        Face2Credentials(app_id="a", app_secret="s", sign_type="SM2", sm2_private_key=bad)
    assert [err["loc"] for err in e.value.errors()] == [("sm2_private_key",)]
    assert bad not in str(e.value)


def test_sign_type_is_case_insensitive_and_closed():
    creds = Face2Credentials(app_id="a", app_secret="s", sign_type="sm2", sm2_private_key=DOC_SM2_KEY)
    assert creds.sign_type == "SM2"
    with pytest.raises(ValidationError):
        Face2Credentials(app_id="a", app_secret="s", sign_type="MD5")


def test_a_bad_vendor_public_key_is_refused():
    with pytest.raises(ValidationError) as e:
        Face2Credentials(app_id="a", app_secret="s", sm2_vendor_public_key="04" + "00" * 64)
    assert [err["loc"] for err in e.value.errors()] == [("sm2_vendor_public_key",)]
