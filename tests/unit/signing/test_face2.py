"""face2 signing: the doc's SHA256 known answer, canonicalisation, SM3withSM2."""

from __future__ import annotations

import base64
import hashlib
import secrets

import pytest
from gmssl import sm2

from facegate.signing import face2 as signing

DOC_SECRET = "D91CEB11EE62219CD91CEB11EE62219C"
DOC_SM2_KEY = "JShsBOJL0RgPAoPttEB1hgtPAvCikOl0V1oTOYL7k5U="
DOC_DATA = {"user_id": "gt", "face_id": "5ed21b1c262daabe314048f5"}

# The doc's printed string to sign, with one repair: the doc shows "…signType=SM2×tamp=…",
# which is "&timestamp" after an HTML renderer read "&times" as the entity "×".
DOC_STRING = (
    'appId=19E179E5DC29C05E65B90CDE57A1C7E5&data={"face_id":"5ed21b1c262daabe314048f5","user_id":"gt"}'
    "&encType=plain&signType=SM2&timestamp=1591943910&version=1&key=D91CEB11EE62219CD91CEB11EE62219C"
)
DOC_SHA256_HEX = "2072bd8afb678c03ce9be14202e47b12031aa42a0a8c8593723d7027007ef804"
DOC_SHA256_B64 = "MjA3MmJkOGFmYjY3OGMwM2NlOWJlMTQyMDJlNDdiMTIwMzFhYTQyYTBhOGM4NTkzNzIzZDcwMjcwMDdlZjgwNA=="
DOC_SM2_SIGNATURE = "LXgGBQNsXwofSXr+uXYiw0al7MFNNdUl0OyjpxHGKSPjJAr1N5oO6Tq3WL0C8UVX1pmDNH/GZK1Q0h+VvzKiEg=="

# The doc key's public point, derived independently by OpenSSL 3.0
# (`openssl pkey -pubout` from an SEC1 key holding only the scalar).
DOC_SM2_PUBLIC = (
    "044f1df6069a086ac4e1d1c4ad60a3ab26a19ba5fc97a45dedf386c7480dcab18f"
    "a745c3a0f6dba6ed6993d0367d9f6b12c06dc01d4079c9eda3f807e21f93edc6"
)
# DOC_STRING signed by OpenSSL 3.0 with the doc's key (`openssl pkeyutl -sign -rawin
# -digest sm3 -pkeyopt distid:1234567812345678`), its DER (r, s) re-packed as r‖s.
OPENSSL_SIGNATURE = "97JLItADJVPdyUAZiLqjdeeK32jOYxqqEmC6klV1syYM2nN/ij7V+DSI6drg2BwTKqNcPknvZr2r+Pzzi4nE3w=="

N = int(sm2.default_ecc_table["n"], 16)


def doc_params(sign_type: str) -> dict:
    return {
        "appId": "19E179E5DC29C05E65B90CDE57A1C7E5",
        "version": "1",
        "signType": sign_type,
        "signData": "...",
        "encType": "plain",
        "timestamp": 1591943910,
        "data": dict(DOC_DATA),
    }


def new_key() -> str:
    return base64.b64encode((secrets.randbelow(N - 2) + 1).to_bytes(32, "big")).decode()


# --- the doc's known answer ---------------------------------------------------------------


def test_the_doc_example_builds_the_doc_string():
    # The doc's request parameters say signType "SHA256", but its printed string (and
    # the SHA256 result under it) was made from the same parameters with signType
    # "SM2": signType is itself a signed field, so the known answer needs "SM2".
    assert signing.string_to_sign(doc_params("SM2"), DOC_SECRET) == DOC_STRING


def test_the_doc_sha256_known_answer():
    signature = signing.sign_sha256(DOC_STRING)
    assert signature == DOC_SHA256_B64
    assert base64.b64decode(signature).decode() == DOC_SHA256_HEX


def test_signtype_is_signed_so_the_sha256_params_give_another_value():
    text = signing.string_to_sign(doc_params("SHA256"), DOC_SECRET)
    assert text == DOC_STRING.replace("signType=SM2", "signType=SHA256")
    assert signing.sign_sha256(text) != DOC_SHA256_B64


