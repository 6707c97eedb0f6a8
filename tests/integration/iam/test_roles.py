"""Every function under a role made of its own template policies, with moto enforcing
IAM (stackkit explains what moto checks and what it is taught): each one's happy path
works, and reaching another function's secret, table or prefix is refused."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from facegate_local.lambda_runtime import api_event, invoke, load_handler

from .stackkit import REGION, running_as

pytestmark = pytest.mark.xdist_group("iam")


def api(function: str, method: str, path: str, body: dict | None = None, **kw):
    event = api_event(
        method,
        path,
        None if body is None else json.dumps(body),
        headers={"Content-Type": "application/json", "x-api-key": "k"},
        stage="test",
        api_key="k",
        api_key_id="k-id",
        **kw,
    )
    status, _, parsed = invoke(load_handler(f"functions/{function}"), event, f"facegate-{function}")
    return status, parsed


def denied(call) -> bool:
    """Refused by IAM. (moto answers JSON-protocol services' AccessDenied in XML, which
    botocore reports as code "403".)"""
    try:
        call()
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403) and "AccessDenied" in (
            e.response["Error"]["Code"] + str(e)
        )
    return False


def test_compare_reads_s3_inputs_and_nothing_else_in_the_bucket(stack, face_bytes):
    bucket = stack.ref("BatchBucket")
    s3 = boto3.client("s3", region_name=REGION)
    for key in ("inputs/a/obama.jpg", "inputs/obama2.jpg", "batches/obama.jpg"):
        s3.put_object(Bucket=bucket, Key=key, Body=face_bytes(key.rsplit("/", 1)[-1]))
    with running_as(stack, "CompareFunction"):
        status, got = api(
            "compare",
            "POST",
            "/v1/compare",
            {"image1": {"s3": {"key": "inputs/a/obama.jpg"}}, "image2": {"s3": {"key": "inputs/obama2.jpg"}}},
        )
        assert status == 200, got
        assert got["decision"] == "match"
        s3 = boto3.client("s3", region_name=REGION)
        assert s3.get_object(Bucket=bucket, Key="inputs/obama2.jpg")["Body"].read()
        # The service refuses other keys before calling S3; the role would refuse them too.
        assert denied(lambda: s3.get_object(Bucket=bucket, Key="batches/obama.jpg"))
        assert denied(lambda: s3.put_object(Bucket=bucket, Key="inputs/x.jpg", Body=b"x"))
        sm = boto3.client("secretsmanager", region_name=REGION)
        assert sm.get_secret_value(SecretId=stack.ref("ShuxunSecret"))["SecretString"]  # its own vendors'
        assert denied(lambda: sm.get_secret_value(SecretId=stack.ref("JumeiSecret")))
        assert denied(lambda: sm.get_secret_value(SecretId=stack.ref("PepperSecret")))
        ddb = boto3.client("dynamodb", region_name=REGION)
        results = stack.ref("ResultsTable")
        assert denied(lambda: ddb.get_item(TableName=results, Key={"request_id": {"S": got["request_id"]}}))
        assert denied(lambda: ddb.scan(TableName=stack.ref("StateTable")))
    request_id = got["request_id"]

    with running_as(stack, "ResultsFunction"):
        status, record = api(
            "results",
            "GET",
            f"/v1/results/{request_id}",
            resource="/v1/results/{request_id}",
            path_parameters={"request_id": request_id},
        )
        assert status == 200, record
        assert record["request_id"] == request_id
        ddb = boto3.client("dynamodb", region_name=REGION)
        item = {"request_id": {"S": "forged"}}
        assert denied(lambda: ddb.put_item(TableName=stack.ref("ResultsTable"), Item=item))
        assert denied(lambda: ddb.scan(TableName=stack.ref("ResultsTable")))

    # The compare added to the caller's usage counters under its own role; the usage role reads
    # them with one Query, and may neither scan them nor touch the results log.
    with running_as(stack, "UsageFunction"):
        status, usage = api("usage", "GET", "/v1/usage")
        assert status == 200, usage
        assert [(r["vendor"], r["operation"], r["calls"]) for r in usage["vendors"]] == [("local", "compare", 1)]
        ddb = boto3.client("dynamodb", region_name=REGION)
        assert denied(lambda: ddb.scan(TableName=stack.ref("UsageTable")))
        assert denied(lambda: ddb.get_item(TableName=stack.ref("ResultsTable"), Key={"request_id": {"S": "x"}}))


def test_vendors_says_configured_without_reading_a_secret_value(stack):
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.put_secret_value(
        SecretId=stack.ref("ShuxunSecret"), SecretString=json.dumps({"app_key": "k", "app_secret": "s"})
    )
    with running_as(stack, "VendorsFunction"):
        status, got = api("vendors", "GET", "/v1/vendors")
        assert status == 200, got
        configured = {v["id"]: v["configured"] for v in got["vendors"]}
        assert configured == {
            "local": configured["local"],  # the engine's models: whether this machine has them
            "shuxun": True,
            "kuaidi100": False,
            "face2": False,
            "zoloz": False,
            "jumei": False,
        }
        sm = boto3.client("secretsmanager", region_name=REGION)
        assert denied(lambda: sm.get_secret_value(SecretId=stack.ref("ShuxunSecret")))
        ddb = boto3.client("dynamodb", region_name=REGION)
        assert denied(lambda: ddb.put_item(TableName=stack.ref("StateTable"), Item={"pk": {"S": "vendor#x"}}))


def test_a_batch_runs_under_the_batch_roles(stack, face_bytes):
    from facegate_local.batch import Queue, sqs_event

    bucket = stack.ref("BatchBucket")
    s3 = boto3.client("s3", region_name=REGION)
    for name in ("obama.jpg", "obama2.jpg"):
        s3.put_object(Bucket=bucket, Key=f"photos/{name}", Body=face_bytes(name))
    line = {"caller_id": "c-1", "vendor": "local", "image1": {"s3": {"key": "photos/obama.jpg"}}}
    line["image2"] = {"s3": {"key": "photos/obama2.jpg"}}
    put = s3.put_object(Bucket=bucket, Key="batches/one.jsonl", Body=json.dumps(line).encode() + b"\n")
    notification = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket},
                    "object": {
                        "key": "batches/one.jsonl",
                        "eTag": put["ETag"].strip('"'),
                        "versionId": put.get("VersionId"),
                    },
                },
            }
        ]
    }

    def queue(logical: str) -> Queue:
        return Queue(
            logical,
            stack.resolver.resolve({"Fn::GetAtt": [logical, "QueueName"]}),
            stack.ref(logical),
            stack.arn(logical),
            30,
            None,
        )

    manifests = queue("ManifestQueue")
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "r-1",
        "Body": json.dumps(notification),
        "Attributes": {"ApproximateReceiveCount": "1"},
    }
    with running_as(stack, "BatchSplitterFunction"):
        from facegate_local.lambda_runtime import lambda_context

        out = load_handler("functions/batch_splitter")(
            sqs_event([message], manifests, REGION), lambda_context("splitter")
        )
        assert out == {"batchItemFailures": []}
        sm = boto3.client("secretsmanager", region_name=REGION)
        assert denied(lambda: sm.get_secret_value(SecretId=stack.ref("ShuxunSecret")))
        s3 = boto3.client("s3", region_name=REGION)
        assert denied(lambda: s3.get_object(Bucket=bucket, Key="photos/obama.jpg"))

    items = queue("ItemQueue")
    received = boto3.client("sqs", region_name=REGION).receive_message(
        QueueUrl=items.url, MaxNumberOfMessages=10, AttributeNames=["All"]
    )["Messages"]
    assert len(received) == 1
    with running_as(stack, "BatchWorkerFunction"):
        from facegate_local.lambda_runtime import lambda_context

        out = load_handler("functions/batch_worker")(
            sqs_event(received, items, REGION), lambda_context("worker", timeout_s=120)
        )
        assert out == {"batchItemFailures": []}
        ddb = boto3.client("dynamodb", region_name=REGION)
        assert denied(lambda: ddb.get_item(TableName=stack.ref("IdempotencyTable"), Key={"id": {"S": "x"}}))
        assert denied(lambda: ddb.scan(TableName=stack.ref("ResultsTable")))
        assert denied(
            lambda: ddb.batch_write_item(
                RequestItems={stack.ref("ResultsTable"): [{"PutRequest": {"Item": {"request_id": {"S": "forged"}}}}]}
            )
        )

    report = json.loads(s3.get_object(Bucket=bucket, Key="results/one.jsonl")["Body"].read().splitlines()[0])
    assert report["status"] == "ok" and report["result"]["decision"] == "match", report
    with running_as(stack, "BatchesFunction"):
        batch_id = json.loads(received[0]["Body"])["batch_id"]  # by id only: a manifest name is guessable
        status, got = api(
            "batches",
            "GET",
            f"/v1/batches/{batch_id}",
            resource="/v1/batches/{batch_id}",
            path_parameters={"batch_id": batch_id},
        )
        assert status == 200, got
        assert (got["status"], got["done"], got["ok"]) == ("done", 1, 1)
