"""Observed latencies in the state table behave as the in-memory book's, are shared by
containers, cost one write per sampled answer with no read before it (at most one per vendor
per container per sample interval), and live beside the cooldown items without disturbing
them. Tests that count samples write every answer (``sample_interval_s=0``)."""

from __future__ import annotations

import random

import boto3
import pytest
from moto import mock_aws

from facegate.health import CooldownPolicy, DynamoHealthBook
from facegate.latency import DynamoLatencyBook, MemoryLatencyBook

EVERY = {"sample_interval_s": 0.0}  # every answer written


class Clock:
    t = 2_000_000.0

    def __call__(self):
        return self.t


@pytest.fixture
def table(monkeypatch):
    with mock_aws():
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName="facegate-state",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        monkeypatch.setattr(DynamoLatencyBook, "CACHE_S", 0.0)  # every read hits the table
        yield "facegate-state"


def test_the_dynamo_book_answers_as_the_memory_book(table):
    clock = Clock()
    dynamo = DynamoLatencyBook(table, slots=4, clock=clock, rng=random.Random(9), **EVERY)
    memory = MemoryLatencyBook(slots=4, clock=clock, rng=random.Random(9), **EVERY)
    for vendor, ms in [("a", 300), ("b", 120.25), ("a", 310), ("a", 5000), ("a", 290), ("a", 305), ("b", 99)]:
        dynamo.record(vendor, ms)
        memory.record(vendor, ms)
    assert dynamo.observed(["a", "b", "c"]) == memory.observed(["a", "b", "c"])
    assert dynamo.observed(["a"])["a"].median_ms == 307.5  # the 4 latest of a: 5000, 290, 305, 310
    clock.t += 24 * 3600
    assert dynamo.observed(["a", "b"]) == {}


def test_containers_share_the_samples(table):
    one = DynamoLatencyBook(table, rng=random.Random(1), **EVERY)
    two = DynamoLatencyBook(table, rng=random.Random(2), **EVERY)
    one.record("zoloz", 100)
    two.record("zoloz", 200)
    two.record("zoloz", 300)
    seen = one.observed(["zoloz"])["zoloz"]
    assert (seen.calls, seen.median_ms) == (3, 200)


def test_one_write_per_sampled_answer_and_no_read_before_it(table):
    clock = Clock()
    book = DynamoLatencyBook(table, rng=random.Random(4), clock=clock, sample_interval_s=1.0)
    calls = []
    for name in ("update_item", "get_item", "put_item"):
        original = getattr(book.table, name)
        setattr(book.table, name, lambda _o=original, _n=name, **kw: calls.append(_n) or _o(**kw))
    book.record("shuxun", 42)
    assert calls == ["update_item"]
    book.record("shuxun", 43)  # within the interval: no DynamoDB call at all
    book.record("kuaidi100", 44)  # another vendor: its own interval
    assert calls == ["update_item", "update_item"]
    clock.t += 1.5
    book.record("shuxun", 45)  # started 1.455 s after the first call did: the interval is over
    assert calls == ["update_item"] * 3
    assert sorted(DynamoLatencyBook(table)._read(["shuxun"])["shuxun"]) == [
        (42.0, Clock.t),
        (45.0, Clock.t + 1.5),
    ]


def test_reads_are_cached_per_container(table, monkeypatch):
    monkeypatch.setattr(DynamoLatencyBook, "CACHE_S", 60.0)
    reader, writer = DynamoLatencyBook(table), DynamoLatencyBook(table, **EVERY)
    writer.record("face2", 100)
    assert reader.observed(["face2"])["face2"].calls == 1
    writer.record("face2", 100)
    assert reader.observed(["face2"])["face2"].calls == 1  # within CACHE_S: the container's copy
    assert DynamoLatencyBook(table).observed(["face2"])["face2"].calls == 2


def test_latency_items_sit_beside_cooldown_items_without_touching_them(table):
    DynamoHealthBook.CACHE_S = 0.0
    clock = Clock()
    health = DynamoHealthBook(table, CooldownPolicy(failures=1), clock=clock)
    latency = DynamoLatencyBook(table, clock=clock, **EVERY)
    latency.record("zoloz", 150)
    assert health.health("zoloz").state == "closed"
    health.record_failure("zoloz")
    assert health.health("zoloz").state == "open"
    latency.record("zoloz", 160)
    assert health.health("zoloz").state == "open"
    clock.t += 31
    assert health.allow("zoloz")
    health.record_success("zoloz")  # clears the cooldown item only
    assert health.health("zoloz").state == "closed"
    assert latency.observed(["zoloz"])["zoloz"].calls == 2
    keys = {i["pk"] for i in boto3.resource("dynamodb", region_name="us-east-1").Table(table).scan()["Items"]}
    assert keys == {"latency#zoloz"}
