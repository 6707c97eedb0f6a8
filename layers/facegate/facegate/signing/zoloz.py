"""ZOLOZ gateway protocol: SHA256withRSA signatures and RSA_AES bodies.

Every request and every response is signed. The signed content is ::

    POST <request URI>\\n<Client-Id>.<Request-Time or Response-Time>.<body as sent>

signed with SHA256withRSA (RSASSA-PKCS1-v1_5 over SHA-256): requests with the
merchant's private key, responses with ZOLOZ's. The signature travels base64 and
then URL-encoded in ``Signature: algorithm=RSA256, signature=<...>``. The URL
encoding matters: the SDKs split the header on "," and "=", so a raw base64 "="
would break their parser; Java's ``URLEncoder`` turns "+", "/", "=" into "%2B",
"%2F", "%3D", which is what ``quote(..., safe="")`` does for the base64 alphabet.

``Request-Time`` is Java's ``yyyy-MM-dd'T'HH:mm:ssZ``: seconds, and the offset as
``+hhmm`` without a colon (``2019-04-04T12:08:56+0530``).

RSA_AES (optional): the body is ``base64(AES/ECB/PKCS5Padding(json))`` under a
fresh random AES key, sent as ``text/plain; charset=UTF-8``; the key goes RSA
(PKCS#1 v1.5) encrypted with the recipient's public key, base64 and URL-encoded, in
``Encrypt: algorithm=RSA_AES, symmetricKey=<...>``. ZOLOZ encrypts the response the
same way under its own key, wrapped with the *merchant's* public key. The signature
covers the encrypted body as sent.

Sources: ZOLOZ's Java SDK (zoloz-pte-ltd/zoloz-api-sdk,
``client/protocol/TwoWayAuthProtocol.java``, ``client/OpenApiClient.java``,
``util/GenSignUtil.java``, ``util/AESUtil.java``, ``util/RSAUtil.java``) and the
gateway protocol pages (docs.zoloz.com/zoloz/saas/apireference/msgstructure,
…/encrypt_decrypt).

Pure functions: no clock and no randomness here; callers pass the time and the AES key.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from urllib.parse import quote, unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SIGNATURE_ALGORITHM = "RSA256"
ENCRYPT_ALGORITHM = "RSA_AES"
# The current SDK generates 256-bit keys (``aesLength = 256``) and the protocol page
# says "randomly generate a 256-bits data"; older SDKs used 128. We send 256 and
# accept any AES size back.
AES_KEY_BYTES = 32
_AES_KEY_SIZES = frozenset({16, 24, 32})
# ZOLOZ issues and asks for RSA 2048 key pairs; anything weaker is a misconfiguration.
MIN_RSA_BITS = 2048

_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})([+-])(\d{2}):?(\d{2})$")


# --- time ---------------------------------------------------------------------------


def format_time(dt: datetime) -> str:
    """``dt`` as Java's ``yyyy-MM-dd'T'HH:mm:ssZ``, e.g. ``2019-04-04T12:08:56+0530``.

    Formatted by hand rather than with ``%z``: Python writes sub-minute offsets as
    ``+053015`` where Java's ``Z`` stops at minutes, and the signature covers this
    exact string.
    """
    offset = dt.utcoffset()
    if offset is None:
        # A naive time would be read in the host's zone and be hours off ZOLOZ's clock.
        raise ValueError("format_time needs a timezone-aware datetime")
    total = int(offset.total_seconds())
    sign = "-" if total < 0 else "+"
    hh, mm = divmod(abs(total) // 60, 60)  # seconds dropped, as Java's "Z" does
    date = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
    return f"{date}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}{sign}{hh:02d}{mm:02d}"


def parse_time(text: str) -> datetime:
    """A ``Request-Time``/``Response-Time`` value. Accepts the SDK's ``+hhmm`` and the
    API pages' sample spelling ``+hh:mm`` (``2019-04-04T12:08:56+05:30``)."""
    m = _TIME.match(text.strip())
    if m is None:
        raise ValueError("not a yyyy-MM-ddTHH:mm:ss±hhmm time")
    y, mo, d, h, mi, s, sign, oh, om = m.groups()
    offset = timedelta(hours=int(oh), minutes=int(om))
    if offset >= timedelta(hours=24):
        raise ValueError("time zone offset out of range")
    tz = timezone(-offset if sign == "-" else offset)
    return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=tz)


# --- signatures -----------------------------------------------------------------------


