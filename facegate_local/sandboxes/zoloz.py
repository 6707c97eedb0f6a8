"""ZOLOZ face compare, played on loopback.

Written from ZOLOZ's documentation (the compare API page and the gateway protocol
pages: message structure, signing, encryption, error handling), never from
facegate's adapter or signer:

* ``POST /api/v1/zoloz/facecompare/compare`` only; any other path is
  ``NO_INTERFACE_DEF``;
* ``Client-Id`` must be the sandbox's client; otherwise ``MERCHANT_NOT_FOUND``;
* ``Content-Type`` is ``application/json; charset=UTF-8`` for a plain request and
  ``text/plain; charset=UTF-8`` for an encrypted one; otherwise ``MSG_PARSE_ERROR``;
* ``Request-Time`` is ``yyyy-MM-ddTHH:mm:ss±hhmm`` (the pages' samples also show
  ``±hh:mm``, accepted) and within ±5 minutes of the sandbox's clock; a missing one
  is ``PARAM_MISSING``, a malformed or stale one ``PARAM_ILLEGAL``;
* ``Signature: algorithm=RSA256, signature=<base64, URL-encoded or not>`` verifies
  (SHA256withRSA) with the merchant's public key over
  ``POST <path>\\n<Client-Id>.<Request-Time>.<body as received>``; otherwise
  ``SIGNATURE_INVALID``;
* ``Encrypt: algorithm=RSA_AES, symmetricKey=<...>``, when present: the key
  decrypts (RSA PKCS#1 v1.5) with ZOLOZ's private key, and the body is base64 of
  AES/ECB/PKCS5Padding under it; otherwise ``MSG_PARSE_ERROR``;
* the JSON: ``bizId`` present and non-empty (else ``INVALID_ARGUMENT``, as the
  compare page says) and at most 32 bytes; ``face1.content`` and ``face2.content``
  decode from base64 to a JPEG, PNG or BMP by magic bytes (else
  ``UNABLE_GET_IMAGE``); together at most 5 MB of base64; ``sourceOfFace2``, if
  sent, ``SELFIE`` or an 11-digit docType.

Answers: ``{"result": {...}, "transactionId", "score", "samePerson"}``; identical
images score 100, others ``score``; ``samePerson`` is ``score >= threshold``. Every
answer carries ``Response-Time`` and a ``Signature`` by ZOLOZ's private key over
``POST <path>\\n<clientId>.<Response-Time>.<body as sent>``; an encrypted request
gets an encrypted answer under a fresh AES key wrapped with the merchant's public
key. Refusals before the body could be decrypted, and the injected faults, are
plain JSON.

Assumptions the pages do not settle: the ±5 minute window and its code; HTTP 200
for every result-coded answer; only SUCCESS is billed; what "5MB" means (taken as
5 MiB, the lenient reading, so an adapter that keeps under 5,000,000 bytes always
passes).

Key pairs are generated per process (2048-bit RSA, as ZOLOZ issues): one for
"ZOLOZ", one for the merchant, whose private key ``default_credentials`` hands out.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any, ClassVar
from urllib.parse import quote, unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from facegate_local.sandboxes.base import Sandbox, SandboxRequest, SandboxResponse

PATH = "/api/v1/zoloz/facecompare/compare"
CLIENT_ID = "2188000123456789"  # "typically a string composing of 16 digits"
REQUEST_TIME_WINDOW = timedelta(minutes=5)
MAX_BIZ_ID_BYTES = 32
MAX_TOTAL_CONTENT = 5 * 1024 * 1024
# Singapore, where ZOLOZ's main site is: answers carry a non-UTC offset on purpose.
ZOLOZ_TZ = timezone(timedelta(hours=8))

_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})([+-])(\d{2}):?(\d{2})$")
_DOC_TYPE = re.compile(r"^[0-9]{11}$")
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM")  # JPG/JPEG, PNG, BMP

# resultMessage texts from the error-handling page.
MESSAGES = {
    "SUCCESS": "success",
    "PARAM_MISSING": "Bad request. The parameter is missing.",
    "PARAM_ILLEGAL": "Bad request. The parameter is illegal.",
    "MSG_PARSE_ERROR": "Bad request. The message format is invalid.",
    "SIGNATURE_INVALID": "Unauthorized. The signature is invalid.",
    "MERCHANT_NOT_FOUND": "Merchant not found. The ZOLOZ server is unable to find the merchant.",
    "NO_INTERFACE_DEF": "The requested API is not defined.",
    "REQUEST_TRAFFIC_EXCEED_LIMIT": "The request traffic has exceeded the limit.",
    "PRODUCT_QUOTA_LIMIT": "Product usage has exceeded the limit.",
    "INVALID_ARGUMENT": "Invalid argument.",
    "UNABLE_GET_IMAGE": "Unable to get image.",
    "SYSTEM_ERROR": "A system error has occurred.",
}


@dataclass(frozen=True)
class _Keys:
    zoloz: rsa.RSAPrivateKey
    merchant: rsa.RSAPrivateKey


@cache
def _keys() -> _Keys:
    """Generated once per process: 2048-bit generation takes a noticeable moment."""
    return _Keys(
        zoloz=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        merchant=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def _pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _pem_public(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


class _Refused(Exception):
    """A request the gateway refuses: the result code and why (for ``rejected``)."""

    def __init__(self, code: str, why: str, status: str = "F"):
        super().__init__(why)
        self.code, self.why, self.status = code, why, status


class ZolozSandbox(Sandbox):
    vendor: ClassVar[str] = "zoloz"

    @classmethod
    def default_credentials(cls) -> dict[str, Any]:
        keys = _keys()
        return {
            "client_id": CLIENT_ID,
            "merchant_private_key": _pem_private(keys.merchant),
            "zoloz_public_key": _pem_public(keys.zoloz.public_key()),
            "encrypt": False,
        }

    def __init__(self, *, score: float = 88.2, threshold: float = 70.0, **kw: Any) -> None:
        super().__init__(**kw)
        keys = _keys()
        self.zoloz_private_key = keys.zoloz
        self.merchant_public_key = keys.merchant.public_key()
        self.client_id = CLIENT_ID
        self.score = score  # for two different images; identical ones score 100
        self.threshold = threshold  # samePerson = score >= threshold
        self._serial = itertools.count(1)
        self._serial_lock = threading.Lock()

    # --- the API ---------------------------------------------------------------------

    def handle(self, req: SandboxRequest) -> SandboxResponse:
        aes_key = None
        try:
            aes_key, text = self._open(req)
            payload = self._compare(text)
        except _Refused as r:
            self.reject(r.why)
            # Encrypted if the request was and its key could be read; plain otherwise.
            return self._reply(_result(r.code, r.status), aes_key, billed=False)
        return self._reply(payload, aes_key, billed=True)

    def fault_response(self, fault: str, req: SandboxRequest) -> SandboxResponse:
        code = {
            "rate_limit": "REQUEST_TRAFFIC_EXCEED_LIMIT",
            "quota": "PRODUCT_QUOTA_LIMIT",
            "auth": "SIGNATURE_INVALID",
        }[fault]
        return self._reply(_result(code, "F"), None, billed=False)

    def sign_response(self, response: SandboxResponse, req: SandboxRequest, *, tamper: bool) -> SandboxResponse:
        response_time = _format_time(datetime.now(ZOLOZ_TZ))
        client_id = req.headers.get("Client-Id") or self.client_id
        content = f"POST {req.path}\n{client_id}.{response_time}.{response.body.decode('utf-8')}"
        raw = self.zoloz_private_key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        signature = quote(base64.b64encode(raw).decode("ascii"), safe="")
        if tamper:
            # What a man in the middle would do: flip the verdict (or, if there is
            # none, change a byte the JSON does not care about) after ZOLOZ signed.
            if b'"samePerson": false' in response.body:
                response.body = response.body.replace(b'"samePerson": false', b'"samePerson": true')
            else:
                response.body += b" "
        response.headers["Response-Time"] = response_time
        response.headers["Signature"] = f"algorithm=RSA256, signature={signature}"
        return response

    # --- the gateway -----------------------------------------------------------------

    def _open(self, req: SandboxRequest) -> tuple[bytes | None, str]:
        """Check the envelope; return the request's AES key (if encrypted) and its JSON text."""
        if req.method != "POST" or req.path != PATH:
            raise _Refused("NO_INTERFACE_DEF", f"no API at {req.method} {req.path}")
        client_id = req.headers.get("Client-Id")
        if not client_id:
            raise _Refused("PARAM_MISSING", "no Client-Id header")
        if client_id != self.client_id:
            raise _Refused("MERCHANT_NOT_FOUND", "unknown Client-Id")
        encrypt = req.headers.get("Encrypt")
        expected_type = "text/plain" if encrypt is not None else "application/json"
        if not _content_type_is(req.headers.get("Content-Type"), expected_type):
            raise _Refused("MSG_PARSE_ERROR", f"Content-Type is not {expected_type}; charset=UTF-8")

        request_time = req.headers.get("Request-Time")
        if not request_time:
            raise _Refused("PARAM_MISSING", "no Request-Time header")
        sent = _parse_time(request_time)
        if sent is None:
            raise _Refused("PARAM_ILLEGAL", "Request-Time is not yyyy-MM-ddTHH:mm:ss±hhmm")
        if abs(datetime.now(UTC) - sent) > REQUEST_TIME_WINDOW:
            raise _Refused("PARAM_ILLEGAL", "Request-Time is more than 5 minutes off")

        try:
            body = req.body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused("MSG_PARSE_ERROR", "the body is not UTF-8") from None
        signature = _header_params(req.headers.get("Signature"))
        if signature is None or signature.get("algorithm") != "RSA256" or not signature.get("signature"):
            raise _Refused("SIGNATURE_INVALID", "the Signature header is missing or not algorithm=RSA256")
        content = f"POST {req.path}\n{client_id}.{request_time}.{body}"
        if not self._verify(content, signature["signature"]):
            raise _Refused("SIGNATURE_INVALID", "the signature does not verify with the merchant public key")

        if encrypt is None:
            return None, body
        params = _header_params(encrypt)
        if params is None or params.get("algorithm") != "RSA_AES" or not params.get("symmetricKey"):
            raise _Refused("MSG_PARSE_ERROR", "the Encrypt header is not algorithm=RSA_AES, symmetricKey=...")
        try:
            wrapped = _b64(unquote(params["symmetricKey"]))
            key = self.zoloz_private_key.decrypt(wrapped, padding.PKCS1v15())
            if len(key) not in (16, 24, 32):
                raise ValueError("not an AES key")
            return key, _aes_decrypt(key, _b64(body))
        except ValueError:
            raise _Refused("MSG_PARSE_ERROR", "the encrypted body does not decrypt") from None

    def _verify(self, content: str, signature: str) -> bool:
        try:
            raw = _b64(unquote(signature))
            self.merchant_public_key.verify(raw, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, InvalidSignature):
            return False
        return True

    # --- the product -----------------------------------------------------------------

    def _compare(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except ValueError:
            raise _Refused("MSG_PARSE_ERROR", "the body is not JSON") from None
        if not isinstance(data, dict):
            raise _Refused("MSG_PARSE_ERROR", "the body is not a JSON object")
        biz_id = data.get("bizId")
        if not isinstance(biz_id, str) or not biz_id:
            raise _Refused("INVALID_ARGUMENT", "bizId is null or empty")
        if len(biz_id.encode("utf-8")) > MAX_BIZ_ID_BYTES:
            raise _Refused("PARAM_ILLEGAL", "bizId is longer than 32 bytes")
        source = data.get("sourceOfFace2", "SELFIE")
        if not isinstance(source, str) or not (source == "SELFIE" or _DOC_TYPE.match(source)):
            raise _Refused("PARAM_ILLEGAL", "sourceOfFace2 is neither SELFIE nor a docType")
        contents = [self._content(data, n) for n in (1, 2)]
        if sum(len(c) for c in contents) > MAX_TOTAL_CONTENT:
            raise _Refused("PARAM_ILLEGAL", "face1.content and face2.content are larger than 5MB together")
        images = [self._image(c, n) for n, c in zip((1, 2), contents, strict=True)]
        score = 100.0 if images[0] == images[1] else float(self.score)
        with self._serial_lock:
            serial = next(self._serial)
        transaction_id = f"G000000005FID{datetime.now(ZOLOZ_TZ):%Y%m%d}{serial:018d}"
        return {
            "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": MESSAGES["SUCCESS"]},
            "transactionId": transaction_id,
            "score": score,
            "samePerson": score >= self.threshold,
        }

    @staticmethod
    def _content(data: dict[str, Any], n: int) -> str:
        face = data.get(f"face{n}")
        content = face.get("content") if isinstance(face, dict) else None
        if not isinstance(content, str) or not content:
            raise _Refused("UNABLE_GET_IMAGE", f"face{n}.content is null or empty")
        return content

    @staticmethod
    def _image(content: str, n: int) -> bytes:
        try:
            image = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise _Refused("UNABLE_GET_IMAGE", f"face{n}.content is not base64") from None
        if not image.startswith(_MAGIC):
            raise _Refused("UNABLE_GET_IMAGE", f"face{n}.content is not a JPG, PNG or BMP image")
        return image

    # --- answers ---------------------------------------------------------------------

    def _reply(self, payload: dict[str, Any], aes_key: bytes | None, *, billed: bool) -> SandboxResponse:
        body = json.dumps(payload)
        headers = {"Content-Type": "application/json; charset=UTF-8"}
        if aes_key is not None:
            key = os.urandom(32)
            wrapped = self.merchant_public_key.encrypt(key, padding.PKCS1v15())
            body = base64.b64encode(_aes_encrypt(key, body)).decode("ascii")
            headers = {
                "Content-Type": "text/plain; charset=UTF-8",
                "Encrypt": "algorithm=RSA_AES, symmetricKey="
                + quote(base64.b64encode(wrapped).decode("ascii"), safe=""),
            }
        return SandboxResponse(status=200, body=body.encode("utf-8"), headers=headers, billed=billed)


