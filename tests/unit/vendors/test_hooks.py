"""A vendor's operations are declared hooks: a class that declares an operation it
does not implement (or the reverse) fails when it is defined, not on a request."""

from __future__ import annotations

import pytest

from facegate.models import Operation
from facegate.vendors import _REGISTRY, vendor_class
from facegate.vendors.base import (
    CompareOutcome,
    HttpCompare,
    HttpRequest,
    HttpVendor,
    Vendor,
)


def _build(self, image1, image2, ctx) -> HttpRequest:
    return HttpRequest("POST", "https://vendor.invalid/compare", {}, b"")


def _parse(self, response, request, ctx) -> CompareOutcome:
    return CompareOutcome(similarity=1.0, vendor_score=None, thresholds={})


COMPARE = frozenset({Operation.COMPARE})


def test_an_http_vendor_declaring_an_operation_without_its_capability_fails_at_class_creation():
    with pytest.raises(TypeError, match="declares"):
        type("NoHooks", (HttpVendor,), {"id": "x", "operations": COMPARE})


def test_a_missing_hook_fails_at_class_creation():
    with pytest.raises(TypeError, match="parse_compare"):
        type("NoParser", (HttpCompare,), {"id": "x", "operations": COMPARE, "build_compare": _build})
    with pytest.raises(TypeError, match="build_compare"):
        type("NoBuilder", (HttpCompare,), {"id": "x", "operations": COMPARE, "parse_compare": _parse})


def test_a_capability_not_declared_fails_at_class_creation():
    attrs = {"id": "x", "build_compare": _build, "parse_compare": _parse}
    with pytest.raises(TypeError, match="implements"):
        type("Undeclared", (HttpCompare,), {**attrs, "operations": frozenset()})
    # Declared and hooked: fine.
    ok = type("Compares", (HttpCompare,), {**attrs, "operations": COMPARE})
    assert ok.operations == COMPARE


def test_an_in_process_vendor_must_implement_what_it_declares():
    with pytest.raises(TypeError, match="declares"):
        type("NoDetect", (Vendor,), {"id": "x", "operations": frozenset({Operation.DETECT})})


@pytest.mark.parametrize("vid", list(_REGISTRY))
def test_every_registered_vendor_implements_what_it_declares(vid):
    cls = vendor_class(vid)
    for op in Operation:
        # Vendor's own method for an operation is the "does not offer" default.
        assert (getattr(cls, op.value) is not getattr(Vendor, op.value)) is (op in cls.operations)
    assert not getattr(cls, "__abstractmethods__", frozenset())


def test_only_kuaidi100_takes_face_tokens():
    # Its FACE_TOKEN image type takes the tokens its own earlier answers returned.
    assert [vid for vid in _REGISTRY if vendor_class(vid).accepts_face_tokens] == ["kuaidi100"]