def test_sha256_is_base64_of_lowercase_hex_of_utf8():
    text = 'data={"name":"张三"}&key=s'
    expected = base64.b64encode(hashlib.sha256(text.encode("utf-8")).hexdigest().encode()).decode()
    assert signing.sign_sha256(text) == expected
    assert len(base64.b64decode(signing.sign_sha256(text))) == 64  # 64 hex characters


# --- canonicalisation -------------------------------------------------------------------


def test_sign_data_enc_data_and_extra_are_left_out():
    params = {"b": "2", "a": "1", "signData": "x", "encData": "y", "extra": {"z": 1}}
    assert signing.string_to_sign(params, "S") == "a=1&b=2&key=S"


def test_keys_ascend_and_the_secret_comes_last_even_after_later_keys():
    params = {"zeta": "z", "Alpha": "A", "alpha": "a", "key2": "k"}
    # Code-point order: upper case before lower case, as a Java TreeMap sorts ASCII.
    assert signing.string_to_sign(params, "S") == "Alpha=A&alpha=a&key2=k&zeta=z&key=S"


def test_data_is_compact_json_sorted_at_every_depth():
    params = {"data": {"b": [{"y": 2, "x": 1}, 3], "a": {"d": True, "c": None}}}
    assert signing.string_to_sign(params, "S") == ('data={"a":{"c":null,"d":true},"b":[{"x":1,"y":2},3]}&key=S')


def test_non_ascii_text_is_kept_as_is_and_signed_as_utf8():
    params = {"data": {"name": "张三", "note": 'a"b'}}
    text = signing.string_to_sign(params, "S")
    assert text == 'data={"name":"张三","note":"a\\"b"}&key=S'
    expected = base64.b64encode(hashlib.sha256(text.encode("utf-8")).hexdigest().encode()).decode()
    assert signing.sign_sha256(text) == expected


def test_strings_go_in_raw_and_other_values_as_json():
    params = {"s": "a=b&c", "i": 5, "t": True}
    assert signing.string_to_sign(params, "S") == "i=5&s=a=b&c&t=true&key=S"


def test_json_numbers_keep_the_text_they_arrived_in():
    # A Java signer prints 1.0E-5 where Python would print 1e-05.
    data = {"score": signing.JsonNumber("1.0E-5"), "n": signing.JsonNumber("10")}
    assert signing.canonical_json(data) == '{"n":10,"score":1.0E-5}'
    assert signing.string_to_sign({"code": signing.JsonNumber("0")}, "S") == "code=0&key=S"


def test_nan_cannot_be_signed():
    with pytest.raises(ValueError, match="not JSON compliant"):
        signing.canonical_json({"x": float("nan")})


# --- SM2 --------------------------------------------------------------------------------------


def test_the_doc_private_key_is_a_32_byte_scalar_with_the_openssl_public_key():
    assert len(base64.b64decode(DOC_SM2_KEY)) == 32
    assert signing.sm2_public_key(DOC_SM2_KEY) == DOC_SM2_PUBLIC


def test_an_openssl_signature_of_the_doc_string_verifies():
    assert signing.verify_sm2(DOC_STRING, OPENSSL_SIGNATURE, DOC_SM2_PUBLIC)
    assert not signing.verify_sm2(DOC_STRING + " ", OPENSSL_SIGNATURE, DOC_SM2_PUBLIC)


def test_the_docs_sm2_signature_was_made_with_another_key():
    # Recorded fact: the printed signature does not verify under the printed key, for
    # either signType — so SM2 is tested by round trips and the OpenSSL vector.
    public = signing.sm2_public_key(DOC_SM2_KEY)
    for sign_type in ("SM2", "SHA256"):
        text = signing.string_to_sign(doc_params(sign_type), DOC_SECRET)
        assert not signing.verify_sm2(text, DOC_SM2_SIGNATURE, public)


@pytest.mark.parametrize("key", [DOC_SM2_KEY, new_key()], ids=["doc-key", "generated-key"])
def test_sm2_round_trip(key):
    public = signing.sm2_public_key(key)
    signature = signing.sign_sm2(DOC_STRING, key)
    raw = base64.b64decode(signature, validate=True)
    assert len(raw) == 64  # r‖s, no hex step, no DER
    assert len(signature) == len(DOC_SM2_SIGNATURE) == 88
    assert signing.verify_sm2(DOC_STRING, signature, public)


def test_sm2_signatures_are_randomised():
    assert signing.sign_sm2(DOC_STRING, DOC_SM2_KEY) != signing.sign_sm2(DOC_STRING, DOC_SM2_KEY)


