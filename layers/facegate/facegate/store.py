"""The results log: one DynamoDB item per call, success or failure.

An item holds what happened and nothing a caller sent: images appear only as
SHA-256 fingerprints, identities only masked. Items expire after the stage's TTL.

An item belongs to its tenant (``facegate.api.tenant_of``): only that caller reads
it (``ResultView``, without the internal fields) or erases it; anyone else is told
it does not exist, in the very words an unknown id gets.

Beside the log, ``UsageCounter`` keeps daily counters per tenant, vendor and operation
(GET /v1/usage), added to with each record the log takes: reading usage never scans the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from facegate.config import Settings, settings
from facegate.errors import InvalidRequest, NotFound, UsageNotConfigured
from facegate.models import Attempt, Decision, Operation, SecurityLevel, UsageResponse, UsageRow, VendorVerdict

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource, Table


class ConsensusVote(BaseModel):
    """One vendor's part in a consensus compare, as logged."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # built on first use, not at import

    vendor: str
    decision: Decision | None = None
    similarity: float | None = None
    threshold: float | None = None
    vendor_score: float | None = None
    vendor_request_id: str | None = None
    billed: bool | None = None
    error_code: str | None = None
    vendor_code: str | None = None

    @classmethod
    def of(cls, v: VendorVerdict) -> ConsensusVote:
        return cls(
            vendor=v.vendor,
            decision=v.decision,
            similarity=v.similarity,
            threshold=v.threshold,
            vendor_score=v.vendor_score,
            vendor_request_id=v.vendor_request_id,
            billed=v.billed,
            error_code=v.error.code if v.error else None,
            vendor_code=v.error.vendor_code if v.error else None,
        )


class PrescreenNote(BaseModel):
    """What pre-screening (facegate.prescreen) did for a call, as logged."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # built on first use, not at import

    outcome: Literal["passed", "refused", "skipped"]
    check: str | None = Field(
        default=None,
        description="refused: the check that failed (no_face, face_too_small, too_dark, too_blurred, "
        "multiple_faces); skipped: why (engine_unavailable).",
    )
    image: str | None = Field(default=None, description="refused: which image (image, image1, image2).")
    mode: Literal["faces", "quality"]
    screened: int = Field(ge=0, description="Images screened (URLs passed to the vendor and face tokens are not).")
    ms: int = Field(ge=0, description="Time the screen took.")
    avoided: list[str] = Field(
        default_factory=list, description="refused: the paid vendors not called (one billed call avoided each)."
    )


class ResultView(BaseModel):
    """What GET /v1/results/{request_id} answers: the record without its internal fields."""

    # A field the model does not know is an error, never silently dropped.
    model_config = ConfigDict(extra="forbid", defer_build=True)  # built on first use, not at import

    request_id: str
    operation: Operation
    status: Literal["ok", "error"]
    http_status: int
    vendor: str | None = Field(default=None, description="The vendor that answered, or the last one tried.")
    decision: Decision | None = None
    similarity: float | None = None
    threshold: float | None = None
    security_level: SecurityLevel | None = None
    vendor_score: float | None = None
    vendor_request_id: str | None = None
    billed: bool | None = None
    latency_ms: int
    error_code: str | None = None
    vendor_code: str | None = None
    image_sha256: list[str] = Field(default_factory=list)
    face_count: int | None = None
    dimension: int | None = None
    name_masked: str | None = None
    id_number_masked: str | None = None
    consensus_rule: Literal["all", "majority"] | None = None
    consensus: list[ConsensusVote] | None = Field(default=None, description="Consensus only: every vendor's part.")
    attempts: list[Attempt] = Field(default_factory=list)
    prescreen: PrescreenNote | None = Field(default=None, description="Present when the photos were pre-screened.")
    batch_id: str | None = None
    batch_line: int | None = None
    created_at: datetime
    expires_at: int = Field(description="Epoch seconds; DynamoDB's TTL removes the item after it.")


class ResultRecord(ResultView):
    """The stored item: the view plus what only facegate itself may see."""

    tenant: str | None = Field(default=None, description="Who owns the record (facegate.api.tenant_of).")
    id_number_hmac: str | None = Field(
        default=None, description="HMAC-SHA256 with the stage's pepper, for internal correlation; absent without one."
    )
    idempotency_id: str | None = Field(
        default=None, description="The id of the call's Idempotency-Key record (a hash, never the key itself)."
    )

    def view(self) -> ResultView:
        return ResultView.model_validate(self.model_dump(include=set(ResultView.model_fields)))


def _to_item(record: ResultRecord) -> dict[str, Any]:
    # DynamoDB wants Decimal, not float; JSON round trip does it in one pass.
    item = json.loads(record.model_dump_json(exclude_none=True), parse_float=Decimal)
    return {k: v for k, v in item.items() if v != []}


# A DynamoDB item as the table resource returns it. boto3-stubs types every attribute as
# the union of all DynamoDB types; which one an attribute holds is this table's schema,
# which no stub knows, so the code that reads an item converts each attribute itself.
Item = dict[str, Any]


def dynamo_number(value: float) -> Decimal:
    """DynamoDB takes numbers as Decimal; milliseconds are precision enough for times."""
    return Decimal(str(round(value, 3)))


class DynamoBacked:
    """One DynamoDB table, its boto3 resource made on first use (not at import: a cold
    start that never touches the table never pays for boto3)."""

    def __init__(self, table_name: str, resource: DynamoDBServiceResource | None = None):
        self.table_name = table_name
        self._resource = resource
        self._table: Table | None = None

    @property
    def resource(self) -> DynamoDBServiceResource:
        if self._resource is None:
            import boto3

            self._resource = boto3.resource("dynamodb")
        return self._resource

    @property
    def table(self) -> Table:
        if self._table is None:
            self._table = self.resource.Table(self.table_name)
        return self._table


class ResultsStore(DynamoBacked):
    def __init__(
        self, table_name: str, ttl_days: int = 90, resource: Any = None, usage: UsageCounter | None = None
    ) -> None:
        super().__init__(table_name, resource)
        self.ttl_days = ttl_days
        self.usage = usage

    def expiry(self, created_at: datetime) -> int:
        return int((created_at + timedelta(days=self.ttl_days)).timestamp())

    def put(self, record: ResultRecord) -> None:
        """Log the record, then count it (``UsageCounter``). Counted only once the log took
        it, so a write refused as a duplicate is never counted twice; a counter write that
        fails never fails the call: it is logged and counted for alarms."""
        # A request id is written once: a second write would mean two calls shared one id.
        self.table.put_item(Item=_to_item(record), ConditionExpression="attribute_not_exists(request_id)")
        if self.usage is None:
            return
        try:
            self.usage.add(record)
        except Exception:
            from facegate.observability import logger, metrics

            logger.exception("usage counter write failed", extra={"request_id": record.request_id})
            metrics.add_metric(name="UsageCountWriteFailed", unit="Count", value=1)

    def get(self, request_id: str) -> ResultRecord:
        item = self.table.get_item(Key={"request_id": request_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise no_result(request_id)
        return ResultRecord.model_validate(item)

    def owned(self, request_id: str, tenant: str | None) -> ResultRecord:
        """The record if ``tenant`` owns it; otherwise exactly what an unknown id gets."""
        record = self.get(request_id)
        if tenant is None or record.tenant != tenant:
            raise no_result(request_id)
        return record

    def delete(self, request_id: str, tenant: str) -> None:
        """Erase the tenant's record; NotFound (as for an unknown id) if it is not theirs."""
        try:
            self.table.delete_item(
                Key={"request_id": request_id},
                ConditionExpression="tenant = :t",
                ExpressionAttributeValues={":t": tenant},
            )
        except self.table.meta.client.exceptions.ConditionalCheckFailedException:
            raise no_result(request_id) from None