def content_to_sign(uri: str, client_id: str, time_str: str, body: str) -> str:
    """The string both sides sign: ``POST <uri>\\n<clientId>.<time>.<body>``."""
    return f"POST {uri}\n{client_id}.{time_str}.{body}"


def sign(content: str, merchant_private_key: str | RSAPrivateKey) -> str:
    """SHA256withRSA over the UTF-8 content, base64, then URL-encoded (ready for the header)."""
    key = _private(merchant_private_key)
    raw = key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return quote(base64.b64encode(raw).decode("ascii"), safe="")


def verify(content: str, signature: str, zoloz_public_key: str | RSAPublicKey) -> bool:
    """Does ``signature`` (URL-encoded as the SDK sends it, or raw base64 as the
    protocol page's sample shows) sign ``content`` under the public key?"""
    key = _public(zoloz_public_key)
    # unquote leaves a raw base64 "+" alone (it is not form decoding), so both
    # spellings decode to the same bytes.
    try:
        raw = base64.b64decode(unquote(signature.strip()), validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(raw, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def signature_header(signature: str) -> str:
    """The ``Signature`` header value for a URL-encoded signature from :func:`sign`."""
    return f"algorithm={SIGNATURE_ALGORITHM}, signature={signature}"


def parse_params(value: str) -> dict[str, str]:
    """``k1=v1, k2=v2`` as a dict. Splits each pair at its first "=", so an
    unencoded base64 value with "=" padding still reads whole."""
    params: dict[str, str] = {}
    for pair in value.split(","):
        name, eq, val = pair.strip().partition("=")
        if not eq or not name.strip():
            raise ValueError("a header parameter is not name=value")
        name = name.strip()
        if name in params:
            # Two values for one name: which one the other side used is a guess.
            raise ValueError(f"header parameter '{name}' appears twice")
        params[name] = val.strip()
    return params


def parse_signature_header(value: str) -> str:
    """The signature (still as sent) from a ``Signature`` header; ValueError if the
    header is malformed or names an algorithm other than RSA256."""
    return _header_field(value, "Signature", SIGNATURE_ALGORITHM, "signature")


# --- RSA_AES ------------------------------------------------------------------------------


def encrypt_body(plaintext: str, aes_key: bytes) -> str:
    """``base64(AES/ECB/PKCS5Padding(plaintext))`` — Java's ``Cipher.getInstance("AES")``."""
    cipher = _aes(aes_key)
    padder = sym_padding.PKCS7(algorithms.AES.block_size).padder()
    data = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    enc = cipher.encryptor()
    return base64.b64encode(enc.update(data) + enc.finalize()).decode("ascii")


def decrypt_body(body: str | bytes, aes_key: bytes) -> str:
    """The plaintext of an RSA_AES body. Reads standard and URL-safe base64: the SDKs
    send the standard alphabet, the protocol page writes ``base64urlsafe_encode``."""
    raw = _b64decode(body)
    if not raw or len(raw) % 16:
        raise ValueError("the encrypted body is not a whole number of AES blocks")
    dec = _aes(aes_key).decryptor()
    data = dec.update(raw) + dec.finalize()
    unpadder = sym_padding.PKCS7(algorithms.AES.block_size).unpadder()
    try:
        plain = unpadder.update(data) + unpadder.finalize()
    except ValueError:
        raise ValueError("the encrypted body does not decrypt under this key") from None
    return plain.decode("utf-8")


def wrap_key(aes_key: bytes, public_key: str | RSAPublicKey) -> str:
    """The ``symmetricKey`` value: the AES key RSA-encrypted (PKCS#1 v1.5, as the SDK's
    ``RSA/ECB/PKCS1Padding``), base64, URL-encoded. Randomised by RSA padding."""
    if len(aes_key) not in _AES_KEY_SIZES:
        raise ValueError("an AES key is 16, 24 or 32 bytes")
    raw = _public(public_key).encrypt(aes_key, padding.PKCS1v15())
    return quote(base64.b64encode(raw).decode("ascii"), safe="")


def unwrap_key(symmetric_key: str, private_key: str | RSAPrivateKey) -> bytes:
    """The AES key inside a ``symmetricKey`` value.

    OpenSSL answers a PKCS#1 v1.5 padding failure with pseudo-random bytes rather
    than an error (implicit rejection, against Bleichenbacher/Marvin oracles), so a
    wrong key usually shows up here as a wrong length, or later as a body that does
    not decrypt; both are ValueError.
    """
    raw = _b64decode(unquote(symmetric_key.strip()))
    try:
        key = _private(private_key).decrypt(raw, padding.PKCS1v15())
    except ValueError:  # e.g. a ciphertext that is not one RSA block long
        raise ValueError("the symmetric key does not decrypt") from None
    if len(key) not in _AES_KEY_SIZES:
        raise ValueError("the symmetric key does not decrypt to an AES key")
    return key


def encrypt_header(wrapped_key: str) -> str:
    """The ``Encrypt`` header value for a URL-encoded key from :func:`wrap_key`."""
    return f"algorithm={ENCRYPT_ALGORITHM}, symmetricKey={wrapped_key}"


def parse_encrypt_header(value: str) -> str:
    """The ``symmetricKey`` (still as sent) from an ``Encrypt`` header."""
    return _header_field(value, "Encrypt", ENCRYPT_ALGORITHM, "symmetricKey")


def _header_field(value: str, header: str, algorithm: str, field: str) -> str:
    """One field of a ZOLOZ header, which must name ``algorithm``; ValueError if not."""
    params = parse_params(value)
    if params.get("algorithm") != algorithm:
        raise ValueError(f"the {header} header's algorithm is not {algorithm}")
    found = params.get(field)
    if not found:
        raise ValueError(f"the {header} header has no {field}")
    return found


# --- keys ---------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def load_private_key(text: str) -> RSAPrivateKey:
    """An RSA private key from PEM (PKCS#8 or PKCS#1), or from the bare base64 PKCS#8
    DER that ZOLOZ's portal and SDKs use. Cached: parsing is slow and keys rarely change."""
    data = text.strip()
    try:
        if data.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(data.encode("ascii"), password=None)
        else:
            key = serialization.load_der_private_key(_b64decode(data), password=None)
    except TypeError:
        raise ValueError("encrypted private keys are not supported") from None
    except (ValueError, UnicodeEncodeError, binascii.Error):
        # cryptography's message can quote the input; say only what went wrong.
        raise ValueError("not a PEM or base64 DER private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("the private key is not an RSA key")
    return _long_enough(key)


@lru_cache(maxsize=16)
def load_public_key(text: str) -> RSAPublicKey:
    """An RSA public key from PEM (SubjectPublicKeyInfo or PKCS#1), or from the bare
    base64 X.509 DER that ZOLOZ's portal and SDKs use."""
    data = text.strip()
    try:
        if data.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(data.encode("ascii"))
        else:
            key = serialization.load_der_public_key(_b64decode(data))
    except (ValueError, UnicodeEncodeError, binascii.Error):
        raise ValueError("not a PEM or base64 DER public key") from None
    if not isinstance(key, RSAPublicKey):
        raise ValueError("the public key is not an RSA key")
    return _long_enough(key)


def _long_enough[K: (RSAPrivateKey, RSAPublicKey)](key: K) -> K:
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"the RSA key has {key.key_size} bits; ZOLOZ uses {MIN_RSA_BITS}")
    return key


def _private(key: str | RSAPrivateKey) -> RSAPrivateKey:
    return load_private_key(key) if isinstance(key, str) else key


def _public(key: str | RSAPublicKey) -> RSAPublicKey:
    return load_public_key(key) if isinstance(key, str) else key


def _aes(aes_key: bytes) -> Cipher[modes.ECB]:
    if len(aes_key) not in _AES_KEY_SIZES:
        raise ValueError("an AES key is 16, 24 or 32 bytes")
    # ECB is ZOLOZ's choice (Java's default "AES" transformation), not ours: both
    # sides must use it to interoperate. It leaks repeated blocks; TLS stays the
    # confidentiality guarantee and the RSA signature the integrity one.
    return Cipher(algorithms.AES(aes_key), modes.ECB())  # noqa: S305 - ZOLOZ's RSA_AES is AES/ECB (above)  # nosec B305


def _b64decode(text: str | bytes) -> bytes:
    """Standard or URL-safe base64, whitespace and missing padding tolerated."""
    try:
        data = text.encode("ascii") if isinstance(text, str) else bytes(text)
    except UnicodeEncodeError:
        raise ValueError("not base64") from None
    data = re.sub(rb"\s+", b"", data).replace(b"-", b"+").replace(b"_", b"/")
    data += b"=" * (-len(data) % 4)
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
