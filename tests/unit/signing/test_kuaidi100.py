"""Kuaidi100 secret_sign = upper(md5(secret_key + secret_secret)).

Expected values are MD5 test vectors from RFC 1321 (appendix A.5), upper-cased, and
one UTF-8 vector computed with coreutils ``md5sum``, not with the code under test.
"""

from __future__ import annotations

import pytest

from facegate.signing.kuaidi100 import secret_sign


@pytest.mark.parametrize(
    ("key", "secret", "expected"),
    [
        ("", "", "D41D8CD98F00B204E9800998ECF8427E"),  # MD5("")
        ("a", "bc", "900150983CD24FB0D6963F7D28E17F72"),  # MD5("abc")
        ("ab", "c", "900150983CD24FB0D6963F7D28E17F72"),  # same concatenation, same sign
        ("message ", "digest", "F96B697D7CB7938D525A2F31AAF161D0"),  # MD5("message digest")
        # printf '快递100人脸' | md5sum  (UTF-8 bytes e5 bf ab e9 80 92 31 30 30 e4 ba ba e8 84 b8)
        ("快递100", "人脸", "93E81C8F855A9E9438F89F2026DC530D"),
    ],
)
def test_known_answers(key, secret, expected):
    assert secret_sign(key, secret) == expected


def test_key_comes_before_secret():
    # MD5("bca") differs from MD5("abc"): the order of concatenation matters.
    assert secret_sign("bc", "a") != "900150983CD24FB0D6963F7D28E17F72"


def test_upper_case_hex_of_32_characters():
    sign = secret_sign("kd100-sandbox-key", "kd100-sandbox-secret")
    assert len(sign) == 32
    assert sign == sign.upper()
    assert set(sign) <= set("0123456789ABCDEF")
