"""Helpers of the batch tests: the running stack's handles, manifest lines."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

import boto3

from facegate_local.batch import LocalBatches
from facegate_local.lambda_runtime import api_event, invoke, load_handler
from facegate_local.sandboxes.jumei import DEFAULT_ID_NUMBER, DEFAULT_NAME, JumeiSandbox
from facegate_local.sandboxes.shuxun import ShuxunSandbox

STAGE = "test"
READ_TIMEOUT_S = 0.3  # FACEGATE_READ_TIMEOUT: the sandbox's "timeout" fault stalls longer
SANDBOX_STALL_S = 1.0


def closed_port() -> int:
    """A loopback port nothing listens on (a vendor that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Batches:
    local: LocalBatches
    shuxun: ShuxunSandbox
    jumei: JumeiSandbox

    @property
    def bucket(self) -> str:
        return self.local.bucket

    def upload_photos(self, photos: dict[str, bytes]) -> None:
        for name, data in photos.items():
            self.local.upload(f"photos/{name}", data)

    def upload_manifest(self, name: str, data: bytes | str, fmt: str = "jsonl") -> dict[str, Any]:
        body = data.encode() if isinstance(data, str) else data
        return self.local.upload(f"batches/{name}.{fmt}", body)

    def run(self, name: str, **kw):
        return self.local.run(name, timeout_s=kw.pop("timeout_s", 300), **kw)

    def report(self, name: str) -> list[dict[str, Any]]:
        return self.local.report(name)

    def report_text(self, name: str) -> str:
        from facegate.batch import report_key

        return self.local.read(report_key(name)).decode()

    def summary(self, name: str) -> dict[str, Any]:
        return self.local.summary(name)

    def line_items(self, batch_id: str) -> list[dict[str, Any]]:
        table = boto3.resource("dynamodb").Table(self.local.batch_table)
        items, kwargs = [], {"KeyConditionExpression": "pk = :b", "ExpressionAttributeValues": {":b": batch_id}}
        while True:
            page = table.query(**kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return [i for i in items if i["sk"].startswith("line#")]

    def results_log(self) -> list[dict[str, Any]]:
        table = boto3.resource("dynamodb").Table(self.local.results_table)
        items, kwargs = [], {}
        while True:
            page = table.scan(ConsistentRead=True, **kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def queue_depth(self, logical: str) -> int:
        attrs = boto3.client("sqs").get_queue_attributes(
            QueueUrl=self.local.queues[logical].url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    @staticmethod
    def get_batch(id_or_name: str) -> tuple[int, Any]:
        event = api_event(
            "GET",
            f"/v1/batches/{id_or_name}",
            resource="/v1/batches/{batch_id}",
            path_parameters={"batch_id": id_or_name},
            headers={"x-api-key": "test-key"},
            api_key="test-key",
            api_key_id="test-key-id",
        )
        status, _, body = invoke(load_handler("functions/batches"), event, "facegate-batches")
        return status, body


def compare_line(i: int, **extra: Any) -> str:
    a, b = ("obama.jpg", "obama2.jpg") if i % 3 else ("obama.jpg", "biden.jpg")
    return json.dumps(
        {
            "caller_id": f"c-{i}",
            "vendor": "shuxun",
            "image1": {"s3": {"key": f"photos/{a}"}},
            "image2": {"s3": {"key": f"photos/{b}"}},
            **extra,
        }
    )


def verify_line(i: int) -> str:
    return json.dumps(
        {
            "operation": "verify_identity",
            "caller_id": f"v-{i}",
            "vendor": "jumei",
            "name": DEFAULT_NAME,
            "id_number": DEFAULT_ID_NUMBER,
            "image": {"s3": {"key": "photos/obama.jpg"}},
        },
        ensure_ascii=False,
    )
