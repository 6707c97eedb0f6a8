"""A loopback 快递100 Kuaidi100 cloud market face compare (人脸对比).

Written from vendor-docs/001_83b55f7f72fcb0bc.txt alone (no facegate imports): one
form-urlencoded POST to ``/api`` with eleven required fields, ``secret_sign`` =
upper(md5(secret_key+secret_secret)), BASE64 images of at most 2M encoded, URL
images, and FACE_TOKENs this server handed out earlier. Success is the doc's body,
``{"code": 200, "message": "", "data": {"score": "93.50", "sourceToken": ...,
"compareToken": ...}}``; failures are ``{"code": <code>, "message": ...}``.

The face-compare page documents only codes 200 and 400; for the rest this sandbox
uses Kuaidi100's documented platform codes (信息代码含义): 400 参数错误,
503 验证签名失败, 600 您不是合法的用户 (授权Key出错), 601 KEY已过期. None of them
is a rate limit, so ``rate_limit`` is a plain HTTP 429. Only a 200 is billed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import secrets
from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import urlsplit

from facegate_local.sandboxes.base import Sandbox, SandboxRequest, SandboxResponse

# The 接口编号 the doc's samples send for 人脸对比.
FACE_COMPARE_CODE = "a01ec22b11c94a4e9f755a3af8c10a0d"

REQUIRED = (
    "secret_key",
    "secret_code",
    "secret_sign",
    "sourceImage",
    "sourceImageType",
    "sourceFaceType",
    "sourceLiveControl",
    "compareImage",
    "compareImageType",
    "compareFaceType",
    "compareLiveControl",
)
IMAGE_TYPES = frozenset({"BASE64", "URL", "FACE_TOKEN"})
FACE_TYPES = frozenset({"LIVE", "IDCARD", "WATERMARK", "CERT"})
LIVE_CONTROLS = frozenset({"NONE", "LOW", "NORMAL", "HIGH"})
# "BASE64:编码后的图片大小不超过2M", held to the stricter reading of "M" (10^6): a
# client that sends more than 2,000,000 characters relies on the vendor reading 2^20.
MAX_BASE64 = 2_000_000
MAX_TOTAL = 10 * 1024 * 1024  # 总数据大小应小于10M
FORM = "application/x-www-form-urlencoded"

OK = 200
PARAM_ERROR = 400  # 参数错误
SIGN_ERROR = 503  # 验证签名失败
ILLEGAL_USER = 600  # 您不是合法的用户 (授权Key出错)
KEY_EXPIRED = 601  # KEY已过期


class Kuaidi100Sandbox(Sandbox):
    vendor: ClassVar[str] = "kuaidi100"

    def __init__(self, *, credentials: Mapping[str, str] | None = None, score: str | float = "93.50", **kw) -> None:
        super().__init__(**kw)
        creds = dict(credentials or self.default_credentials())
        # secret_key -> (secret_secret, the 接口编号 bought with it)
        self.accounts: dict[str, tuple[str, str]] = {
            creds["secret_key"]: (creds["secret_secret"], creds["secret_code"])
        }
        # What a pair of different images scores; identical images score "100.00".
        self.score = score
        # FACE_TOKEN -> the identity of the image it was issued for, and back.
        self._tokens: dict[str, str] = {}
        self._token_of: dict[str, str] = {}

    @classmethod
    def default_credentials(cls) -> dict[str, str]:
        return {
            "secret_key": "kd100-sandbox-key",  # the sandbox's fake credential  # nosec B105
            "secret_secret": "kd100-sandbox-secret",  # the sandbox's fake credential  # nosec B105
            "secret_code": FACE_COMPARE_CODE,
        }

    # --- the vendor -------------------------------------------------------------------

    def handle(self, req: SandboxRequest) -> SandboxResponse:
        if req.path != "/api":
            self.reject(f"unknown path {req.path}")
            return SandboxResponse(status=404, body=b"Not Found", headers={"Content-Type": "text/plain"})
        if req.method != "POST":
            self.reject(f"method {req.method} instead of POST")
            return SandboxResponse(status=405, body=b"Method Not Allowed", headers={"Content-Type": "text/plain"})
        content_type = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != FORM:
            return self._fail(PARAM_ERROR, f"content type {content_type or 'missing'} instead of {FORM}")
        if len(req.body) >= MAX_TOTAL:
            return self._fail(PARAM_ERROR, "request body is 10M or more")
        try:
            form = req.form()
        except UnicodeDecodeError:
            return self._fail(PARAM_ERROR, "form body is not UTF-8")

        missing = [name for name in REQUIRED if not form.get(name)]
        if missing:
            return self._fail(PARAM_ERROR, f"missing or empty fields: {', '.join(missing)}")

        account = self.accounts.get(form["secret_key"])
        if account is None:
            return self._fail(ILLEGAL_USER, "unknown secret_key")
        secret, code = account
        expected = hashlib.md5((form["secret_key"] + secret).encode("utf-8"), usedforsecurity=False)
        if form["secret_sign"] != expected.hexdigest().upper():
            return self._fail(SIGN_ERROR, "secret_sign is not upper(md5(secret_key+secret_secret))")
        if form["secret_code"] != code:
            return self._fail(ILLEGAL_USER, "secret_code is not the face-compare API bought with this key")

        identities: list[str] = []
        for side in ("source", "compare"):
            for field, allowed in ((f"{side}FaceType", FACE_TYPES), (f"{side}LiveControl", LIVE_CONTROLS)):
                if form[field] not in allowed:
                    return self._fail(PARAM_ERROR, f"{field} is not one of {sorted(allowed)}")
            identity, why = self._identity(form[f"{side}Image"], form[f"{side}ImageType"])
            if identity is None:
                return self._fail(PARAM_ERROR, f"{side}Image: {why}")
            identities.append(identity)

        source, compare = identities
        score = "100.00" if source == compare else self._score_text()
        data = {"score": score, "sourceToken": self._issue(source), "compareToken": self._issue(compare)}
        return SandboxResponse.json({"code": OK, "message": "", "data": data}, billed=True)

    def fault_response(self, fault: str, req: SandboxRequest) -> SandboxResponse:
        if fault == "quota":
            return SandboxResponse.json({"code": KEY_EXPIRED, "message": "KEY已过期"})
        if fault == "auth":
            return SandboxResponse.json({"code": SIGN_ERROR, "message": "验证签名失败"})
        # No documented rate-limit code: the gateway's plain HTTP answer.
        return SandboxResponse(status=429, body=b"Too Many Requests", headers={"Content-Type": "text/plain"})

    # --- helpers ----------------------------------------------------------------------

    def _fail(self, code: int, why: str) -> SandboxResponse:
        self.reject(why)
        return SandboxResponse.json({"code": code, "message": why})

    def _score_text(self) -> str:
        return self.score if isinstance(self.score, str) else f"{self.score:.2f}"

    def _identity(self, value: str, image_type: str) -> tuple[str | None, str]:
        """What makes two images "the same" here, or (None, why the image is refused)."""
        if image_type not in IMAGE_TYPES:
            return None, f"image type {image_type!r} is not one of {sorted(IMAGE_TYPES)}"
        if image_type == "FACE_TOKEN":
            identity = self._tokens.get(value)
            return (identity, "") if identity is not None else (None, "FACE_TOKEN was not issued by this server")
        if image_type == "URL":
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return None, "URL is not an http(s) URL"
            return "url:" + value, ""
        if len(value) > MAX_BASE64:
            return None, "BASE64 image is larger than 2M encoded"
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None, "BASE64 image is not valid base64"
        if not _is_image(data):
            return None, "BASE64 data is not a decodable image"
        return "sha256:" + hashlib.sha256(data).hexdigest(), ""

    def _issue(self, identity: str) -> str:
        # One token per distinct image, reused when the same image comes back.
        with self._lock:
            token = self._token_of.get(identity)
            if token is None:
                token = secrets.token_hex(16)
                self._token_of[identity] = token
                self._tokens[token] = identity
            return token


def _is_image(data: bytes) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False
    return True
