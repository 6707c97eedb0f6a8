"""The shared cooldown state in DynamoDB behaves exactly like the in-memory one,
and two containers (two books on one table) see the same state."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from facegate.health import CooldownPolicy, DynamoHealthBook, MemoryHealthBook


class Clock:
    t = 2_000_000.0

    def __call__(self):
        return self.t


@pytest.fixture
def table():
    with mock_aws():
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName="facegate-state",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield "facegate-state"


def books(table, clock, policy):
    DynamoHealthBook.CACHE_S = 0.0  # the test wants every read to hit the table
    one = DynamoHealthBook(table, policy, clock=clock)
    two = DynamoHealthBook(table, policy, clock=clock)
    return one, two


def scenario(book_a, book_b, clock):
    """Failures from two containers add up; the circuit opens; one probe only."""
    seen = []
    book_a.record_failure("zoloz")
    book_b.record_failure("zoloz")
    seen.append(book_a.health("zoloz").state)
    book_b.record_failure("zoloz")
    seen.append(book_a.health("zoloz").state)
    seen.append(book_a.allow("zoloz"))
    clock.t += 31
    seen.append(book_b.health("zoloz").state)
    seen.append(book_a.allow("zoloz"))
    seen.append(book_b.allow("zoloz"))
    book_a.record_failure("zoloz")  # the probe failed
    seen.append(book_b.health("zoloz").state)
    clock.t += 31
    seen.append(book_b.allow("zoloz"))
    book_b.record_success("zoloz")
    seen.append(book_a.health("zoloz").state)
    seen.append(book_a.allow("zoloz"))
    return seen


EXPECTED = ["closed", "open", False, "half_open", True, False, "open", True, "closed", True]


def test_dynamo_book_shared_between_containers(table):
    policy = CooldownPolicy(failures=3, window_s=60, cooldown_s=30)
    clock = Clock()
    assert scenario(*books(table, clock, policy), clock) == EXPECTED


def test_memory_book_gives_the_same_answers():
    policy = CooldownPolicy(failures=3, window_s=60, cooldown_s=30)
    clock = Clock()
    book = MemoryHealthBook(policy, clock=clock)
    assert scenario(book, book, clock) == EXPECTED


def test_stale_failures_restart_the_window(table):
    clock = Clock()
    a, _ = books(table, clock, CooldownPolicy(failures=2, window_s=10, cooldown_s=30))
    a.record_failure("shuxun")
    clock.t += 11
    a.record_failure("shuxun")
    assert a.health("shuxun").state == "closed"
    a.record_failure("shuxun")
    assert a.health("shuxun").state == "open"


def test_two_containers_reaching_the_threshold_together_both_succeed(table):
    clock = Clock()
    a, b = books(table, clock, CooldownPolicy(failures=2, window_s=60, cooldown_s=30))
    a.record_failure("face2")
    # Both count the second failure before either opens the circuit (the race seen in batches).
    a_table_update = a.table.update_item
    opened = []

    def racing_update(**kw):
        if kw.get("UpdateExpression") == "SET open_until = :reopen" and not opened:
            opened.append(True)
            b.record_failure("face2")  # the other container opens it first
        return a_table_update(**kw)

    a.table.update_item = racing_update
    a.record_failure("face2")  # must not raise ConditionalCheckFailed
    assert a.health("face2").state == "open"


def test_a_failing_state_table_never_fails_the_request():
    from facegate import errors
    from facegate.router import Attempts, Planned, RetryPolicy, Router

    class Broken(MemoryHealthBook):
        def record_success(self, vendor):
            raise RuntimeError("state table throttled")

        record_failure = record_success

    vendor = type("V", (), {"id": "shuxun"})
    answer = type("Out", (), {"billed": True})()
    router = Router(Broken(), vendor_for=lambda cls: cls, retry=RetryPolicy(0, 0), sleep=lambda s: None)
    _, out = router.first([Planned(vendor, None)], lambda v, p: answer, Attempts(), None)
    assert out is answer
    with pytest.raises(errors.VendorRateLimited):
        router.first(
            [Planned(vendor, None)],
            lambda v, p: (_ for _ in ()).throw(errors.VendorRateLimited("slow", billed=False)),
            Attempts(),
            None,
        )


@pytest.mark.parametrize("kind", ["memory", "dynamodb"])
def test_only_an_opening_is_counted_as_cooldown_opened(kind, request, monkeypatch):
    """Closed -> open and a failed probe (half-open -> open) count once each, in either
    book and from either container; failures that only extend an open cooldown do not."""
    from facegate import observability

    opened: list[str] = []
    monkeypatch.setattr(observability, "record_cooldown_opened", opened.append)
    clock = Clock()
    policy = CooldownPolicy(failures=3, window_s=60, cooldown_s=30)
    if kind == "memory":
        a = b = MemoryHealthBook(policy, clock=clock)
    else:
        a, b = books(request.getfixturevalue("table"), clock, policy)

    a.record_failure("zoloz")
    b.record_failure("zoloz")
    assert opened == []
    b.record_failure("zoloz")  # the third, from the other container: opens
    assert opened == ["zoloz"]
    a.record_failure("zoloz")  # a late failure while open: extends, no new opening
    clock.t += 10
    b.record_failure("zoloz")
    assert opened == ["zoloz"]
    clock.t += 31
    assert a.allow("zoloz")  # the probe
    a.record_failure("zoloz")  # ... failed: opens again
    assert opened == ["zoloz", "zoloz"]
    clock.t += 31
    assert b.allow("zoloz")
    b.record_success("zoloz")
    for _ in range(2):
        a.record_failure("zoloz")
    assert opened == ["zoloz", "zoloz"]
    a.record_failure("face2")
    assert opened == ["zoloz", "zoloz"]
    a.record_failure("zoloz")
    assert opened == ["zoloz"] * 3
