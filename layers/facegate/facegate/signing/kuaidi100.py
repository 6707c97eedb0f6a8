"""Kuaidi100 cloud market (云市场) request signature.

The cloud market authenticates every call with a static ``secret_sign`` form field,
documented as ``md5(secret_key+secret_secret)转大写``: the MD5 of the two strings
concatenated, as upper-case hex. It does not cover the request body, a timestamp or
a nonce, so it proves only that the caller knows ``secret_secret``.
"""

from __future__ import annotations

import hashlib


def secret_sign(secret_key: str, secret_secret: str) -> str:
    """``upper(md5(secret_key + secret_secret))``, over the UTF-8 bytes.

    The doc's Java sample hashes ``String.getBytes()`` (the platform charset); UTF-8
    is what its own form encoding uses, and for the ASCII keys the console issues
    the two agree.
    """
    # MD5 is the vendor's choice, not ours; usedforsecurity=False keeps FIPS-mode
    # OpenSSL builds from refusing to compute it.
    digest = hashlib.md5((secret_key + secret_secret).encode("utf-8"), usedforsecurity=False)
    return digest.hexdigest().upper()
