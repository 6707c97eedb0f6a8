"""Canaries for the two moto monkeypatches in facegate_local/moto_patches.py. moto is
pinned; when an upgrade changes what a patch replaces or relies on, these fail with
a message that names the patch to re-check, instead of the batch tests failing
somewhere far away (or, worse, the patch silently doing nothing)."""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib
import inspect
import threading

import boto3
import pytest
from moto import mock_aws

from facegate_local import moto_patches

# sha256 of each patched function's source, as moto 5.2.5 (requirements-dev.txt) has it.
PATCHED = {
    ("moto.core.botocore_stubber", "BotocoreStubber", "__call__"): (
        "6ef7b9ade757a1b15d33bb404a0e71e3f07ff14636e3c35bc637beb97496d910",
        "serialize_moto",
    ),
    ("moto.dynamodb.models", "DynamoDBBackend", "transact_write_items"): (
        "c3c395e9340064046eeb7cba599af6787b2adb77aa99bb485045679d7f307a0f",
        "fast_transactions",
    ),
}


def _recheck(what: str, patch: str, why: str) -> str:
    return (
        f"moto changed {what} ({why}): re-check the patch in facegate_local/moto_patches.py ({patch}) before upgrading"
    )


def moto_function(module_name: str, class_name: str, function_name: str) -> tuple[ast.FunctionDef, str]:
    """The function as moto's file has it (its syntax tree and source): read from the
    file, so it is moto's own even when the patch is already applied in this process."""
    path = inspect.getsourcefile(importlib.import_module(module_name))
    assert path is not None
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == function_name:
                    segment = ast.get_source_segment(text, item)
                    assert segment is not None
                    return item, segment
    pytest.fail(_recheck(f"{module_name}.{class_name}.{function_name}", "any", "it is gone"))


def moto_source(module_name: str, class_name: str, function_name: str) -> str:
    return moto_function(module_name, class_name, function_name)[1]


@pytest.mark.parametrize("target", list(PATCHED), ids=[f"{c}.{f}" for _, c, f in PATCHED])
def test_the_patched_moto_functions_are_the_ones_the_patches_were_written_for(target):
    _, class_name, function_name = target
    expected, patch = PATCHED[target]
    got = hashlib.sha256(moto_source(*target).encode()).hexdigest()
    assert got == expected, _recheck(f"{class_name}.{function_name}", patch, f"its source hash is now {got}")


def test_the_stubber_call_still_takes_what_the_lock_passes_on():
    node, source = moto_function("moto.core.botocore_stubber", "BotocoreStubber", "__call__")
    params = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
    params += [node.args.kwarg.arg] if node.args.kwarg else []
    # The patched call is (self, event_name, request, **kwargs), and skips the lock when
    # the stubber is disabled, as moto's own call returns None then.
    assert params == ["self", "event_name", "request", "kwargs"], _recheck(
        "BotocoreStubber.__call__", "serialize_moto", f"its parameters are now {params}"
    )
    assert "if not self.enabled:\n            return None" in source, _recheck(
        "BotocoreStubber.__call__", "serialize_moto", "it no longer returns None when disabled"
    )


def test_a_transaction_still_backs_tables_up_with_the_modules_copy_deepcopy():
    from moto.dynamodb import models as ddb

    source = moto_source("moto.dynamodb.models", "DynamoDBBackend", "transact_write_items")
    # fast_transactions swaps the module's `copy` for one that does not copy tables: that
    # only works while moto backs up with `copy.deepcopy(self.tables[...])` looked up there.
    assert ddb.copy is copy and "copy.deepcopy(\n                    self.tables[table_name]" in source, _recheck(
        "DynamoDBBackend.transact_write_items", "fast_transactions", "it backs tables up another way"
    )


@pytest.fixture
def tables():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="hash",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        client.create_table(
            TableName="range",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        )
        client.put_item(TableName="hash", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
        client.put_item(TableName="range", Item={"pk": {"S": "a"}, "sk": {"S": "1"}, "n": {"N": "1"}})
        yield client


def test_patched_transactions_roll_back_items_without_copying_tables(tables, monkeypatch):
    """What the patch relies on, by behaviour: tables hold items as
    ``items[hash][range]`` (or ``items[hash]``) of DynamoType keys, and a cancelled
    transaction is rolled back to exactly the items before it."""
    from moto.dynamodb import models as ddb
    from moto.dynamodb.models.dynamo_type import DynamoType

    moto_patches.fast_transactions()
    backend = ddb.dynamodb_backends["123456789012"]["us-east-1"]
    layout = (
        backend.tables["hash"].items.get(DynamoType({"S": "a"})),
        (backend.tables["range"].items.get(DynamoType({"S": "a"})) or {}).get(DynamoType({"S": "1"})),
    )
    assert all(isinstance(item, ddb.Item) for item in layout), _recheck(
        "Table.items", "fast_transactions", "items are no longer held as items[hash][range]"
    )
    copied = []
    deepcopy = copy.deepcopy
    monkeypatch.setattr(copy, "deepcopy", lambda obj, memo=None: copied.append(type(obj)) or deepcopy(obj, memo))

    def write(condition_holds: bool) -> None:
        tables.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": "hash",
                        "Key": {"pk": {"S": "a"}},
                        "UpdateExpression": "SET n = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}},
                    }
                },
                {"Put": {"TableName": "hash", "Item": {"pk": {"S": "new"}}}},
                {"Delete": {"TableName": "range", "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}}}},
                {"Put": {"TableName": "range", "Item": {"pk": {"S": "b"}, "sk": {"S": "2"}}}},
                {
                    "ConditionCheck": {
                        "TableName": "range",
                        "Key": {"pk": {"S": "nobody"}, "sk": {"S": "0"}},
                        "ConditionExpression": "attribute_not_exists(pk)"
                        if condition_holds
                        else "attribute_exists(pk)",
                    }
                },
            ]
        )

    def state():
        return (
            sorted(str(i) for i in tables.scan(TableName="hash")["Items"]),
            sorted(str(i) for i in tables.scan(TableName="range")["Items"]),
        )

    before = state()
    with pytest.raises(tables.exceptions.TransactionCanceledException):
        write(condition_holds=False)
    assert state() == before, _recheck("transact_write_items", "fast_transactions", "a cancelled one is not undone")
    assert ddb.Table not in copied, _recheck("transact_write_items", "fast_transactions", "tables are copied again")
    write(condition_holds=True)
    assert state() != before
    assert tables.get_item(TableName="hash", Key={"pk": {"S": "a"}})["Item"]["n"] == {"N": "2"}
    assert "Item" not in tables.get_item(TableName="range", Key={"pk": {"S": "a"}, "sk": {"S": "1"}})


def test_serialized_calls_run_under_the_lock(tables, monkeypatch):
    from moto.core.botocore_stubber import BotocoreStubber

    moto_patches.serialize_moto()
    held = []
    process = BotocoreStubber.process_request

    def spy(self, request):
        # An RLock held by this thread can be taken again at once; one not held by
        # anyone can too, so ask from another thread.
        result = []
        t = threading.Thread(target=lambda: result.append(moto_patches._moto_lock.acquire(blocking=False)))
        t.start()
        t.join()
        if result[0]:
            moto_patches._moto_lock.release()
        held.append(not result[0])
        return process(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", spy)
    assert tables.get_item(TableName="hash", Key={"pk": {"S": "a"}})["Item"]["n"] == {"N": "1"}
    assert held and all(held), _recheck("BotocoreStubber", "serialize_moto", "calls no longer go through __call__")
