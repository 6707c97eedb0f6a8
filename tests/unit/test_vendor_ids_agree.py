"""Every list of vendor ids is the registry's: the contract, the settings, the
sandboxes and the template's parameters name the same vendors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError

from facegate.config import Settings
from facegate.models import VENDOR_IDS, VendorId
from facegate.vendors import _REGISTRY, vendor_class
from facegate.vendors.base import HttpVendor
from facegate_local.sandboxes import SANDBOXES
from facegate_local.template import Template

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = list(_REGISTRY)


def test_the_models_literal_is_the_registry():
    assert list(get_args(VendorId)) == REGISTRY
    assert list(VENDOR_IDS) == REGISTRY


def test_the_settings_accept_exactly_the_registry():
    for vid in REGISTRY:
        assert Settings.from_env({"FACEGATE_DEFAULT_VENDOR": vid}).default_vendor == vid
    assert Settings.from_env({"FACEGATE_FALLBACK": ",".join(REGISTRY)}).fallback == REGISTRY
    with pytest.raises(ValidationError):
        Settings.from_env({"FACEGATE_DEFAULT_VENDOR": "acme"})


def test_every_vendor_reached_over_http_has_a_sandbox():
    over_http = [vid for vid in REGISTRY if issubclass(vendor_class(vid), HttpVendor)]
    assert over_http == list(SANDBOXES)
    assert set(REGISTRY) - set(SANDBOXES) == {"local"}  # the built-in engine needs none


def test_the_templates_vendor_parameters_allow_exactly_the_registry():
    params = Template.load(ROOT / "template.yaml").parameters
    assert params["DefaultVendor"]["AllowedValues"] == REGISTRY
    fallback = params["FallbackVendors"]["AllowedPattern"]
    # Each alternation in the pattern lists the ids, and the pattern takes any of them.
    groups = re.findall(r"\(([\w|]+)\)", fallback)
    assert groups and all(g.split("|") == REGISTRY for g in groups)
    assert re.fullmatch(fallback, ",".join(REGISTRY))
    assert not re.fullmatch(fallback, "acme")
