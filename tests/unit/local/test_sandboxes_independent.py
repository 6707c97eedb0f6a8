"""The vendor sandboxes check requests the way each vendor documents, written from the docs
alone: none of them may import facegate (its signers or parsers), or a sandbox test would only
prove that the code agrees with itself."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import facegate_local.sandboxes as sandboxes

ROOT = Path(__file__).resolve().parents[3]
MODULES = sorted(f"facegate_local.sandboxes.{m.name}" for m in pkgutil.iter_modules(sandboxes.__path__))

# Imports every sandbox in a fresh interpreter in which `facegate` (the package under test,
# not `facegate_local`) cannot be imported at all, directly or through anything else.
PROBE = """
import importlib, importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "facegate" or name.startswith("facegate."):
            raise ImportError(f"a sandbox imported {name}")
        return None

sys.meta_path.insert(0, Refuse())
for name in sys.argv[1:]:
    importlib.import_module(name)
print("ok", len(sys.argv) - 1)
"""


def test_every_vendor_has_a_sandbox_module():
    assert {"facegate_local.sandboxes.base"} < set(MODULES)
    assert {m.rsplit(".", 1)[1] for m in MODULES} >= {"shuxun", "kuaidi100", "face2", "zoloz", "jumei"}


def test_no_sandbox_imports_facegate_even_indirectly():
    done = subprocess.run(  # noqa: S603 - our own interpreter and modules
        [sys.executable, "-c", PROBE, *MODULES], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"ok {len(MODULES)}"


def test_the_probe_has_teeth():
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", PROBE, "facegate_local.sandboxes.base", "facegate.errors"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode != 0 and "a sandbox imported facegate" in done.stderr
