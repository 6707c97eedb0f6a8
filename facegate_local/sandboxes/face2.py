"""face2 sandbox (vendor-docs/002): ``/face2/locate``, ``/face2/verify``,
``/face2/features``.

Written from the doc alone, not from facegate's signer: it rebuilds the string to
sign itself (``data`` as sorted compact JSON, keys ascending, ``&key=<appSecret>``)
and checks SHA256 (base64 of the hex digest) or SM2 (SM3withSM2, default user id
1234567812345678, raw r‖s in base64) with its own ZA computation.

Checks, in order, and the documented code for each failure:

* POST, one of the three paths, a JSON body (otherwise an HTTP error: the doc has
  no code for these);
* ``appId``, ``signType``, ``signData`` and ``timestamp`` present and well formed,
  the app known and ``signType`` the one it is registered for → else 9801;
* ``version``, ``encType`` (``plain``: 目前不加密) and ``data`` present → else 9001;
* the signature → else 9800;
* ``timestamp`` within ±300 s of the sandbox's clock → else 9802 (the doc gives no
  window; 300 s is the common choice);
* the operation's fields present → else 9001; an image's base64 text over 2 MB →
  9002; not base64, or not an image by its magic bytes → 9901.

Answers are the documented bodies, deterministic in the image bytes: ``locate``
finds one face in the middle of the picture, written ``[top, right, bottom, left]``
as the doc's table labels it, or ``[left, top, right, bottom]`` as the doc's example
is written (``box_order="example"``); ``verify`` returns distance 0.0 for
identical images and a stable pseudo-distance in [0.2, 1.8) otherwise, ``is_match``
when it is at most 1.1; ``features`` returns a unit 512-vector seeded by the image.

Assumptions of the sandbox (the doc is silent): rate limiting is HTTP 429 and an
exhausted quota HTTP 402 ("Payment Required"), each with a JSON body; the ``auth``
fault is the documented 9800. Documented responses are unsigned (``signType:
"plain"``); ``sign_responses=True`` makes the sandbox sign them (SHA256 with the
app's secret, or SM2 with its own platform key) so response verification and the
``bad_signature`` fault can be exercised.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import math
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from gmssl import sm2, sm3

from facegate_local.sandboxes.base import Sandbox, SandboxRequest, SandboxResponse

SignType = Literal["SHA256", "SM2"]
BoxOrder = Literal["labelled", "example"]

PATHS = {"/face2/locate": "locate", "/face2/verify": "verify", "/face2/features": "features"}
IMAGE_FIELDS = {"locate": ("image",), "verify": ("image1", "image2"), "features": ("image",)}
MAX_BASE64 = 2 * 1024 * 1024  # "base64数据不大于2MB"
WINDOW_S = 300
MATCH_DISTANCE = 1.1
DIMENSION = 512
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF87a", b"GIF89a")

# The SM2 recommended curve (GM/T 0003.5), written out here rather than borrowed.
_P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
_A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
_B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
_GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
_USER_ID = b"1234567812345678"


class _Refused(Exception):
    def __init__(self, code: int, msg: str, why: str) -> None:
        super().__init__(why)
        self.code, self.msg, self.why = code, msg, why


@dataclass(frozen=True)
class _App:
    secret: str
    sign_type: SignType
    public_key: str | None = None  # hex x‖y, for SM2 apps


class Face2Sandbox(Sandbox):
    vendor = "face2"
    APP_ID = "5F2A9C3E7B1D4E6F8A0C2E4B6D8F0A1C"

    def __init__(
        self,
        *,
        sign_type: SignType = "SHA256",
        sign_responses: bool = False,
        clock: Callable[[], float] = time.time,
        box_order: BoxOrder = "labelled",
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        assert sign_type in ("SHA256", "SM2"), sign_type
        assert box_order in ("labelled", "example"), box_order
        self.box_order = box_order
        self.sign_type = sign_type
        self.sign_responses = sign_responses
        # Fresh per sandbox, like a vendor issuing an app: no secret lives in the code.
        self.app_secret = secrets.token_hex(16).upper()
        self.clock = clock
        self._app_private_key: int | None = None
        public = None
        if sign_type == "SM2":
            self._app_private_key, public = _keypair()
        self.apps: dict[str, _App] = {self.APP_ID: _App(self.app_secret, sign_type, public)}
        # The platform's own key for signing responses with SM2.
        self._platform_private_key, self.platform_public_key = _keypair()

    def default_credentials(self) -> dict[str, Any]:
        """The face2 secret (contract shape, without ``endpoint``) this sandbox accepts."""
        creds: dict[str, Any] = {
            "app_id": self.APP_ID,
            "app_secret": self.app_secret,
            "sign_type": self.sign_type,
            "version": "1",
        }
        if self._app_private_key is not None:
            creds["sm2_private_key"] = base64.b64encode(self._app_private_key.to_bytes(32, "big")).decode()
        if self.sign_responses and self.sign_type == "SM2":
            creds["sm2_vendor_public_key"] = "04" + self.platform_public_key
        return creds

    # --- requests ----------------------------------------------------------------

    def handle(self, req: SandboxRequest) -> SandboxResponse:
        if req.method != "POST":
            self.reject(f"method {req.method} is not POST")
            return SandboxResponse(status=405, body=b"Method Not Allowed")
        op = PATHS.get(req.path)
        if op is None:
            self.reject(f"unknown path {req.path}")
            return SandboxResponse(status=404, body=b"Not Found")
        if not (req.headers.get("Content-Type") or "").lower().startswith("application/json"):
            self.reject("content type is not application/json")
            return SandboxResponse(status=415, body=b"Unsupported Media Type")
        app_id: str | None = None
        try:
            try:
                params = json.loads(req.body)
            except (ValueError, UnicodeDecodeError):
                raise _Refused(9001, "缺少参数", "body is not JSON (9001)") from None
            if not isinstance(params, dict):
                raise _Refused(9001, "缺少参数", "body is not a JSON object (9001)")
            self._check_envelope(params)
            app_id = params["appId"]
            answer = self._answer(op, params["data"])
        except _Refused as r:
            self.reject(r.why)
            return self._reply(r.code, {"msg": r.msg}, app_id, billed=False)
        return self._reply(0, {**answer, "msg": "success", "requestId": _request_id()}, app_id, billed=True)

    def _check_envelope(self, params: dict[str, Any]) -> _App:
        app_id, sign_type = params.get("appId"), params.get("signType")
        sign_data, ts = params.get("signData"), params.get("timestamp")
        if not (isinstance(app_id, str) and isinstance(sign_type, str) and isinstance(sign_data, str)):
            raise _Refused(9801, "签名参数有错误", "appId, signType or signData missing (9801)")
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise _Refused(9801, "签名参数有错误", "timestamp missing or not an integer (9801)")
        app = self.apps.get(app_id)
        if app is None:
            raise _Refused(9801, "签名参数有错误", "unknown appId (9801)")
        if sign_type != app.sign_type:
            raise _Refused(9801, "签名参数有错误", f"signType {sign_type[:16]!r} is not the app's (9801)")
        for name in ("version", "encType", "data"):
            if name not in params:
                raise _Refused(9001, "缺少参数", f"{name} missing (9001)")
        if params["encType"] != "plain":
            raise _Refused(9001, "缺少参数", "encType is not plain (9001)")
        if not isinstance(params["data"], dict):
            raise _Refused(9001, "缺少参数", "data is not an object (9001)")
        text = _string_to_sign(params, app.secret)
        if sign_type == "SHA256":
            expected = base64.b64encode(hashlib.sha256(text.encode()).hexdigest().encode()).decode()
            valid = hmac.compare_digest(expected.encode(), sign_data.encode())
        else:
            assert app.public_key is not None
            try:
                raw = base64.b64decode(sign_data, validate=True)
            except (binascii.Error, ValueError):
                raise _Refused(9801, "签名参数有错误", "signData is not base64 (9801)") from None
            if len(raw) != 64:
                raise _Refused(9801, "签名参数有错误", f"signData is {len(raw)} bytes, not r‖s (9801)")
            valid = _sm2_verify(text.encode(), raw, app.public_key)
        if not valid:
            raise _Refused(9800, "无效签名", "signature mismatch (9800)")
        skew = ts - self.clock()
        if abs(skew) > WINDOW_S:
            raise _Refused(9802, "调用时间错误", f"timestamp {skew:+.0f} s off the sandbox clock (9802)")
        return app

    def _answer(self, op: str, data: dict[str, Any]) -> dict[str, Any]:
        images = [self._image(data, name) for name in IMAGE_FIELDS[op]]
        if op == "locate":
            max_faces = data.get("max_face_num", 1)
            if not isinstance(max_faces, int) or isinstance(max_faces, bool) or max_faces < 1:
                raise _Refused(9001, "缺少参数", "max_face_num is not a positive integer (9001)")
            width, height = _size(images[0])
            left, top = width // 4, height // 5
            right, bottom = left + width // 2, top + height // 2
            # The doc's table says [top, right, bottom, left]; its example reads [left, top, right, bottom].
            location = [top, right, bottom, left] if self.box_order == "labelled" else [left, top, right, bottom]
            return {"face_num": 1, "locations": [location][:max_faces]}
        if op == "verify":
            h1, h2 = (hashlib.sha256(i).digest() for i in images)
            if h1 == h2:
                score = 0.0
            else:
                seed = hashlib.sha256(min(h1, h2) + max(h1, h2)).digest()
                score = 0.2 + 1.6 * int.from_bytes(seed[:4], "big") / 2**32
            return {"is_match": score <= MATCH_DISTANCE, "score": score}
        stream = hashlib.shake_256(images[0]).digest(4 * DIMENSION)
        values = [int.from_bytes(stream[i : i + 4], "big") / 2**31 - 1.0 for i in range(0, len(stream), 4)]
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        return {"features": [round(v / norm, 9) for v in values]}

    def _image(self, data: dict[str, Any], name: str) -> bytes:
        text = data.get(name)
        if not isinstance(text, str) or not text:
            raise _Refused(9001, "缺少参数", f"{name} missing (9001)")
        if len(text) > MAX_BASE64:
            raise _Refused(9002, "图片数据太大,base64数据不大于2MB", f"{name} base64 is {len(text)} B (9002)")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise _Refused(9901, "base64编码异常", f"{name} is not base64 (9901)") from None
        if not (raw.startswith(_MAGIC) or (raw[:4] == b"RIFF" and raw[8:12] == b"WEBP")):
            raise _Refused(9901, "base64编码异常", f"{name} is not an image (9901)")
        return raw

    # --- answers -----------------------------------------------------------------

    def _reply(self, code: int, data: dict[str, Any], app_id: str | None, *, billed: bool) -> SandboxResponse:
        body: dict[str, Any] = {
            "code": code,
            "data": data,
            "encType": "plain",
            "signType": "plain",
            "success": code == 0,
            "timestamp": int(self.clock()),
        }
        if app_id is not None and app_id in self.apps:
            body["appId"] = app_id
        return SandboxResponse.json(body, billed=billed)

    def fault_response(self, fault: str, req: SandboxRequest) -> SandboxResponse:
        now = int(self.clock())
        if fault == "rate_limit":
            self.reject("rate limited (HTTP 429)")
            body = {"code": 429, "msg": "too many requests", "success": False, "timestamp": now}
            return SandboxResponse.json(body, status=429)
        if fault == "quota":
            self.reject("quota exhausted (HTTP 402)")
            body = {"code": 402, "msg": "quota exhausted", "success": False, "timestamp": now}
            return SandboxResponse.json(body, status=402)
        if fault == "auth":
            self.reject("auth fault (9800)")
            return self._reply(9800, {"msg": "无效签名"}, None, billed=False)
        raise ValueError(fault)

    def sign_response(self, response: SandboxResponse, req: SandboxRequest, *, tamper: bool) -> SandboxResponse:
        if not self.sign_responses:
            return response
        try:
            body = json.loads(response.body)
        except (ValueError, UnicodeDecodeError):
            return response
        app_id = body.get("appId") if isinstance(body, dict) else None
        app = self.apps.get(app_id) if isinstance(app_id, str) else None
        if app is None:
            return response
        body["signType"] = app.sign_type
        text = _string_to_sign(body, app.secret)
        if app.sign_type == "SHA256":
            body["signData"] = base64.b64encode(hashlib.sha256(text.encode()).hexdigest().encode()).decode()
        else:
            body["signData"] = base64.b64encode(_sm2_sign(text.encode(), self._platform_private_key)).decode()
        if tamper:
            body["timestamp"] += 1  # after signing: the signature no longer covers the body
        signed = SandboxResponse.json(body, status=response.status, billed=response.billed)
        return signed


# --- the doc's signature, independently --------------------------------------------------


def _string_to_sign(params: dict[str, Any], secret: str) -> str:
    parts = []
    for key in sorted(params):
        if key in ("signData", "encData", "extra"):
            continue
        value = params[key]
        if isinstance(value, str):
            text = value
        else:  # data (sorted compact JSON), numbers, booleans
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        parts.append(f"{key}={text}")
    parts.append(f"key={secret}")
    return "&".join(parts)


def _sm3(data: bytes) -> bytes:
    if "sm3" in hashlib.algorithms_available:
        return hashlib.new("sm3", data).digest()
    return bytes.fromhex(sm3.sm3_hash(list(data)))  # slow, but present everywhere


def _e(message: bytes, public_key: str) -> bytes:
    """SM3(ZA ‖ M), ZA = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA)."""
    za = _sm3(
        (8 * len(_USER_ID)).to_bytes(2, "big")
        + _USER_ID
        + b"".join(v.to_bytes(32, "big") for v in (_A, _B, _GX, _GY))
        + bytes.fromhex(public_key)
    )
    return _sm3(za + message)


def _curve() -> sm2.CryptSM2:
    table = {
        "n": f"{_N:064X}",
        "p": f"{_P:064X}",
        "g": f"{_GX:064x}{_GY:064x}",
        "a": f"{_A:064X}",
        "b": f"{_B:064X}",
    }
    return sm2.CryptSM2(private_key="", public_key="", ecc_table=table)


def _keypair() -> tuple[int, str]:
    d = secrets.randbelow(_N - 2) + 1
    return d, _curve()._kg(d, f"{_GX:064x}{_GY:064x}")


def _sm2_verify(message: bytes, signature: bytes, public_key: str) -> bool:
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (1 <= r < _N and 1 <= s < _N):
        return False
    curve = _curve()
    curve.public_key = public_key
    try:
        return bool(curve.verify(signature.hex(), _e(message, public_key)))
    except TypeError:  # gmssl's point at infinity
        return False


def _sm2_sign(message: bytes, d: int) -> bytes:
    curve = _curve()
    curve.private_key = f"{d:064x}"
    public_key = curve._kg(d, f"{_GX:064x}{_GY:064x}")
    e = _e(message, public_key)
    while True:
        sig = curve.sign(e, f"{secrets.randbelow(_N - 1) + 1:064x}")
        if sig is not None:
            return bytes.fromhex(sig)


# --- helpers -----------------------------------------------------------------------------


def _size(image: bytes) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image)) as img:
            return img.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise _Refused(9901, "base64编码异常", "image header unreadable (9901)") from None


def _request_id() -> str:
    # The doc's ids look like a timestamp followed by 32 hex digits.
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex
