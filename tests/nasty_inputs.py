"""A corpus of nasty requests for every route: broken bodies, encodings, numbers,
unicode, sizes, duplicate keys, wrong types, paths, methods, headers and content
types. Each one is refused with the contract's error shape and a 4xx, and calls no
vendor; ``tests/integration/test_nasty_inputs.py`` sends them to the handlers
in-process, ``tests/e2e/test_nasty_inputs.py`` to ``make run`` over HTTP.

Plain data: a request as it goes on the wire (method, the raw request target with
its percent-encoding, headers, body bytes) and the answer it must get. The API
key is added by the runner unless ``api_key`` is False."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from functools import cache

JSON = (("Content-Type", "application/json"),)


@dataclass(frozen=True)
class Nasty:
    id: str
    method: str
    target: str
    body: bytes = b""
    status: int = 400
    code: str = "INVALID_REQUEST"
    headers: tuple[tuple[str, str], ...] = JSON
    api_key: bool = True


@cache
def png_b64() -> str:
    """A small, valid, faceless PNG: bodies that would pass if not for the one nasty part."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 80, 40)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _compare(**over: object) -> dict:
    body: dict = {"image1": {"base64": png_b64()}, "image2": {"base64": png_b64()}}
    body.update(over)
    return body


def _image_only(**over: object) -> dict:
    body: dict = {"image": {"base64": png_b64()}}
    body.update(over)
    return body


def _identity(**over: object) -> dict:
    body: dict = {"name": "张三", "id_number": "11010519491231002X", "image": {"base64": png_b64()}}
    body.update(over)
    return body


def _splice(obj: dict, marker: str, raw: str) -> bytes:
    """``obj`` as JSON with the string ``"<marker>"`` replaced by raw JSON text."""
    return json.dumps(obj).replace(json.dumps(marker), raw).encode()


IMG = '{"base64": "%s"}'
DEEP = 100_000


