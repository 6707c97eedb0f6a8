"""face2's request signature: a sorted ``k=v&…&key=<appSecret>`` string, signed with
SHA256 or SM2 (SM3withSM2).

The string (doc, 签名/验签算法):

1. every parameter except ``signData``, ``encData`` and ``extra``;
2. ``data`` serialised as JSON with its keys in ascending order;
3. all keys in ascending order, joined as ``k=v`` with ``&``;
4. ``&key=<appSecret>`` appended.

The doc's serialisation details beyond "keys ascending" are fixed here the way a
Java JSON library writes them by default: no whitespace, non-ASCII text as is (not
``\\uXXXX``), and that holds at every depth. String values go in raw; every other
value goes in as its compact JSON text (``5``, ``true``, ``{…}``), which for the
documented envelope (strings, one int, one object) is the only reading.

SHA256: the doc says "sign to bytes, hex-encode, then base64", so the signature is
base64 of the *lowercase hex text* of the digest (its own example proves it).
SM2: SM3withSM2 with the default user id, the signature the raw 64-byte r‖s in
base64 — the doc's example SM2 signature is 88 base64 characters, i.e. exactly 64
bytes (not hex, which would be 128, nor DER, which is 70–72).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from gmssl import sm2

EXCLUDED = frozenset({"signData", "encData", "extra"})

# GM/T 0009 §10: the user id both sides use unless they agreed on another one.
DEFAULT_USER_ID = b"1234567812345678"

_CURVE = sm2.default_ecc_table
_P = int(_CURVE["p"], 16)
_A = int(_CURVE["a"], 16)
_B = int(_CURVE["b"], 16)
_N = int(_CURVE["n"], 16)


class JsonNumber(str):
    """A JSON number kept as the exact text it arrived in.

    Verifying a vendor's signature over ``data`` means re-serialising the JSON it
    sent; Python and Java print some floats differently (``1e-05`` vs ``1.0E-5``),
    so a response is re-parsed with ``parse_float``/``parse_int`` set to this type
    and its numbers are written back verbatim.
    """

    __slots__ = ()


def canonical_json(value: Any) -> str:
    """Compact JSON with object keys in ascending order, non-ASCII kept as is."""
    if isinstance(value, JsonNumber):
        return str(value)
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return "{" + ",".join(f"{_json_str(str(k))}:{canonical_json(v)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _json_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _text(value: Any) -> str:
    # A plain string (and a JsonNumber, which is one) goes in verbatim: the doc's
    # example has appId=19E1…, not appId="19E1…".
    if isinstance(value, str):
        return str(value)
    return canonical_json(value)


def string_to_sign(params: Mapping[str, Any], app_secret: str) -> str:
    """The doc's string to sign for ``params`` (request or response parameters)."""
    keys = sorted(k for k in params if k not in EXCLUDED)
    pairs = [f"{k}={_text(params[k])}" for k in keys]
    pairs.append(f"key={app_secret}")
    return "&".join(pairs)


def sign_sha256(text: str) -> str:
    """base64 of the lowercase hex SHA-256 of ``text`` (UTF-8)."""
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).hexdigest().encode("ascii")).decode("ascii")


# --- SM2 ----------------------------------------------------------------------------


def _sm3(data: bytes) -> bytes:
    # gmssl's own SM3 is pure Python (seconds per megabyte, and a signed face2
    # request carries whole base64 images); OpenSSL's, through cryptography, is not.
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def _int32(data: bytes) -> int:
    return int.from_bytes(data, "big")