# GET /v1/usage reads at most this many days: one Query of at most days × vendor-operations items.
USAGE_MAX_DAYS = 92


@dataclass
class Tally:
    calls: int = 0
    billed: int = 0
    billing_unknown: int = 0
    errors: int = 0
    billed_calls_avoided: int = 0

    def count(self, attempt: Attempt) -> None:
        self.calls += 1
        self.billed += attempt.billed is True
        self.billing_unknown += attempt.billed is None
        self.errors += attempt.outcome != "ok"

    def merge(self, other: Mapping[str, Any]) -> None:
        for name in ("calls", "billed", "billing_unknown", "errors", "billed_calls_avoided"):
            setattr(self, name, getattr(self, name) + int(other.get(name, 0)))


class UsageCounter(DynamoBacked):
    """Daily usage per tenant, vendor and operation: what GET /v1/usage answers.

    Counted per attempt, from the record's ``attempts``: each attempt is one call to its
    vendor, billed if the vendor billed it (``billed`` true), ``billing_unknown`` if it may
    have (null: e.g. a read timeout), an error unless its outcome is ``ok``. A call that
    failed over from A to B counts for A (its failed attempt, billed or not) and for B; a
    retry of A counts twice for A; a consensus counts for every vendor it asked. A call
    refused before any vendor was tried (a bad request) counts for none.

    One item per tenant, day (UTC, of the record's ``created_at``) and vendor-operation:
    ``pk`` the tenant, ``sk`` ``YYYY-MM-DD#vendor#operation``; each record adds to it with
    one atomic ``UpdateItem ADD`` per vendor it tried. A tenant's days are one item
    collection, so a range of days is ONE Query on ``sk BETWEEN`` (paged), reading at
    most days × vendor-operations small items; ranges are capped at ``USAGE_MAX_DAYS``.
    Items expire ``ttl_days`` after their day. Batch items count under their batch's
    tenant (``batch:<batch_id>``, service.Caller), which no API caller is."""

    def __init__(
        self,
        table_name: str,
        ttl_days: int = 400,
        prices: Mapping[str, float] | None = None,
        currency: str = "CNY",
        resource: Any = None,
    ) -> None:
        super().__init__(table_name, resource)
        self.ttl_days = ttl_days
        # The built-in engine has no per-call cost; the stage's table may still say otherwise.
        self.prices = {"local": 0.0, **(prices or {})}
        self.currency = currency

    def add(self, record: ResultRecord) -> None:
        avoided = record.prescreen.avoided if record.prescreen and record.prescreen.outcome == "refused" else []
        if record.tenant is None or not (record.attempts or avoided):
            return
        day = record.created_at.astimezone(UTC).date()
        expires_at = int(datetime.combine(day + timedelta(days=self.ttl_days), datetime.min.time(), UTC).timestamp())
        by_vendor: dict[str, Tally] = {}
        for attempt in record.attempts:
            by_vendor.setdefault(attempt.vendor, Tally()).count(attempt)
        for vendor in avoided:  # pre-screening refused the call before it went out (facegate.prescreen)
            by_vendor.setdefault(vendor, Tally()).billed_calls_avoided += 1
        for vendor, t in by_vendor.items():
            self.table.update_item(
                Key={"pk": record.tenant, "sk": f"{day.isoformat()}#{vendor}#{record.operation.value}"},
                UpdateExpression="SET expires_at = :x ADD calls :c, billed :b, billing_unknown :u, errors :e, "
                "billed_calls_avoided :a",
                ExpressionAttributeValues={
                    ":x": expires_at,
                    ":c": t.calls,
                    ":b": t.billed,
                    ":u": t.billing_unknown,
                    ":e": t.errors,
                    ":a": t.billed_calls_avoided,
                },
            )

    def report(self, tenant: str | None, first: date, last: date) -> UsageResponse:
        """The tenant's usage from ``first`` to ``last`` (inclusive), summed per vendor and
        operation; the estimate prices billed calls only. No tenant owns nothing."""
        totals: dict[tuple[str, str], Tally] = {}
        for item in self._items(tenant, first, last) if tenant is not None else ():
            _, vendor, operation = str(item["sk"]).split("#", 2)
            totals.setdefault((vendor, operation), Tally()).merge(item)
        rows = []
        for (vendor, operation), t in sorted(totals.items()):
            price = self.prices.get(vendor)
            cost = None if price is None else round(t.billed * price, 6)
            rows.append(UsageRow(vendor=vendor, operation=Operation(operation), estimated_cost=cost, **vars(t)))
        return UsageResponse(from_=first, to=last, currency=self.currency, vendors=rows)

    def _items(self, tenant: str, first: date, last: date) -> Iterator[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        # "~" sorts after every character of a vendor id or an operation name.
        condition = Key("pk").eq(tenant) & Key("sk").between(first.isoformat(), f"{last.isoformat()}#~")
        kwargs: dict[str, Any] = {"KeyConditionExpression": condition}
        while True:
            page = self.table.query(**kwargs)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def usage_days(first: str | None, last: str | None, today: date) -> tuple[date, date]:
    """GET /v1/usage's range: ``to`` defaults to today (UTC), ``from`` to the first day of
    ``to``'s month; both inclusive, ``from`` ≤ ``to``, at most ``USAGE_MAX_DAYS`` days."""
    end = _day("to", last) if last else today
    start = _day("from", first) if first else end.replace(day=1)
    if start > end:
        raise InvalidRequest("from must not be after to")
    if (end - start).days + 1 > USAGE_MAX_DAYS:
        raise InvalidRequest(f"at most {USAGE_MAX_DAYS} days at once (from … to, inclusive)")
    return start, end


def _day(name: str, value: str) -> date:
    # Exactly YYYY-MM-DD: date.fromisoformat alone would also take 20261101 and 2026-W44-7.
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a date, YYYY-MM-DD") from None


def no_result(request_id: str) -> NotFound:
    """The one answer for an unknown id and for another tenant's record alike."""
    return NotFound(f"no result with request_id '{request_id[:64]}'")


def now() -> datetime:
    return datetime.now(UTC)


@cache
def default_store() -> ResultsStore:
    cfg: Settings = settings()
    usage = None
    if cfg.usage_table:
        usage = UsageCounter(cfg.usage_table, cfg.usage_ttl_days, cfg.vendor_prices, cfg.price_currency)
    return ResultsStore(cfg.results_table, cfg.result_ttl_days, usage=usage)


def default_usage() -> UsageCounter:
    """The stage's usage counters; UsageNotConfigured (501) on a stage without a usage table."""
    usage = default_store().usage
    if usage is None:
        raise UsageNotConfigured("usage is not counted on this deployment (no usage table)")
    return usage
