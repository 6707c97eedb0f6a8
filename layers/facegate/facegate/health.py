"""Vendor cooldowns: a circuit breaker per vendor, shared by every container.

After ``failures`` vendor-side failures within ``window_s`` a vendor is *open*:
skipped for ``cooldown_s``. Then it is *half-open*: exactly one request (the probe,
claimed with a conditional write so two containers cannot both probe) may try it;
success closes the circuit, failure opens it again.

State lives in DynamoDB (one item per vendor, ``pk = "vendor#<id>"``) so that all
Lambda containers agree; reads are cached for a second per container because the
breaker only needs to be roughly current, and a read per call would add latency.
Without a table (unit tests, a bare local run) the same logic runs in memory.

Each opening (closed -> open, or a failed probe: half-open -> open) is counted once, by
the book that made it, as the ``CooldownOpened`` metric; a failure that only extends an
open cooldown is not an opening.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from facegate import observability
from facegate.store import DynamoBacked, Item, dynamo_number

if TYPE_CHECKING:
    from decimal import Decimal

    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class CooldownPolicy:
    failures: int = 5
    window_s: float = 60.0
    cooldown_s: float = 30.0
    probe_timeout_s: float = 30.0  # a probe that never reports back frees its slot after this


@dataclass(frozen=True)
class VendorHealth:
    vendor: str
    state: State
    failures: int = 0
    open_until: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "recent_failures": self.failures, "open_until": self.open_until}


class HealthBook(ABC):
    """The interface the router uses; ``MemoryHealthBook`` and ``DynamoHealthBook``
    differ only in where the numbers live (the four abstract methods)."""

    def __init__(self, policy: CooldownPolicy | None = None, clock: Callable[[], float] = time.time):
        self.policy = policy or CooldownPolicy()
        self.clock = clock

    def allow(self, vendor: str) -> bool:
        h = self.health(vendor)
        if h.state == "closed":
            return True
        if h.state == "open":
            return False
        return self._claim_probe(vendor)

    def health(self, vendor: str) -> VendorHealth:
        item = self._read(vendor)
        now = self.clock()
        open_until = item.get("open_until")
        if open_until is not None:
            state: State = "open" if now < open_until else "half_open"
            return VendorHealth(vendor, state, int(item.get("failures", 0)), float(open_until))
        failures = (
            int(item.get("failures", 0)) if now - float(item.get("window_start", 0)) < self.policy.window_s else 0
        )
        return VendorHealth(vendor, "closed", failures)

    # --- where the numbers live ----------------------------------------------------------

    @abstractmethod
    def _read(self, vendor: str) -> dict[str, Any]:
        """The vendor's stored item (``failures``, ``window_start``, ``open_until`` …)."""

    @abstractmethod
    def _claim_probe(self, vendor: str) -> bool:
        """Claim the one half-open probe; False if another request holds it."""

    @abstractmethod
    def record_success(self, vendor: str) -> None: ...

    @abstractmethod
    def record_failure(self, vendor: str) -> None: ...


class MemoryHealthBook(HealthBook):
    def __init__(self, policy: CooldownPolicy | None = None, clock: Callable[[], float] = time.time):
        super().__init__(policy, clock)
        self._items: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _read(self, vendor: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._items.get(vendor, {}))

    def _claim_probe(self, vendor: str) -> bool:
        now = self.clock()
        with self._lock:
            item = self._items.setdefault(vendor, {})
            if item.get("probe_until", 0) > now:
                return False
            item["probe_until"] = now + self.policy.probe_timeout_s
            return True

    def record_success(self, vendor: str) -> None:
        with self._lock:
            self._items.pop(vendor, None)

    def record_failure(self, vendor: str) -> None:
        now = self.clock()
        p = self.policy
        with self._lock:
            item = self._items.setdefault(vendor, {})
            if item.get("open_until") is not None:  # a failed probe (or a late failure): open again
                opened = item["open_until"] <= now  # it was half-open, not still open
                item.update(open_until=now + p.cooldown_s, failures=p.failures, window_start=now)
                item.pop("probe_until", None)
            else:
                if now - item.get("window_start", 0) >= p.window_s:
                    item.update(failures=0, window_start=now)
                item["failures"] = item.get("failures", 0) + 1
                opened = item["failures"] >= p.failures
                if opened:
                    item["open_until"] = now + p.cooldown_s
        if opened:
            observability.record_cooldown_opened(vendor)


