"""Shuxun (数勋) face compare, played on loopback.

Written from the vendor's doc alone (``POST /v1/faceCompare/check``), never from
facegate's adapter:

* headers ``appKey`` (must be the known key), ``timestamp`` (Unix ms) and ``sign`` =
  lowercase hex ``sha256(appKey + timestamp + appSecret)`` over UTF-8;
* ``Content-Type: application/x-www-form-urlencoded``;
* exactly two images, each one of ``image1``/``imgUrl1`` and ``image2``/``imgUrl2``;
  empty fields count as absent (the doc's own samples send all four, unused ones empty);
* each base64 image must decode, look like an image by its magic bytes, and be at most
  1 MB ("不超过1mb").

Assumptions the doc does not settle, made strict so that an adapter that passes here
passes at the vendor too:

* ``timestamp`` must be within ±5 minutes of the sandbox's clock (the doc names no
  window); outside it, like any auth failure, the answer is code 4 签名错误.
* "1mb" is taken as 1,000,000 bytes of base64 text, the smallest reading.
* duplicated or unknown form fields are a parameter error (code 1).
* a failed image check is ``code 0`` with ``result 3`` (比对失败) and ``isFee 0``.

The sandbox cannot fetch URLs: an ``imgUrlN`` with an http(s) scheme and a host is
scored like any other image, and billed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import string
import time
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from facegate_local.sandboxes.base import Headers, Sandbox, SandboxRequest, SandboxResponse

PATH = "/v1/faceCompare/check"
TIMESTAMP_WINDOW_MS = 5 * 60 * 1000
MAX_IMAGE_FIELD_BYTES = 1_000_000
FIELDS = (("image1", "imgUrl1"), ("image2", "imgUrl2"))

# "常用图片格式都支持": the common formats, recognised by their first bytes.
_MAGIC = (
    (b"\xff\xd8\xff", 0),  # JPEG
    (b"\x89PNG\r\n\x1a\n", 0),  # PNG
    (b"BM", 0),  # BMP
    (b"GIF8", 0),  # GIF
    (b"WEBP", 8),  # WebP (after "RIFF....")
)

MSG_OK = "成功"
MSG_PARAMS = "参数错误"
MSG_TWO_IMAGES = "必须上传2张人脸照片"
MSG_SIGN = "签名错误"
DESC_OK = "比对成功,有数据"
DESC_FAILED = "比对失败,无法正确解析、未按要求传入参数、下载图片超时"

# The doc's example thresholds.
DEFAULT_THRESHOLDS: Mapping[str, float] = {"threshold1": 62.327, "threshold2": 69.101, "threshold3": 73.975}

_SEQ_ALPHABET = string.ascii_lowercase + string.digits  # like the doc's "9hi5fht958638y0egkjpo8udjs76vgwx"


class ShuxunSandbox(Sandbox):
    vendor: ClassVar[str] = "shuxun"

    @classmethod
    def default_credentials(cls) -> dict[str, str]:
        return {"app_key": "sandbox-shuxun-app-key", "app_secret": "sandbox-shuxun-app-secret"}  # fake  # nosec B105

    def __init__(
        self,
        credentials: Mapping[str, str] | None = None,
        *,
        score: float = 93.1,
        thresholds: Mapping[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        creds = dict(credentials if credentials is not None else self.default_credentials())
        self.app_key: str = creds["app_key"]
        self.app_secret: str = creds["app_secret"]
        self.score = score  # the confidence for two different images
        self.thresholds = dict(thresholds if thresholds is not None else DEFAULT_THRESHOLDS)

    # --- the vendor --------------------------------------------------------------------

    def handle(self, req: SandboxRequest) -> SandboxResponse:
        if req.path != PATH:
            self.reject(f"unknown path {req.path}")
            return SandboxResponse(status=404, body=b"Not Found", headers={"Content-Type": "text/plain"})
        if req.method != "POST":
            self.reject(f"method {req.method} is not POST")
            return SandboxResponse(status=405, body=b"Method Not Allowed", headers={"Content-Type": "text/plain"})

        why = self._auth_problem(req.headers)
        if why is not None:
            self.reject(why)
            return _error("4", MSG_SIGN)

        media_type = (req.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if media_type != "application/x-www-form-urlencoded":
            self.reject(f"content type {media_type or 'missing'} is not application/x-www-form-urlencoded")
            return _error("1", MSG_PARAMS)

        try:
            parsed = parse_qs(req.body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(req.body))
        except (UnicodeDecodeError, ValueError):
            self.reject("the body is not a form")
            return _error("1", MSG_PARAMS)
        known = {name for pair in FIELDS for name in pair}
        unknown = sorted(set(parsed) - known)
        if unknown:
            self.reject(f"unknown fields {unknown}")
            return _error("1", MSG_PARAMS)
        duplicated = sorted(k for k, v in parsed.items() if len(v) > 1)
        if duplicated:
            self.reject(f"duplicated fields {duplicated}")
            return _error("1", MSG_PARAMS)
        form = {k: v[0] for k, v in parsed.items() if v[0] != ""}

        images: list[tuple[str, str]] = []  # (field, value)
        for b64_field, url_field in FIELDS:
            given = [f for f in (b64_field, url_field) if f in form]
            if len(given) != 1:
                self.reject(f"need exactly one of {b64_field}/{url_field}, got {len(given)}")
                return _error("1", MSG_TWO_IMAGES)
            images.append((given[0], form[given[0]]))

        contents: list[bytes] = []
        for field_name, value in images:
            content, why = _check_url(value) if field_name.startswith("imgUrl") else _check_base64(value)
            if why is not None:
                self.reject(f"{field_name}: {why}")
                return _compare_failed()
            contents.append(content)

        confidence = 100.0 if contents[0] == contents[1] else float(self.score)
        return SandboxResponse.json(
            {
                "code": "0",
                "msg": MSG_OK,
                "isFee": 1,
                "seqNo": "".join(secrets.choice(_SEQ_ALPHABET) for _ in range(32)),
                "data": {
                    "result": 1,
                    "resultDesc": DESC_OK,
                    "confidence": confidence,
                    "threshold": dict(self.thresholds),
                },
            },
            billed=True,
        )

    def fault_response(self, fault: str, req: SandboxRequest) -> SandboxResponse:
        if fault == "rate_limit":
            return _error("6", "调用频率超限")
        if fault == "quota":
            return _error("5", "余额不足")
        if fault == "auth":
            # 10 rather than 4, so a test can tell an injected fault from a real signature error.
            return _error("10", "ip不在白名单")
        raise ValueError(f"no shuxun body for fault {fault!r}")

    # --- checks --------------------------------------------------------------------------

    def _auth_problem(self, headers: Headers) -> str | None:
        app_key = headers.get("appKey")
        timestamp = headers.get("timestamp")
        sign = headers.get("sign")
        if not app_key or not timestamp or not sign:
            missing = [n for n, v in (("appKey", app_key), ("timestamp", timestamp), ("sign", sign)) if not v]
            return f"missing headers {missing}"
        if not hmac.compare_digest(app_key.encode(), self.app_key.encode()):
            return "unknown appKey"
        if not (timestamp.isascii() and timestamp.isdigit()):
            return "timestamp is not Unix milliseconds"
        skew = int(timestamp) - int(time.time() * 1000)
        if abs(skew) > TIMESTAMP_WINDOW_MS:
            return f"timestamp is {skew // 1000} s off, outside the ±{TIMESTAMP_WINDOW_MS // 1000} s window"
        expected = hashlib.sha256(f"{app_key}{timestamp}{self.app_secret}".encode()).hexdigest()
        if not hmac.compare_digest(sign.encode(), expected.encode()):
            return "sign does not match sha256(appKey+timestamp+appSecret)"
        return None


def _check_base64(value: str) -> tuple[bytes, str | None]:
    if len(value) > MAX_IMAGE_FIELD_BYTES:
        return b"", f"base64 is {len(value)} bytes, over 1 MB"
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b"", "not valid base64"
    if not _looks_like_image(data):
        return b"", "not an image"
    return data, None


def _looks_like_image(data: bytes) -> bool:
    for magic, offset in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return magic != b"WEBP" or data.startswith(b"RIFF")
    return False


def _check_url(value: str) -> tuple[bytes, str | None]:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return b"", "not an http(s) URL"
    # Cannot fetch: the URL itself stands in for the image (same URL, same picture).
    return value.encode(), None


def _error(code: str, msg: str) -> SandboxResponse:
    """The doc's error body: not billed, no seqNo, no data."""
    return SandboxResponse.json({"code": code, "msg": msg, "isFee": 0, "seqNo": None, "data": None})


def _compare_failed() -> SandboxResponse:
    return SandboxResponse.json(
        {
            "code": "0",
            "msg": MSG_OK,
            "isFee": 0,
            "seqNo": "".join(secrets.choice(_SEQ_ALPHABET) for _ in range(32)),
            "data": {"result": 3, "resultDesc": DESC_FAILED, "confidence": None, "threshold": None},
        }
    )
