"""The fast form encoder writes exactly what urllib.parse.urlencode writes."""

from __future__ import annotations

import base64
import random
from urllib.parse import urlencode

import pytest

from facegate.vendors.wire import form_body


@pytest.mark.parametrize("seed", range(20))
def test_same_bytes_as_urlencode(seed):
    rng = random.Random(seed)
    blob = base64.b64encode(rng.randbytes(rng.randint(0, 3000))).decode()
    fields = [
        ("image1", blob),
        ("name", "张三 · Zhang San&co=1+2/3"),
        ("imgUrl", "https://example.com/a b.jpg?x=1&y=2"),
        ("empty", ""),
        ("urlsafe-looking", blob.replace("+", "-").replace("/", "_")),
    ]
    assert form_body(fields) == urlencode(fields).encode("ascii")
    assert form_body(dict(fields)) == urlencode(dict(fields)).encode("ascii")
