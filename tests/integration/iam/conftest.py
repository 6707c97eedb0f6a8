"""The stack in moto with its functions' roles (``stackkit``)."""

from __future__ import annotations

import pytest
from moto import mock_aws

from .stackkit import Stack, enforce_resources, reset_clients


@pytest.fixture
def stack():
    with mock_aws(), enforce_resources():
        reset_clients()
        yield Stack(stage="test")
    reset_clients()