class DynamoHealthBook(DynamoBacked, HealthBook):
    CACHE_S = 1.0

    def __init__(
        self,
        table_name: str,
        policy: CooldownPolicy | None = None,
        clock: Callable[[], float] = time.time,
        resource: DynamoDBServiceResource | None = None,
    ):
        DynamoBacked.__init__(self, table_name, resource)
        HealthBook.__init__(self, policy, clock)
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    @staticmethod
    def _key(vendor: str) -> dict[str, str]:
        return {"pk": f"vendor#{vendor}"}

    def _read(self, vendor: str) -> dict[str, Any]:
        hit = self._cache.get(vendor)
        if hit and time.monotonic() - hit[0] < self.CACHE_S:
            return hit[1]
        item: Item = self.table.get_item(Key=self._key(vendor), ConsistentRead=True).get("Item") or {}
        item = {k: float(v) if k != "pk" else v for k, v in item.items()}
        self._cache[vendor] = (time.monotonic(), item)
        return item

    def _claim_probe(self, vendor: str) -> bool:
        from botocore.exceptions import ClientError

        now = self.clock()
        try:
            self.table.update_item(
                Key=self._key(vendor),
                UpdateExpression="SET probe_until = :until",
                ConditionExpression="attribute_exists(open_until) AND open_until <= :now "
                "AND (attribute_not_exists(probe_until) OR probe_until <= :now)",
                ExpressionAttributeValues={
                    ":now": dynamo_number(now),
                    ":until": dynamo_number(now + self.policy.probe_timeout_s),
                },
            )
        except ClientError as e:
            if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        self._cache.pop(vendor, None)
        return True

    def record_success(self, vendor: str) -> None:
        # Most calls succeed on a healthy vendor: write only when there is something to clear.
        if self._read(vendor):
            self.table.delete_item(Key=self._key(vendor))
            self._cache.pop(vendor, None)

    def record_failure(self, vendor: str) -> None:
        from botocore.exceptions import ClientError

        now, p = self.clock(), self.policy
        values: dict[str, Decimal | int] = {
            ":now": dynamo_number(now),
            ":one": 1,
            ":reopen": dynamo_number(now + p.cooldown_s),
            ":max": p.failures,
        }
        try:
            # A failed probe, or a failure while open: (re)open for a full cooldown.
            old: Item = self.table.update_item(
                Key=self._key(vendor),
                UpdateExpression="SET open_until = :reopen, failures = :max, window_start = :now REMOVE probe_until",
                ConditionExpression="attribute_exists(open_until)",
                ExpressionAttributeValues={k: values[k] for k in (":now", ":reopen", ":max")},
                ReturnValues="ALL_OLD",
            )["Attributes"]
            if float(old["open_until"]) <= now:  # it was half-open, not still open
                observability.record_cooldown_opened(vendor)
        except ClientError as e:
            if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            # Closed: count the failure in the current window (a stale window restarts at one).
            window_start = dynamo_number(now - p.window_s)
            try:
                item: Item = self.table.update_item(
                    Key=self._key(vendor),
                    UpdateExpression="ADD failures :one",
                    ConditionExpression="attribute_exists(window_start) AND window_start > :ws",
                    ExpressionAttributeValues={":one": 1, ":ws": window_start},
                    ReturnValues="ALL_NEW",
                )["Attributes"]
            except ClientError as e2:
                if e2.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                item = self.table.update_item(
                    Key=self._key(vendor),
                    UpdateExpression="SET failures = :one, window_start = :now",
                    ExpressionAttributeValues={":one": 1, ":now": values[":now"]},
                    ReturnValues="ALL_NEW",
                )["Attributes"]
            if int(item["failures"]) >= p.failures:
                try:
                    self.table.update_item(
                        Key=self._key(vendor),
                        UpdateExpression="SET open_until = :reopen",
                        ConditionExpression="attribute_not_exists(open_until)",
                        ExpressionAttributeValues={":reopen": values[":reopen"]},
                    )
                    observability.record_cooldown_opened(vendor)
                except ClientError as e3:
                    # Another container's failure opened it first: the circuit is open either way.
                    if e3.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        raise
        finally:
            self._cache.pop(vendor, None)
