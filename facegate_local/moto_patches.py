"""Two monkeypatches of moto for the local batch runner (``facegate_local.batch``),
each applied once per process on first use. moto is pinned (requirements-dev.txt):
tests/integration/local/test_moto_patches.py checks that what they patch is still what
they expect, and names this file when a moto upgrade changes it."""

from __future__ import annotations

import threading
from typing import Any

_moto_lock = threading.RLock()
_serialized = False


def serialize_moto() -> None:
    """Make every emulated AWS call atomic, as each is in AWS: moto's backends are
    plain Python objects, and two threads updating one DynamoDB item (a conditional
    update, an ADD) could otherwise interleave. Calls to loopback vendors are not
    affected (moto passes them through before taking the lock)."""
    global _serialized
    if _serialized:
        return
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.__call__

    def locked(self, event_name, request, **kwargs):
        if not self.enabled:
            return None
        with _moto_lock:
            return original(self, event_name, request, **kwargs)

    BotocoreStubber.__call__ = locked  # type: ignore[method-assign]  # moto patched on purpose (above)
    _serialized = True


_fast_transactions = False


def fast_transactions() -> None:
    """moto backs up every table a DynamoDB transaction names by deep-copying the whole
    table, so each transaction costs O(table size) and a batch (one transaction per
    line) O(n²): at 1,000 lines that is most of the run. Back up only the items the
    transaction names instead: the same all-or-nothing outcome, in O(1). A local
    emulation fix only; DynamoDB itself does not care."""
    global _fast_transactions
    if _fast_transactions:
        return
    import copy as copy_module

    from moto.dynamodb import models as ddb
    from moto.dynamodb.models.dynamo_type import DynamoType

    original = ddb.DynamoDBBackend.transact_write_items

    class _NoTableCopies:
        """``copy`` as moto's module sees it during one transaction: tables are not copied."""

        def __getattr__(self, name: str) -> Any:
            return getattr(copy_module, name)

        @staticmethod
        def deepcopy(obj: Any, memo: Any = None) -> Any:
            return obj if isinstance(obj, ddb.Table) else copy_module.deepcopy(obj, memo)

    def backup(self, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any, Any]]:
        saved = []
        for entry in transact_items:
            op = next(iter(entry.values()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op.get("Key") or op.get("Item") or {}
            try:
                hk = DynamoType(key[table.hash_key_attr])
                rk = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            except KeyError:
                continue  # moto refuses the operation itself
            held = table.items.get(hk)
            current = (held or {}).get(rk) if rk is not None else held
            saved.append((table, hk, rk, None if current is None else copy_module.deepcopy(current)))
        return saved

    def restore(saved: list[tuple[Any, Any, Any, Any]]) -> None:
        for table, hk, rk, item in reversed(saved):
            if rk is None:
                if item is None:
                    table.items.pop(hk, None)
                else:
                    table.items[hk] = item
            elif item is None:
                held = table.items.get(hk)
                if held is not None:
                    held.pop(rk, None)
                    if not held:
                        del table.items[hk]
            else:
                table.items[hk][rk] = item

    def transact_write_items(self, transact_items):
        saved = backup(self, transact_items)
        module_copy = ddb.copy
        ddb.copy = _NoTableCopies()  # type: ignore[assignment]  # a stand-in for the copy module, for this call
        try:
            return original(self, transact_items)
        except Exception:
            restore(saved)
            raise
        finally:
            ddb.copy = module_copy

    ddb.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]  # moto patched on purpose
    _fast_transactions = True
