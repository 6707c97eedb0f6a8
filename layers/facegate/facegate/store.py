"""The results log: one DynamoDB item per call, success or failure.

An item holds what happened and nothing a caller sent: images appear only as
SHA-256 fingerprints, identities only masked. Items expire after the stage's TTL.

An item belongs to its tenant (``facegate.api.tenant_of``): only that caller reads
it (``ResultView``, without the internal fields) or erases it; anyone else is told
it does not exist, in the very words an unknown id gets.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from facegate.config import Settings, settings
from facegate.errors import NotFound
from facegate.models import Attempt, Decision, Operation, SecurityLevel, VendorVerdict


class ConsensusVote(BaseModel):
    """One vendor's part in a consensus compare, as logged."""

    model_config = ConfigDict(extra="forbid")

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


class ResultView(BaseModel):
    """What GET /v1/results/{request_id} answers: the record without its internal fields."""

    # A field the model does not know is an error, never silently dropped.
    model_config = ConfigDict(extra="forbid")

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


def dynamo_number(value: float) -> Decimal:
    """DynamoDB takes numbers as Decimal; milliseconds are precision enough for times."""
    return Decimal(str(round(value, 3)))


class DynamoBacked:
    """One DynamoDB table, its boto3 resource made on first use (not at import: a cold
    start that never touches the table never pays for boto3)."""

    def __init__(self, table_name: str, resource: Any = None):
        self.table_name = table_name
        self._resource = resource
        self._table = None

    @property
    def table(self):
        if self._table is None:
            if self._resource is None:
                import boto3

                self._resource = boto3.resource("dynamodb")
            self._table = self._resource.Table(self.table_name)
        return self._table


class ResultsStore(DynamoBacked):
    def __init__(self, table_name: str, ttl_days: int = 90, resource: Any = None):
        super().__init__(table_name, resource)
        self.ttl_days = ttl_days

    def expiry(self, created_at: datetime) -> int:
        return int((created_at + timedelta(days=self.ttl_days)).timestamp())

    def put(self, record: ResultRecord) -> None:
        # A request id is written once: a second write would mean two calls shared one id.
        self.table.put_item(Item=_to_item(record), ConditionExpression="attribute_not_exists(request_id)")

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


def no_result(request_id: str) -> NotFound:
    """The one answer for an unknown id and for another tenant's record alike."""
    return NotFound(f"no result with request_id '{request_id[:64]}'")


def now() -> datetime:
    return datetime.now(UTC)


@cache
def default_store() -> ResultsStore:
    cfg: Settings = settings()
    return ResultsStore(cfg.results_table, cfg.result_ttl_days)