def _private_scalar(private_key_b64: str) -> int:
    try:
        raw = base64.b64decode(private_key_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the SM2 private key is not base64") from None
    # 32 bytes is the documented form. Java's BigInteger.toByteArray() adds a zero
    # sign byte when the top bit is set, or drops leading zero bytes: same scalar.
    if not raw or len(raw) > 33 or (len(raw) == 33 and raw[0] != 0):
        raise ValueError("the SM2 private key is not a 32-byte scalar")
    d = _int32(raw)
    if not 1 <= d <= _N - 2:  # GM/T 0003.1 §6.1: d ∈ [1, n-2], since (1+d)⁻¹ is used
        raise ValueError("the SM2 private key is out of range")
    return d


def _point_hex(x: int, y: int) -> str:
    return f"{x:064x}{y:064x}"


def _derive_public(d: int) -> tuple[int, int]:
    # gmssl has no public call for d·G; _kg is its scalar multiplication (the
    # version is pinned in requirements.txt, and a known-answer test pins the result).
    point = sm2.CryptSM2(private_key=f"{d:064x}", public_key="")._kg(d, _CURVE["g"])
    return int(point[:64], 16), int(point[64:], 16)


def sm2_public_key(private_key_b64: str) -> str:
    """The public key for a base64 private key, as uncompressed hex ``04‖x‖y``."""
    x, y = _derive_public(_private_scalar(private_key_b64))
    return "04" + _point_hex(x, y)


def parse_sm2_public_key(public_key: str) -> tuple[int, int]:
    """An SM2 public key given as hex or base64, with or without the ``04`` prefix."""
    text = public_key.strip()
    raw: bytes | None = None
    if len(text) in (128, 130):
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the SM2 public key is neither hex nor base64") from None
    if len(raw) == 65 and raw[0] == 4:
        raw = raw[1:]
    if len(raw) != 64:
        raise ValueError("the SM2 public key is not an uncompressed 64-byte point")
    x, y = _int32(raw[:32]), _int32(raw[32:])
    # A point off the curve would make every verification meaningless.
    if not (x < _P and y < _P and (y * y - (x * x * x + _A * x + _B)) % _P == 0):
        raise ValueError("the SM2 public key is not a point on the SM2 curve")
    return x, y


def _digest(message: bytes, x: int, y: int, user_id: bytes) -> bytes:
    """e = SM3(ZA ‖ M), ZA = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA) (GM/T 0003.2 §5.5)."""
    entl = (len(user_id) * 8).to_bytes(2, "big")
    za = _sm3(
        entl
        + user_id
        + _A.to_bytes(32, "big")
        + _B.to_bytes(32, "big")
        + bytes.fromhex(_CURVE["g"])
        + x.to_bytes(32, "big")
        + y.to_bytes(32, "big")
    )
    return _sm3(za + message)


def sign_sm2(text: str, private_key_b64: str, *, user_id: bytes = DEFAULT_USER_ID) -> str:
    """SM3withSM2 over ``text`` (UTF-8): base64 of the raw 64-byte r‖s."""
    d = _private_scalar(private_key_b64)
    x, y = _derive_public(d)
    e = _digest(text.encode("utf-8"), x, y, user_id)
    signer = sm2.CryptSM2(private_key=f"{d:064x}", public_key="")
    while True:
        # k must be secret and uniform: gmssl's own default draws it from `random`
        # (Mersenne Twister), which would let anyone who sees enough signatures
        # recover the key. The loop covers the negligible r = 0 / r + k = n / s = 0.
        k = secrets.randbelow(_N - 1) + 1
        sig = signer.sign(e, f"{k:064x}")
        if sig is not None:
            return base64.b64encode(bytes.fromhex(sig)).decode("ascii")


def verify_sm2(text: str, signature_b64: str, public_key: str, *, user_id: bytes = DEFAULT_USER_ID) -> bool:
    """Does ``signature_b64`` (base64 r‖s) sign ``text`` under ``public_key``?

    A malformed signature is simply not valid (False); a malformed public key is a
    configuration error (ValueError).
    """
    x, y = parse_sm2_public_key(public_key)
    try:
        raw = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) != 64:
        return False
    r, s = _int32(raw[:32]), _int32(raw[32:])
    # GM/T 0003.2 §7.1 B1/B2: gmssl does not check the ranges itself.
    if not (1 <= r < _N and 1 <= s < _N):
        return False
    e = _digest(text.encode("utf-8"), x, y, user_id)
    verifier = sm2.CryptSM2(private_key="", public_key="")
    # Set directly: the constructor's ``lstrip("04")`` also eats the leading 0s
    # and 4s of a key whose x starts with "04".
    verifier.public_key = _point_hex(x, y)
    try:
        return bool(verifier.verify(raw.hex(), e))
    except TypeError:
        # gmssl returns None for the point at infinity (s·G + t·P = O) and then
        # fails indexing it; such a signature is invalid, not an error.
        return False