def test_gmssls_own_za_agrees_with_ours():
    # gmssl computes ZA (user id 1234567812345678) in its own code: a second opinion.
    signature = signing.sign_sm2("短消息 short message", DOC_SM2_KEY)
    checker = sm2.CryptSM2(private_key="", public_key="")
    checker.public_key = DOC_SM2_PUBLIC[2:]
    assert checker.verify_with_sm3(base64.b64decode(signature).hex(), "短消息 short message".encode())


def test_a_tampered_message_signature_or_key_fails():
    key, other = DOC_SM2_KEY, new_key()
    signature = signing.sign_sm2(DOC_STRING, key)
    public = signing.sm2_public_key(key)
    assert not signing.verify_sm2(DOC_STRING.replace("version=1", "version=2"), signature, public)
    raw = bytearray(base64.b64decode(signature))
    raw[40] ^= 0x01
    assert not signing.verify_sm2(DOC_STRING, base64.b64encode(bytes(raw)).decode(), public)
    assert not signing.verify_sm2(DOC_STRING, signature, signing.sm2_public_key(other))


def test_another_user_id_gives_another_signature():
    signature = signing.sign_sm2(DOC_STRING, DOC_SM2_KEY, user_id=b"ALICE123@YAHOO.COM")
    assert signing.verify_sm2(DOC_STRING, signature, DOC_SM2_PUBLIC, user_id=b"ALICE123@YAHOO.COM")
    assert not signing.verify_sm2(DOC_STRING, signature, DOC_SM2_PUBLIC)


@pytest.mark.parametrize(
    "signature",
    [
        "not base64!",
        base64.b64encode(b"\x01" * 63).decode(),
        base64.b64encode(bytes(32) + b"\x01" * 32).decode(),  # r = 0
        base64.b64encode(b"\x01" * 32 + N.to_bytes(32, "big")).decode(),  # s = n
    ],
    ids=["not-base64", "63-bytes", "r-zero", "s-out-of-range"],
)
def test_malformed_signatures_are_invalid_not_errors(signature):
    assert signing.verify_sm2(DOC_STRING, signature, DOC_SM2_PUBLIC) is False


@pytest.mark.parametrize(
    "form",
    [
        DOC_SM2_PUBLIC,
        DOC_SM2_PUBLIC[2:],
        DOC_SM2_PUBLIC.upper(),
        base64.b64encode(bytes.fromhex(DOC_SM2_PUBLIC)).decode(),
        base64.b64encode(bytes.fromhex(DOC_SM2_PUBLIC[2:])).decode(),
    ],
    ids=["hex04", "hex", "HEX04", "b64-04", "b64"],
)
def test_public_key_forms(form):
    assert signing.verify_sm2(DOC_STRING, OPENSSL_SIGNATURE, form)


def test_a_public_key_off_the_curve_is_refused():
    off = DOC_SM2_PUBLIC[:-1] + ("7" if DOC_SM2_PUBLIC[-1] != "7" else "8")
    with pytest.raises(ValueError, match="not a point on the SM2 curve"):
        signing.parse_sm2_public_key(off)


@pytest.mark.parametrize(
    "key",
    [
        "%%%",
        base64.b64encode(b"\x01" * 31 + b"\x01" * 3).decode(),  # 34 bytes
        base64.b64encode(bytes(32)).decode(),  # d = 0
        base64.b64encode((N - 1).to_bytes(32, "big")).decode(),  # d = n - 1: 1 + d has no inverse
    ],
    ids=["not-base64", "34-bytes", "zero", "n-minus-1"],
)
def test_unusable_private_keys_are_refused_without_echoing_them(key):
    with pytest.raises(ValueError, match=r"^the SM2 private key ") as e:
        signing.sign_sm2(DOC_STRING, key)
    assert key not in str(e.value)


def test_a_java_sign_byte_or_dropped_zero_is_the_same_scalar():
    d = base64.b64decode(DOC_SM2_KEY)
    with_sign_byte = base64.b64encode(b"\x00" + d).decode()
    assert signing.sm2_public_key(with_sign_byte) == DOC_SM2_PUBLIC
    small = (1234567).to_bytes(4, "big")
    assert signing.sm2_public_key(base64.b64encode(small).decode()) == signing.sm2_public_key(
        base64.b64encode(bytes(28) + small).decode()
    )
