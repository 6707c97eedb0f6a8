"""HealthBook is an interface: a book that does not say where its numbers live
cannot be made."""

from __future__ import annotations

import pytest

from facegate.health import HealthBook, MemoryHealthBook


def test_the_interface_itself_cannot_be_instantiated():
    with pytest.raises(TypeError, match="abstract"):
        HealthBook()  # type: ignore[abstract]


def test_a_book_missing_a_method_cannot_be_instantiated():
    class NoFailures(HealthBook):
        def _read(self, vendor):
            return {}

        def _claim_probe(self, vendor):
            return True

        def record_success(self, vendor):
            pass

    with pytest.raises(TypeError, match="record_failure"):
        NoFailures()  # type: ignore[abstract]
    assert MemoryHealthBook().allow("local")
