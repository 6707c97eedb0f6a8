"""Batch state in DynamoDB (``FACEGATE_BATCH_TABLE``): one table, generic keys.

- ``(<batch_id>, meta)``: the manifest, format, CSV header, ``total``, counters
  (``done``, ``n_ok``, ``n_error``, ``n_<decision>``), ``status``, times, the enqueue
  checkpoint and the report lease.
- ``(<batch_id>, line#000000042)``: one manifest line: its lease (``lease_id``,
  ``lease_until``), the request ids tried, billing counters and, once finished, its
  ``outcome`` (the report line, as JSON).
- ``(name#<name>, latest)``: the newest batch of a manifest name, for the local
  runner (``make batch``) only. GET /v1/batches takes the batch id alone: a
  manifest name is easy to guess.

Exactly one item per line. Idempotency per (batch id, line): a line is *claimed* with
a conditional update (no outcome yet, and no live lease) before any vendor is
called, and *finished* in one transaction that writes the outcome only if there is
none yet and counts it on the meta item, so the counters can never drift from the
lines. Nothing here stores images, names or ID numbers: outcomes are API responses,
which carry identities masked only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

from facegate.batch import DECISIONS, ManifestRef, ReportLine, is_batch_id
from facegate.batch_records import BatchMeta, Claim, LineItem, line_sk
from facegate.config import Settings, settings
from facegate.errors import NotFound
from facegate.models import ErrorBody
from facegate.store import DynamoBacked, dynamo_number

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource

META = "meta"
LATEST = "latest"
ACTIVE = ("splitting", "running", "reporting")


class BatchStore(DynamoBacked):
    def __init__(self, table_name: str, ttl_days: int = 90, resource: DynamoDBServiceResource | None = None):
        super().__init__(table_name, resource)
        self.ttl_days = ttl_days

    @property
    def client(self) -> DynamoDBClient:
        """The table resource's client: it takes and returns plain Python values (it
        (de)serialises DynamoDB's typed JSON itself), transactions included."""
        return self.table.meta.client

    def expiry(self, now: float) -> int:
        return int(now + self.ttl_days * 86400)

    # --- the batch ---------------------------------------------------------------------

    def create_batch(self, ref: ManifestRef, now: float) -> tuple[bool, BatchMeta]:
        """The batch's meta item in status ``splitting``; (False, existing) if it exists."""
        assert ref.name is not None and ref.format is not None
        item: dict[str, str | int | Decimal] = {
            "pk": ref.batch_id,
            "sk": META,
            "name": ref.name,
            "bucket": ref.bucket,
            "key": ref.key,
            "format": ref.format,
            "status": "splitting",
            "created_at": dynamo_number(now),
            "done": 0,
            "enqueued": 0,
            "expires_at": self.expiry(now),
            **({"version_id": ref.version_id} if ref.version_id else {}),
            **({"etag": ref.etag} if ref.etag else {}),
        }
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except self.client.exceptions.ConditionalCheckFailedException:
            existing = self.get_meta(ref.batch_id)
            assert existing is not None
            return False, existing
        self.table.put_item(
            Item={
                "pk": f"name#{ref.name}",
                "sk": LATEST,
                "batch_id": ref.batch_id,
                "created_at": dynamo_number(now),
                "expires_at": self.expiry(now),
            }
        )
        return True, BatchMeta.from_item(item)

    def get_meta(self, batch_id: str) -> BatchMeta | None:
        item = self.table.get_item(Key={"pk": batch_id, "sk": META}, ConsistentRead=True).get("Item")
        return None if item is None else BatchMeta.from_item(item)

    def find(self, batch_id: str) -> BatchMeta:
        """A batch by its id (never by manifest name: GET /v1/batches)."""
        meta = self.get_meta(batch_id) if is_batch_id(batch_id) else None
        if meta is None:
            raise NotFound(f"no batch with id '{batch_id[:64]}'")
        return meta

    def newest(self, name: str) -> BatchMeta | None:
        """The newest batch of a manifest name: for the local runner, not the API."""
        pointer = self.table.get_item(Key={"pk": f"name#{name}", "sk": LATEST}).get("Item")
        return self.get_meta(str(pointer["batch_id"])) if pointer else None

    def set_total(self, batch_id: str, total: int, header: list[str] | None) -> None:
        names = {"#t": "total"}
        values: dict[str, Any] = {":t": total}
        expr = "SET #t = :t"
        if header:
            expr += ", header = :h"
            values[":h"] = header
        self.table.update_item(
            Key={"pk": batch_id, "sk": META},
            UpdateExpression=expr,
            ConditionExpression="attribute_not_exists(#t) OR #t = :t",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def set_enqueued(self, batch_id: str, count: int) -> None:
        self.table.update_item(
            Key={"pk": batch_id, "sk": META},
            UpdateExpression="SET enqueued = :n",
            ExpressionAttributeValues={":n": count},
        )

    def mark_running(self, batch_id: str, enqueued: int) -> None:
        # Failing the condition means reporting, done or failed: every item finished first.
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.table.update_item(
                Key={"pk": batch_id, "sk": META},
                UpdateExpression="SET #s = :running, enqueued = :n",
                ConditionExpression="#s = :splitting",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":running": "running", ":splitting": "splitting", ":n": enqueued},
            )

    def fail(self, batch_id: str, error: ErrorBody, now: float) -> bool:
        """Mark a batch failed as a whole (its manifest cannot be used). False if it
        had already finished."""
        try:
            self.table.update_item(
                Key={"pk": batch_id, "sk": META},
                UpdateExpression="SET #s = :failed, #e = :e, finished_at = :now, #t = if_not_exists(#t, :zero)",
                ConditionExpression="#s IN (:splitting, :running)",
                ExpressionAttributeNames={"#s": "status", "#e": "error", "#t": "total"},
                ExpressionAttributeValues={
                    ":failed": "failed",
                    ":e": error.model_dump_json(),
                    ":now": dynamo_number(now),
                    ":zero": 0,
                    ":splitting": "splitting",
                    ":running": "running",
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def claim_report(self, batch_id: str, now: float, until: float) -> bool:
        """Only one writer of the report at a time; a writer that died is replaced once
        its lease ran out."""
        try:
            self.table.update_item(
                Key={"pk": batch_id, "sk": META},
                UpdateExpression="SET #s = :reporting, report_lease_until = :until",
                ConditionExpression=(
                    "#done >= #t AND #s IN (:splitting, :running, :reporting) AND "
                    "(attribute_not_exists(report_lease_until) OR report_lease_until < :now)"
                ),
                ExpressionAttributeNames={"#s": "status", "#done": "done", "#t": "total"},
                ExpressionAttributeValues={
                    ":reporting": "reporting",
                    ":splitting": "splitting",
                    ":running": "running",
                    ":until": dynamo_number(until),
                    ":now": dynamo_number(now),
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def finish_report(self, batch_id: str, now: float) -> None:
        self.table.update_item(
            Key={"pk": batch_id, "sk": META},
            UpdateExpression="SET #s = :done, finished_at = :now REMOVE report_lease_until",
            ConditionExpression="#s = :reporting",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":done": "done", ":reporting": "reporting", ":now": dynamo_number(now)},
        )

    # --- lines -------------------------------------------------------------------------

    def get_line(self, batch_id: str, line: int) -> LineItem | None:
        item = self.table.get_item(Key={"pk": batch_id, "sk": line_sk(line)}, ConsistentRead=True).get("Item")
        return None if item is None else LineItem.from_item(item)

    def claim_line(
        self, batch_id: str, line: int, request_id: str, now: float, until: float, *, expires_at: int
    ) -> Claim:
        """Take the line for one attempt, unless it is finished or someone holds a live
        lease on it. Returns the request ids of earlier attempts (to recover an outcome
        a stopped worker got but never wrote)."""
        try:
            old = self.table.update_item(
                Key={"pk": batch_id, "sk": line_sk(line)},
                UpdateExpression=(
                    "SET lease_id = :rid, lease_until = :until, "
                    "request_ids = list_append(if_not_exists(request_ids, :empty), :rids), "
                    "expires_at = if_not_exists(expires_at, :exp) ADD attempts :one"
                ),
                ConditionExpression=(
                    "attribute_not_exists(outcome) AND (attribute_not_exists(lease_until) OR lease_until < :now)"
                ),
                ExpressionAttributeValues={
                    ":rid": request_id,
                    ":rids": [request_id],
                    ":empty": [],
                    ":until": dynamo_number(until),
                    ":now": dynamo_number(now),
                    ":exp": expires_at,
                    ":one": 1,
                },
                ReturnValues="ALL_OLD",
            ).get("Attributes")
        except self.client.exceptions.ConditionalCheckFailedException:
            current = self.get_line(batch_id, line)
            if current is None or current.done:
                return Claim("done")
            return Claim("busy", lease_until=current.lease_until)
        previous = LineItem.from_item({"sk": line_sk(line), **old}) if old else None
        return Claim(
            "claimed",
            previous_request_ids=tuple(previous.request_ids) if previous else (),
            last_error=previous.last_error if previous else None,
        )

    def count_redrive(self, batch_id: str, line: int, *, expires_at: int) -> None:
        self.table.update_item(
            Key={"pk": batch_id, "sk": line_sk(line)},
            UpdateExpression="SET expires_at = if_not_exists(expires_at, :exp) ADD redrives :one",
            ExpressionAttributeValues={":one": 1, ":exp": expires_at},
        )

    def release_line(
        self,
        batch_id: str,
        line: int,
        request_id: str,
        *,
        billed_calls: int,
        billed_unknown: int,
        last_error: ErrorBody | None,
    ) -> None:
        """Give the line back after a retryable failure, keeping count of billing."""
        expr = "REMOVE lease_id, lease_until ADD billed_calls :b, billed_unknown :u"
        values: dict[str, Any] = {":b": billed_calls, ":u": billed_unknown, ":rid": request_id}
        if last_error is not None:
            expr = "SET last_error = :e " + expr
            values[":e"] = last_error.model_dump_json()
        # Failing the condition means the lease ran out and another attempt took the line.
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.table.update_item(
                Key={"pk": batch_id, "sk": line_sk(line)},
                UpdateExpression=expr,
                ConditionExpression="lease_id = :rid AND attribute_not_exists(outcome)",
                ExpressionAttributeValues=values,
            )

    def complete_line(
        self,
        batch_id: str,
        outcome: ReportLine,
        now: float,
        *,
        billed_calls: int = 0,
        billed_unknown: int = 0,
        recovered: bool = False,
        expires_at: int,
    ) -> bool:
        """Write the line's outcome and count it on the batch, atomically. False if the
        line already had an outcome (then nothing is written or counted)."""
        line_values: dict[str, Any] = {
            ":o": outcome.to_json(),
            ":st": outcome.status,
            ":now": dynamo_number(now),
            ":b": billed_calls,
            ":u": billed_unknown,
            ":rec": recovered,
            ":exp": expires_at,
        }
        line_set = (
            "outcome = :o, st = :st, completed_at = :now, recovered = :rec, "
            "expires_at = if_not_exists(expires_at, :exp)"
        )
        if outcome.operation is not None:
            line_set += ", operation = :op"
            line_values[":op"] = outcome.operation.value
        meta_add = "ADD #done :one, n_ok :ok, n_error :err"
        meta_values: dict[str, Any] = {
            ":one": 1,
            ":ok": 1 if outcome.status == "ok" else 0,
            ":err": 0 if outcome.status == "ok" else 1,
        }
        if outcome.status == "ok" and outcome.decision in DECISIONS:
            meta_add += f", n_{outcome.decision} :one"
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": {"pk": batch_id, "sk": line_sk(outcome.line)},
                            "UpdateExpression": f"SET {line_set} REMOVE lease_id, lease_until "
                            "ADD billed_calls :b, billed_unknown :u",
                            "ConditionExpression": "attribute_not_exists(outcome)",
                            "ExpressionAttributeValues": line_values,
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": {"pk": batch_id, "sk": META},
                            "UpdateExpression": meta_add,
                            "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeNames": {"#done": "done"},
                            "ExpressionAttributeValues": meta_values,
                        }
                    },
                ]
            )
        except self.client.exceptions.TransactionCanceledException as e:
            reasons = [r.get("Code") for r in e.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return False
            raise
        return True

    def lines(self, batch_id: str) -> Iterator[LineItem]:
        """Every line item of a batch, in line order."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :b AND begins_with(sk, :p)",
            "ExpressionAttributeValues": {":b": batch_id, ":p": "line#"},
            "ConsistentRead": True,
        }
        while True:
            page = self.table.query(**kwargs)
            for item in page.get("Items", []):
                yield LineItem.from_item(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@cache
def default_batch_store() -> BatchStore:
    cfg: Settings = settings()
    return BatchStore(cfg.batch_table, cfg.result_ttl_days)