# --- helpers ----------------------------------------------------------------------------


def _result(code: str, status: str) -> dict[str, Any]:
    return {"result": {"resultCode": code, "resultStatus": status, "resultMessage": MESSAGES.get(code, code)}}


def _format_time(dt: datetime) -> str:
    offset = dt.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{hh:02d}{mm:02d}"


def _parse_time(text: str) -> datetime | None:
    m = _TIME.match(text)
    if m is None:
        return None
    *fields, sign, oh, om = m.groups()
    y, mo, d, h, mi, s = (int(g) for g in fields)
    offset = timedelta(hours=int(oh), minutes=int(om))
    try:
        return datetime(y, mo, d, h, mi, s, tzinfo=timezone(-offset if sign == "-" else offset))
    except ValueError:
        return None


def _content_type_is(value: str | None, media_type: str) -> bool:
    if not value:
        return False
    kind, *params = (p.strip() for p in value.split(";"))
    charset = {k.strip().lower(): v.strip().strip('"') for k, _, v in (p.partition("=") for p in params)}.get(
        "charset", ""
    )
    return kind.lower() == media_type and charset.lower() == "utf-8"


def _header_params(value: str | None) -> dict[str, str] | None:
    if not value:
        return None
    params: dict[str, str] = {}
    for pair in value.split(","):
        name, eq, val = pair.strip().partition("=")
        if not eq:
            return None
        params[name.strip()] = val.strip()
    return params


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None


def _aes_encrypt(key: bytes, text: str) -> bytes:
    padder = block_padding.PKCS7(128).padder()
    data = padder.update(text.encode("utf-8")) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - ZOLOZ's RSA_AES is AES/ECB  # nosec B305
    return enc.update(data) + enc.finalize()


def _aes_decrypt(key: bytes, data: bytes) -> str:
    if not data or len(data) % 16:
        raise ValueError("not whole AES blocks")
    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305 - ZOLOZ's RSA_AES is AES/ECB  # nosec B305
    unpadder = block_padding.PKCS7(128).unpadder()
    return (unpadder.update(dec.update(data) + dec.finalize()) + unpadder.finalize()).decode("utf-8")
