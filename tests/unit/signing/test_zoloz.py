"""ZOLOZ gateway signing (SHA256withRSA, base64, URL-encoded) and RSA_AES bodies.

Known answers were made outside the code under test, with the test key in
``tests/fixtures/zoloz``:

* signatures: ``openssl dgst -sha256 -sign merchant_private.pem | base64 -w0``;
* AES: ``openssl enc -aes-256-ecb -K 000102…1f | base64 -w0`` (PKCS#7 padding);

and one signature is recomputed here in plain integer arithmetic (EMSA-PKCS1-v1_5
and ``pow``), with no OpenSSL at all.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from facegate.signing import zoloz as z

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "zoloz"
MERCHANT_PRIVATE = (FIXTURES / "merchant_private.pem").read_text()
MERCHANT_PUBLIC = (FIXTURES / "merchant_public.pem").read_text()
ZOLOZ_PRIVATE = (FIXTURES / "zoloz_private.pem").read_text()
ZOLOZ_PUBLIC = (FIXTURES / "zoloz_public.pem").read_text()

# The gateway protocol page's demonstration content (its JSON on one line).
DEMO = (
    "POST /api/v1/zoloz/authentication/test\n"
    '2089012345678900.2020-01-01T08:00:00+0800.{"title":"hello","description":"just for demonstration."}'
)
# openssl dgst -sha256 -sign merchant_private.pem kat.txt | base64 -w0
DEMO_SIGNATURE_B64 = (
    "E3Hj+5WioMEiC0N0mx2VJHFT7FL+62Wx3EyMh4ZAaGFkYSI5y7xp3xUCwakZELgCDkWeCxqlZuddLhOwzOlUbsf7fbhWtt+iBMgFbDMwpI9"
    "X1f0yfd5gBjY9ECra+ykRikPPHGQ15k9H1CzXNesgzQXAm+QVwmbkh+Nr87dAhh0EM9ENBiaskWMJUa59m1gRQkgKEd3VO3Jlb+UbyetRTW"
    "3sQjvUqLNizFrvbTdVhgVaSBS6YoD4prGVjfI6Ecv0h6KZcqBmaotCpLIz5ilLwyNCJcpYX+exPXQr4FrucZ5iLYxDTIbp4SvJhvY+HsOH9"
    "LOZf0xJGzL/82g4ZrSMdA=="
)

AES_KEY = bytes(range(32))
GOLDEN_JSON = (
    '{"bizId":"01HV3K8Z6Q4WJ9T2B5N7XRCM0D","face1":{"content":"/9j/4GdvbGRlbi1mYWNlLTE="},'
    '"face2":{"content":"/9j/4GdvbGRlbi1mYWNlLTI="},"sourceOfFace2":"SELFIE"}'
)
# openssl enc -aes-256-ecb -K 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f | base64 -w0
GOLDEN_JSON_ENCRYPTED = (
    "epJeNARq0A2NzrcA0qY98Hdirq0qmO1Y6x7Ji6iYOq7l7pzvWSRhKXJMdV5OtR4l/8vaP6WJQ2eCItRbWwwPgYLe6xm6VOXnpnbSLEjLOQ"
    "UY4svhyuofqFCz420CoFsLtQ0n7jBgzsEI3TxQN0h2gNpNJ+v5AyiVNluVCVfG9WbC9dR8riQiUAGpvJf569jVOytcEBNFlDrwIGJqzqDZ"
    "BA=="
)


# --- Request-Time -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dt", "expected"),
    [
        # The SDK's own example value.
        (
            datetime(2019, 4, 4, 12, 8, 56, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "2019-04-04T12:08:56+0530",
        ),
        (datetime(2020, 1, 1, 8, 0, 0, tzinfo=timezone(timedelta(hours=8))), "2020-01-01T08:00:00+0800"),
        (datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC), "2024-02-29T23:59:59+0000"),
        # The compare page's response sample: a negative offset.
        (
            datetime(2019, 11, 19, 21, 56, 15, tzinfo=timezone(timedelta(hours=-8))),
            "2019-11-19T21:56:15-0800",
        ),
        # Negative with minutes (Newfoundland): the sign covers both parts.
        (
            datetime(2021, 6, 1, 9, 5, 3, tzinfo=timezone(-timedelta(hours=3, minutes=30))),
            "2021-06-01T09:05:03-0330",
        ),
        # Microseconds are dropped: Java's pattern stops at seconds.
        (datetime(2021, 6, 1, 9, 5, 3, 999999, tzinfo=UTC), "2021-06-01T09:05:03+0000"),
        # Sub-minute offsets stop at minutes, as Java's "Z" does (Python's %z would add "15").
        (
            datetime(1900, 1, 1, 0, 0, 0, tzinfo=timezone(timedelta(hours=5, minutes=30, seconds=15))),
            "1900-01-01T00:00:00+0530",
        ),
    ],
)
def test_format_time(dt, expected):
    assert z.format_time(dt) == expected


def test_format_time_refuses_naive_datetimes():
    with pytest.raises(ValueError, match="timezone-aware"):
        z.format_time(datetime(2019, 4, 4, 12, 8, 56))


@pytest.mark.parametrize("text", ["2019-04-04T12:08:56+0530", "2019-04-04T12:08:56+05:30"])
def test_parse_time_reads_both_offset_spellings(text):
    assert z.parse_time(text) == datetime(2019, 4, 4, 6, 38, 56, tzinfo=UTC)


def test_parse_time_negative_offset():
    assert z.parse_time("2019-11-19T21:56:15-0800") == datetime(2019, 11, 20, 5, 56, 15, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2019-04-04 12:08:56+0530", "2019-04-04T12:08:56Z", "2019-04-04T12:08:56", ""])
def test_parse_time_refuses_other_shapes(text):
    with pytest.raises(ValueError, match="not a"):
        z.parse_time(text)


# --- content and signatures ---------------------------------------------------------------


def test_content_to_sign_is_method_uri_newline_then_dotted_fields():
    assert z.content_to_sign(
        "/api/v1/zoloz/facecompare/compare", "2188000123456789", "2019-04-04T12:08:56+0530", "{}"
    ) == ("POST /api/v1/zoloz/facecompare/compare\n2188000123456789.2019-04-04T12:08:56+0530.{}")


def test_content_to_sign_keeps_the_body_verbatim():
    body = '{\n "title": "hello",\n "x": "a.b"\n}'
    content = z.content_to_sign(
        "/api/v1/zoloz/authentication/test", "2089012345678900", "2020-01-01T08:00:00+0800", body
    )
    assert content.endswith("2020-01-01T08:00:00+0800." + body)


def test_sign_matches_openssl_known_answer_url_encoded():
    # URL encoding as Java's URLEncoder: + -> %2B, / -> %2F, = -> %3D.
    expected = DEMO_SIGNATURE_B64.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    assert z.sign(DEMO, MERCHANT_PRIVATE) == expected


def test_signature_is_url_encoded():
    sig = z.sign(DEMO, MERCHANT_PRIVATE)
    assert not set(sig) & set("+/= ")
    # This vector contains all three characters that need encoding.
    assert "%2B" in sig
    assert "%2F" in sig
    assert sig.endswith("%3D%3D")
    assert len(base64.b64decode(unquote(sig))) == 256  # one 2048-bit RSA block


def test_sign_equals_an_independent_integer_arithmetic_signature():
    """RSASSA-PKCS1-v1_5 by hand: EM = 00 01 FF.. 00 || DigestInfo(SHA-256) || H, s = EM^d mod n."""
    numbers = serialization.load_pem_private_key(MERCHANT_PRIVATE.encode(), password=None).private_numbers()
    n, d = numbers.public_numbers.n, numbers.d
    k = (n.bit_length() + 7) // 8
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(DEMO.encode()).digest()
    em = b"\x00\x01" + b"\xff" * (k - len(digest_info) - 3) + b"\x00" + digest_info
    s = pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")
    independent = quote(base64.b64encode(s).decode(), safe="")

    assert z.sign(DEMO, MERCHANT_PRIVATE) == independent
    assert z.verify(DEMO, independent, MERCHANT_PUBLIC)


def test_sign_verify_round_trip_with_utf8_content():
    content = z.content_to_sign("/api/v1/x", "2188000123456789", "2019-04-04T12:08:56+0530", '{"name":"张三"}')
    assert z.verify(content, z.sign(content, MERCHANT_PRIVATE), MERCHANT_PUBLIC)


def test_verify_accepts_the_raw_base64_spelling_too():
    # The protocol page's sample header carries raw base64 (with "+", "/" and "=").
    assert z.verify(DEMO, DEMO_SIGNATURE_B64, MERCHANT_PUBLIC)


def test_a_tampered_body_fails():
    sig = z.sign(DEMO, MERCHANT_PRIVATE)
    assert not z.verify(DEMO.replace("hello", "hellO"), sig, MERCHANT_PUBLIC)
    assert not z.verify(DEMO + " ", sig, MERCHANT_PUBLIC)


def test_a_different_time_or_client_fails():
    sig = z.sign(DEMO, MERCHANT_PRIVATE)
    assert not z.verify(DEMO.replace("08:00:00+0800", "08:00:01+0800"), sig, MERCHANT_PUBLIC)
    assert not z.verify(DEMO.replace("2089012345678900", "2089012345678901"), sig, MERCHANT_PUBLIC)


def test_the_wrong_public_key_fails():
    assert not z.verify(DEMO, z.sign(DEMO, MERCHANT_PRIVATE), ZOLOZ_PUBLIC)


@pytest.mark.parametrize("garbage", ["", "not base64!", "%ZZ", "AAAA", "QUJD" * 100])
def test_garbage_signatures_are_false_not_errors(garbage):
    assert z.verify(DEMO, garbage, MERCHANT_PUBLIC) is False


# --- headers ----------------------------------------------------------------------------------


def test_signature_header_round_trip():
    sig = z.sign(DEMO, MERCHANT_PRIVATE)
    header = z.signature_header(sig)
    assert header == f"algorithm=RSA256, signature={sig}"
    assert z.parse_signature_header(header) == sig


def test_parse_signature_header_keeps_raw_base64_padding():
    header = f"algorithm=RSA256, signature={DEMO_SIGNATURE_B64}"
    assert z.parse_signature_header(header) == DEMO_SIGNATURE_B64
    assert z.verify(DEMO, z.parse_signature_header(header), MERCHANT_PUBLIC)


def test_parse_signature_header_tolerates_order_and_spacing():
    assert z.parse_signature_header("signature=abc%3D ,algorithm=RSA256") == "abc%3D"


@pytest.mark.parametrize(
    "header",
    [
        "algorithm=RSA1, signature=abc",  # another algorithm
        "signature=abc",  # no algorithm
        "algorithm=RSA256",  # no signature
        "algorithm=RSA256, signature=",  # empty signature
        "algorithm=RSA256, signature=a, signature=b",  # ambiguous
        "RSA256 abc",  # not name=value
    ],
)
def test_parse_signature_header_refuses_malformed(header):
    with pytest.raises(ValueError, match=r"algorithm|signature|twice|name=value"):
        z.parse_signature_header(header)


def test_encrypt_header_round_trip():
    wrapped = z.wrap_key(AES_KEY, ZOLOZ_PUBLIC)
    header = z.encrypt_header(wrapped)
    assert header.startswith("algorithm=RSA_AES, symmetricKey=")
    assert z.parse_encrypt_header(header) == wrapped
    with pytest.raises(ValueError, match="algorithm is not RSA_AES"):
        z.parse_encrypt_header("algorithm=RSA, symmetricKey=abc")
    with pytest.raises(ValueError, match="no symmetricKey"):
        z.parse_encrypt_header("algorithm=RSA_AES")


# --- RSA_AES ---------------------------------------------------------------------------------


def test_encrypt_body_matches_openssl_aes_256_ecb():
    assert z.encrypt_body(GOLDEN_JSON, AES_KEY) == GOLDEN_JSON_ENCRYPTED


def test_encrypt_decrypt_round_trip_for_every_aes_size():
    text = '{"bizId":"x","note":"多字节","pad":"' + "y" * 33 + '"}'
    for size in (16, 24, 32):
        key = bytes(range(100, 100 + size))
        assert z.decrypt_body(z.encrypt_body(text, key), key) == text


def test_decrypt_body_reads_url_safe_base64_and_line_breaks():
    urlsafe = GOLDEN_JSON_ENCRYPTED.replace("+", "-").replace("/", "_").rstrip("=")
    assert z.decrypt_body(urlsafe, AES_KEY) == GOLDEN_JSON
    wrapped = "\n".join(GOLDEN_JSON_ENCRYPTED[i : i + 76] for i in range(0, len(GOLDEN_JSON_ENCRYPTED), 76))
    assert z.decrypt_body(wrapped.encode(), AES_KEY) == GOLDEN_JSON


def test_decrypt_body_under_the_wrong_key_fails():
    # A fixed wrong key: its garbage plaintext does not end in valid PKCS#7 padding.
    with pytest.raises(ValueError, match="does not decrypt"):
        z.decrypt_body(GOLDEN_JSON_ENCRYPTED, bytes(range(1, 33)))


@pytest.mark.parametrize("body", ["", "AAAA", "not base64 at all!"])
def test_decrypt_body_refuses_non_block_input(body):
    with pytest.raises(ValueError, match=r"AES blocks|not base64"):
        z.decrypt_body(body, AES_KEY)


def test_aes_keys_must_be_aes_sized():
    with pytest.raises(ValueError, match="16, 24 or 32"):
        z.encrypt_body("{}", b"short")
    with pytest.raises(ValueError, match="16, 24 or 32"):
        z.wrap_key(b"x" * 20, ZOLOZ_PUBLIC)


def test_wrap_unwrap_round_trip_and_wire_format():
    wrapped = z.wrap_key(AES_KEY, ZOLOZ_PUBLIC)
    assert not set(wrapped) & set("+/=")  # URL-encoded like the signature
    # An independent unwrap: ZOLOZ's side, with cryptography directly.
    zoloz_key = serialization.load_pem_private_key(ZOLOZ_PRIVATE.encode(), password=None)
    assert zoloz_key.decrypt(base64.b64decode(unquote(wrapped)), padding.PKCS1v15()) == AES_KEY
    assert z.unwrap_key(wrapped, ZOLOZ_PRIVATE) == AES_KEY


def test_wrapping_is_randomised_by_rsa_padding():
    assert z.wrap_key(AES_KEY, ZOLOZ_PUBLIC) != z.wrap_key(AES_KEY, ZOLOZ_PUBLIC)


def test_unwrap_refuses_a_key_that_is_not_an_aes_key():
    merchant_public = serialization.load_pem_public_key(MERCHANT_PUBLIC.encode())
    not_aes = base64.b64encode(merchant_public.encrypt(b"x" * 20, padding.PKCS1v15())).decode()
    with pytest.raises(ValueError, match="not decrypt to an AES key"):
        z.unwrap_key(not_aes, MERCHANT_PRIVATE)


def test_unwrap_refuses_a_ciphertext_of_the_wrong_size():
    with pytest.raises(ValueError, match="the symmetric key does not decrypt"):
        z.unwrap_key("AAAA", MERCHANT_PRIVATE)


# --- keys ----------------------------------------------------------------------------------------


def _bare_base64(pem: str) -> str:
    return "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))


def test_keys_load_from_pem_and_from_the_portals_bare_base64():
    assert z.load_private_key(MERCHANT_PRIVATE).key_size == 2048
    bare_private = z.load_private_key(_bare_base64(MERCHANT_PRIVATE))
    bare_public = z.load_public_key(_bare_base64(MERCHANT_PUBLIC))
    assert z.verify(DEMO, z.sign(DEMO, bare_private), bare_public)


def test_pkcs1_pem_private_keys_load():
    key = serialization.load_pem_private_key(MERCHANT_PRIVATE.encode(), password=None)
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    assert pkcs1.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert z.sign(DEMO, pkcs1) == z.sign(DEMO, MERCHANT_PRIVATE)


@pytest.mark.parametrize("text", ["", "hello", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "全角"])
def test_bad_private_keys_raise_without_echoing_the_input(text):
    with pytest.raises(ValueError, match="not a PEM or base64 DER private key") as e:
        z.load_private_key(text)
    assert str(e.value) == "not a PEM or base64 DER private key"


def test_a_public_key_is_not_a_private_key_and_vice_versa():
    with pytest.raises(ValueError, match="private key"):
        z.load_private_key(MERCHANT_PUBLIC)
    with pytest.raises(ValueError, match="public key"):
        z.load_public_key(MERCHANT_PRIVATE)


def test_short_rsa_keys_are_refused():
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point of the test
    pem = small.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(ValueError, match="2048"):
        z.load_private_key(pem)


def test_encrypted_private_keys_are_refused():
    key = serialization.load_pem_private_key(MERCHANT_PRIVATE.encode(), password=None)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    ).decode()
    with pytest.raises(ValueError, match="encrypted"):
        z.load_private_key(pem)