def _cases() -> list[Nasty]:
    img = IMG % png_b64()
    c: list[Nasty] = []
    add = c.append
    post_routes = (
        ("compare", "/v1/compare", _compare, "image1"),
        ("detect", "/v1/detect", _image_only, "image"),
        ("features", "/v1/features", _image_only, "image"),
        ("verify", "/v1/verify-identity", _identity, "image"),
    )

    # --- bodies that are not JSON, or not JSON we take, on every POST route ----------------
    for op, path, good, image in post_routes:
        add(Nasty(f"{op}-deep-array", "POST", path, b'{"x": ' + b"[" * DEEP + b"]" * DEEP + b"}"))
        add(Nasty(f"{op}-deep-object", "POST", path, b'{"a":' * DEEP + b"1" + b"}" * DEEP))
        add(Nasty(f"{op}-deep-options", "POST", path, _splice(good(options={"local": "X"}), "X", "[" * 50 + "]" * 50)))
        add(Nasty(f"{op}-5000-digit-int", "POST", path, _splice(good(x="N"), "N", "9" * 5000)))
        add(Nasty(f"{op}-utf16-body", "POST", path, json.dumps(good()).encode("utf-16"), code="MALFORMED_JSON"))
        add(Nasty(f"{op}-latin1-body", "POST", path, b'{"name": "Jos\xe9"}', code="MALFORMED_JSON"))
        add(Nasty(f"{op}-empty-body", "POST", path, b""))
        add(Nasty(f"{op}-whitespace-body", "POST", path, b" \n\t ", code="MALFORMED_JSON"))
        add(Nasty(f"{op}-json-list", "POST", path, b"[]"))
        add(Nasty(f"{op}-json-null", "POST", path, b"null"))
        add(Nasty(f"{op}-json-string", "POST", path, b'"hello"'))
        add(Nasty(f"{op}-nan", "POST", path, b'{"x": NaN}', code="MALFORMED_JSON"))
        add(Nasty(f"{op}-duplicate-key", "POST", path, b'{"options": {}, "options": {}}'))
        add(Nasty(f"{op}-lone-surrogate", "POST", path, _splice(good(vendor="X"), "X", r'"\ud800"')))
        add(
            Nasty(
                f"{op}-charset-utf16",
                "POST",
                path,
                _j(good()),
                status=415,
                code="UNSUPPORTED_MEDIA_TYPE",
                headers=(("Content-Type", "application/json; charset=utf-16"),),
            )
        )
        add(
            Nasty(
                f"{op}-form-urlencoded",
                "POST",
                path,
                b"image1=abc&image2=def",
                status=415,
                code="UNSUPPORTED_MEDIA_TYPE",
                headers=(("Content-Type", "application/x-www-form-urlencoded"),),
            )
        )
        add(
            Nasty(
                f"{op}-gzip",
                "POST",
                path,
                b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xab\xae\x05\x00C\xbf\xa6\xa3\x02\x00\x00\x00",
                status=415,
                code="UNSUPPORTED_MEDIA_TYPE",
                headers=(*JSON, ("Content-Encoding", "gzip")),
            )
        )
        add(Nasty(f"{op}-image-base64-number", "POST", path, _j(good(**{image: {"base64": 5}}))))

    # --- more encodings and JSON corners (compare) ---------------------------------------------
    compare = _compare()
    more = [
        ("utf8-bom", b"\xef\xbb\xbf" + _j(compare), "MALFORMED_JSON"),
        ("utf16-le-no-bom", json.dumps(compare).encode("utf-16-le"), "MALFORMED_JSON"),
        ("utf32", json.dumps(compare).encode("utf-32"), "MALFORMED_JSON"),
        ("overlong-utf8", b'{"vendor": "\xc0\xaf"}', "MALFORMED_JSON"),
        ("encoded-surrogate-bytes", b'{"vendor": "\xed\xa0\x80"}', "MALFORMED_JSON"),
        ("truncated-utf8", b'{"vendor": "\xe5\xbc"}', "MALFORMED_JSON"),
        ("raw-nul-in-string", b'{"vendor": "a\x00b"}', "MALFORMED_JSON"),
        ("raw-nul-outside-string", b'{"vendor": "local"}\x00', "MALFORMED_JSON"),
        ("trailing-garbage", _j(compare) + b" x", "MALFORMED_JSON"),
        ("two-objects", b"{}{}", "MALFORMED_JSON"),
        ("infinity", b'{"x": Infinity}', "MALFORMED_JSON"),
        ("minus-infinity", b'{"x": -Infinity}', "MALFORMED_JSON"),
        ("truncated", _j(compare)[:-20], "MALFORMED_JSON"),
        ("single-quotes", b"{'image1': 1}", "MALFORMED_JSON"),
        ("huge-exponent", _splice(compare, "image1", '"x": 1e999, "image1"'), "INVALID_REQUEST"),
        ("huge-negative-int", _splice(compare, "image1", '"x": -' + "1" * 5000 + ', "image1"'), "INVALID_REQUEST"),
        ("json-number", b"42", "INVALID_REQUEST"),
        ("json-true", b"true", "INVALID_REQUEST"),
        ("duplicate-image1", _splice(compare, "image1", f'"image1": {img}, "image1"'), "INVALID_REQUEST"),
        (
            "duplicate-key-nested",
            _splice(compare, "image1", f'"image1": {{"base64": "{png_b64()}", "base64": "AAAA"}}, "x"'),
            "INVALID_REQUEST",
        ),
        ("lone-low-surrogate-key", _splice(compare, "image1", r'"\udc00": 1, "image1"'), "INVALID_REQUEST"),
        ("reversed-surrogates", _j(_compare(vendor="X")).replace(b'"X"', rb'"\udc00\ud800"'), "INVALID_REQUEST"),
        ("escaped-nul-in-vendor", _j(_compare(vendor="local\x00")), "INVALID_REQUEST"),
        ("escaped-nul-key", _j({**compare, "\x00": 1}), "INVALID_REQUEST"),
        ("rtl-mark-in-vendor", _j(_compare(vendor="\u200flocal")), "INVALID_REQUEST"),
        ("rlo-in-fallback", _j(_compare(fallback=["shuxun\u202e"])), "INVALID_REQUEST"),
        ("huge-key", _j({**compare, "k" * 100_000: 1}), "INVALID_REQUEST"),
        ("vendor-number", _j(_compare(vendor=5)), "INVALID_REQUEST"),
        ("vendor-list", _j(_compare(vendor=["local"])), "INVALID_REQUEST"),
        ("security-level-number", _j(_compare(security_level=1)), "INVALID_REQUEST"),
        ("fallback-string", _j(_compare(fallback="shuxun")), "INVALID_REQUEST"),
        ("options-number", _j(_compare(options=5)), "INVALID_REQUEST"),
        ("consensus-string", _j(_compare(consensus="all")), "INVALID_REQUEST"),
        ("base64-list", _j(_compare(image1={"base64": ["a"]})), "INVALID_REQUEST"),
        ("base64-object", _j(_compare(image1={"base64": {"$ne": 1}})), "INVALID_REQUEST"),
        ("base64-bool", _j(_compare(image1={"base64": True})), "INVALID_REQUEST"),
        ("base64-null", _j(_compare(image1={"base64": None})), "INVALID_REQUEST"),
        ("url-number", _j(_compare(image1={"url": 5})), "INVALID_REQUEST"),
        ("url-javascript", _j(_compare(image1={"url": "javascript:alert(1)"})), "INVALID_REQUEST"),
        ("s3-string", _j(_compare(image1={"s3": "bucket/key"})), "INVALID_REQUEST"),
        ("s3-bucket-traversal", _j(_compare(image1={"s3": {"bucket": "a/../b", "key": "k.jpg"}})), "INVALID_REQUEST"),
        ("s3-bucket-nul", _j(_compare(image1={"s3": {"bucket": "abc\x00", "key": "k.jpg"}})), "INVALID_REQUEST"),
        ("s3-key-number", _j(_compare(image1={"s3": {"bucket": "abc", "key": 5}})), "INVALID_REQUEST"),
        ("image-number", _j(_compare(image1=5)), "INVALID_REQUEST"),
        ("image-null", _j(_compare(image1=None)), "INVALID_REQUEST"),
    ]
    for name, body, code in more:
        add(Nasty(f"compare-{name}", "POST", "/v1/compare", body, code=code))

    # --- numbers where max_faces wants a small int (detect) --------------------------------------
    for name, raw, code in [
        ("1.5", "1.5", "INVALID_REQUEST"),
        ("1e308", "1e308", "INVALID_REQUEST"),
        ("-1e308", "-1e308", "INVALID_REQUEST"),
        ("1e999", "1e999", "INVALID_REQUEST"),
        ("NaN", "NaN", "MALFORMED_JSON"),
        ("string", '"ten"', "INVALID_REQUEST"),
        ("zero", "0", "INVALID_REQUEST"),
        ("huge-int", "9" * 400, "INVALID_REQUEST"),
        ("list", "[1]", "INVALID_REQUEST"),
    ]:
        add(
            Nasty(
                f"detect-max-faces-{name}",
                "POST",
                "/v1/detect",
                _splice(_image_only(max_faces="M"), "M", raw),
                code=code,
            )
        )

    # --- identity fields (verify-identity) ----------------------------------------------------
    for name, over, status, code in [
        ("name-nul", {"name": "张\x00三"}, 400, "INVALID_REQUEST"),
        ("name-rtl-mark", {"name": "\u200f张三"}, 422, "INVALID_NAME"),
        ("name-rlo", {"name": "张\u202e三"}, 422, "INVALID_NAME"),
        ("name-too-long", {"name": "张" * 10_000}, 400, "INVALID_REQUEST"),
        ("name-number", {"name": 12}, 400, "INVALID_REQUEST"),
        ("id-number-int", {"id_number": 110105194912310021}, 400, "INVALID_REQUEST"),
        ("id-number-nul", {"id_number": "11010519491231002\x00"}, 400, "INVALID_REQUEST"),
        ("id-number-rtl-mark", {"id_number": "\u200f11010519491231002X"}, 422, "INVALID_ID_NUMBER"),
        ("id-number-too-long", {"id_number": "1" * 5000}, 400, "INVALID_REQUEST"),
        ("vendor-not-jumei", {"vendor": "local"}, 400, "UNSUPPORTED_OPERATION"),
    ]:
        add(Nasty(f"verify-{name}", "POST", "/v1/verify-identity", _j(_identity(**over)), status=status, code=code))

    # --- headers ----------------------------------------------------------------------------------
    body = _j(_compare(image1={"base64": "@@@"}))  # the header must be refused before this would be
    for name, headers, status, code in [
        ("text-plain", (("Content-Type", "text/plain"),), 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("multipart", (("Content-Type", "multipart/form-data; boundary=x"),), 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("json-suffix-lookalike", (("Content-Type", "application/jsonp"),), 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("charset-latin1", (("Content-Type", "application/json; charset=iso-8859-1"),), 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("content-encoding-br", (*JSON, ("Content-Encoding", "br")), 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("idempotency-key-huge", (*JSON, ("Idempotency-Key", "k" * 8000)), 400, "INVALID_REQUEST"),
        ("idempotency-key-spaces", (*JSON, ("Idempotency-Key", "a b")), 400, "INVALID_REQUEST"),
        ("idempotency-key-latin1", (*JSON, ("Idempotency-Key", "clé")), 400, "INVALID_REQUEST"),
    ]:
        add(Nasty(f"compare-header-{name}", "POST", "/v1/compare", body, status=status, code=code, headers=headers))
    # Content-Type variants that are JSON: the body's own mistake is what gets reported.
    for name, value in [
        ("charset-upper", "application/json;charset=UTF-8"),
        ("upper-case-type", "APPLICATION/JSON"),
        ("missing", None),
    ]:
        headers = () if value is None else (("Content-Type", value),)
        add(Nasty(f"compare-header-{name}", "POST", "/v1/compare", body, 422, "INVALID_IMAGE", headers=headers))
    add(Nasty("compare-no-api-key", "POST", "/v1/compare", body, 403, "FORBIDDEN", api_key=False))

    # --- paths and methods --------------------------------------------------------------------
    for name, target, status, code in [
        ("results-nul", "/v1/results/%00", 404, "NOT_FOUND"),
        ("results-long", "/v1/results/" + "a" * 8000, 404, "NOT_FOUND"),
        ("results-encoded-slash", "/v1/results/..%2F..%2Fetc%2Fpasswd", 404, "NOT_FOUND"),
        ("results-encoded-surrogate", "/v1/results/%ED%A0%80", 404, "NOT_FOUND"),
        ("results-invalid-utf8", "/v1/results/%FF%FE", 404, "NOT_FOUND"),
        ("results-rtl", "/v1/results/%E2%80%8F" + "0" * 26, 404, "NOT_FOUND"),
        ("results-percent-junk", "/v1/results/%zz%", 404, "NOT_FOUND"),
        ("batches-nul", "/v1/batches/%00", 404, "NOT_FOUND"),
        ("batches-long", "/v1/batches/" + "b" * 8000, 404, "NOT_FOUND"),
        ("batches-encoded-slash", "/v1/batches/a%2Fb", 404, "NOT_FOUND"),
        ("batches-invalid-utf8", "/v1/batches/%C0%AF", 404, "NOT_FOUND"),
        ("batches-rtl", "/v1/batches/%E2%80%AEmanifest", 404, "NOT_FOUND"),
        ("unknown-route", "/v1/nothing", 404, "NOT_FOUND"),
        ("long-unknown-route", "/v1/" + "x" * 8000, 404, "NOT_FOUND"),
        ("vendors-trailing-junk", "/v1/vendors/%00", 404, "NOT_FOUND"),
    ]:
        add(Nasty(f"path-{name}", "GET", target, status=status, code=code))
    for method, target in [
        ("GET", "/v1/compare"),
        ("PUT", "/v1/detect"),
        ("DELETE", "/v1/features"),
        ("PATCH", "/v1/verify-identity"),
        ("POST", "/v1/vendors"),
        ("POST", "/v1/results/" + "0" * 26),
        ("PUT", "/v1/batches/abc"),
        ("OPTIONS", "/v1/compare"),
        ("TRACE", "/v1/vendors"),
        ("FOO", "/v1/compare"),
    ]:
        add(Nasty(f"method-{method}-{target[4:12]}", method, target, status=405, code="METHOD_NOT_ALLOWED"))

    # --- sizes -------------------------------------------------------------------------------------
    add(
        Nasty(
            "compare-body-over-limit",
            "POST",
            "/v1/compare",
            b"{" + b" " * (10 * 1024 * 1024) + b"}",
            413,
            "IMAGE_TOO_LARGE",
        )
    )
    return c


CASES: list[Nasty] = _cases()
