"""Protocol-faithful vendor sandboxes: loopback servers that check requests the way
each vendor documents. Each module exposes one ``Sandbox`` subclass whose
``default_credentials()`` is the secret JSON (contract shape, without ``endpoint``)
that the sandbox accepts."""

from __future__ import annotations

import importlib

SANDBOXES: dict[str, str] = {
    "shuxun": "facegate_local.sandboxes.shuxun:ShuxunSandbox",
    "kuaidi100": "facegate_local.sandboxes.kuaidi100:Kuaidi100Sandbox",
    "face2": "facegate_local.sandboxes.face2:Face2Sandbox",
    "zoloz": "facegate_local.sandboxes.zoloz:ZolozSandbox",
    "jumei": "facegate_local.sandboxes.jumei:JumeiSandbox",
}


def sandbox_class(vendor_id: str):
    module, _, cls = SANDBOXES[vendor_id].partition(":")
    return getattr(importlib.import_module(module), cls)
