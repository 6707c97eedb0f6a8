"""Fixtures of the CLI and client tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fakeapi import FakeApi


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()
    yield api
    api.stop()
