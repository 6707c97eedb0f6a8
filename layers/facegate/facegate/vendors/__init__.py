"""The vendor registry: ids to classes, imported only when first used.

A Lambda that only ever talks to one vendor never imports the others (nor their
crypto dependencies), which keeps cold starts small.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from facegate.errors import UnknownVendor

if TYPE_CHECKING:
    from facegate.vendors.base import Vendor

# id -> "module:Class"
_REGISTRY: dict[str, str] = {
    "local": "facegate.vendors.local:LocalVendor",
    "shuxun": "facegate.vendors.shuxun:ShuxunVendor",
    "kuaidi100": "facegate.vendors.kuaidi100:Kuaidi100Vendor",
    "face2": "facegate.vendors.face2:Face2Vendor",
    "zoloz": "facegate.vendors.zoloz:ZolozVendor",
    "jumei": "facegate.vendors.jumei:JumeiVendor",
}


def vendor_ids() -> list[str]:
    return list(_REGISTRY)


@cache
def vendor_class(vendor_id: str) -> type[Vendor]:
    try:
        target = _REGISTRY[vendor_id]
    except KeyError:
        raise UnknownVendor(f"unknown vendor '{vendor_id}'") from None
    module, _, cls = target.partition(":")
    vendor: type[Vendor] = getattr(importlib.import_module(module), cls)
    return vendor
