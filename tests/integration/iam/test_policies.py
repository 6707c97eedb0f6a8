"""Every function's grants, read from the transformed template, against the table of what
each one needs (the code's calls). This covers what moto's enforcement cannot judge
(stackkit): conditions, wildcards in actions, and grants no test run happens to use."""

from __future__ import annotations

import pytest
from moto import mock_aws

from .stackkit import Stack

pytestmark = pytest.mark.xdist_group("iam")


@pytest.fixture(scope="module")
def stack():
    """Read-only here: one stack for the module (the transform takes seconds)."""
    with mock_aws():
        yield Stack(stage="test")


@pytest.fixture(scope="module")
def stack_with_extra_buckets():
    with mock_aws():
        yield Stack(stage="other", parameters={"ExtraInputBuckets": "photos-a,photos.b"})


IMAGES = "s3:GetObject BatchBucket/inputs/*"
IDEMPOTENCY = {f"dynamodb:{a} IdempotencyTable" for a in ("GetItem", "PutItem", "UpdateItem", "DeleteItem")}
HEALTH = {f"dynamodb:{a} StateTable" for a in ("GetItem", "BatchGetItem", "UpdateItem", "DeleteItem")}
# Every results-log writer also adds to the usage counters (store.ResultsStore.put), never reads them.
RESULTS_WRITE = {"dynamodb:PutItem ResultsTable", "dynamodb:UpdateItem UsageTable"}
BATCH_TABLE_CRUD = {
    f"dynamodb:{a} BatchTable{index}"
    for a in (
        "GetItem",
        "DeleteItem",
        "PutItem",
        "Scan",
        "Query",
        "UpdateItem",
        "BatchWriteItem",
        "BatchGetItem",
        "DescribeTable",
        "ConditionCheckItem",
    )
    for index in ("", "/index/*")
}


def secrets(*logical: str) -> set[str]:
    return {f"secretsmanager:GetSecretValue {s}" for s in logical}


VENDOR_SECRETS = ("ShuxunSecret", "Kuaidi100Secret", "Face2Secret", "ZolozSecret", "JumeiSecret")
API_OPERATION = IDEMPOTENCY | HEALTH | RESULTS_WRITE | {IMAGES}

EXPECTED = {
    "CompareFunction": API_OPERATION | secrets("ShuxunSecret", "Kuaidi100Secret", "Face2Secret", "ZolozSecret"),
    "DetectFunction": API_OPERATION | secrets("Face2Secret"),
    "FeaturesFunction": API_OPERATION | secrets("Face2Secret"),
    "VerifyIdentityFunction": API_OPERATION | secrets("JumeiSecret", "PepperSecret"),
    # GET reads one record; DELETE erases it and the call's Idempotency-Key record.
    "ResultsFunction": {
        "dynamodb:GetItem ResultsTable",
        "dynamodb:DeleteItem ResultsTable",
        "dynamodb:DeleteItem IdempotencyTable",
    },
    # GET /v1/usage: one Query over the caller's days; nothing else (not the results log).
    "UsageFunction": {"dynamodb:Query UsageTable", "dynamodb:GetItem UsageTable"},
    # GET /openapi.json (PublishOpenApi): a file beside the handler, no AWS call at all.
    "OpenApiFunction": set(),
    "VendorsFunction": {f"secretsmanager:DescribeSecret {s}" for s in VENDOR_SECRETS} | {"dynamodb:GetItem StateTable"},
    "BatchesFunction": {
        f"dynamodb:{a} BatchTable{index}"
        for a in ("GetItem", "Scan", "Query", "BatchGetItem", "DescribeTable")
        for index in ("", "/index/*")
    },
    "BatchSplitterFunction": BATCH_TABLE_CRUD
    | {
        "s3:GetObject BatchBucket/batches/*",
        "s3:GetObjectVersion BatchBucket/batches/*",
        "s3:PutObject BatchBucket/results/*",
        "s3:AbortMultipartUpload BatchBucket/results/*",
        "sqs:SendMessage* ItemQueue",
    },
    "BatchWorkerFunction": BATCH_TABLE_CRUD
    | HEALTH
    | RESULTS_WRITE
    | secrets(*VENDOR_SECRETS, "PepperSecret")
    | {
        IMAGES,  # ImageInputsPolicy, for the other buckets ExtraInputBuckets may list
        "s3:GetObject BatchBucket/*",  # manifests and the images they name, anywhere in the bucket
        "s3:GetObjectVersion BatchBucket/*",
        "s3:PutObject BatchBucket/results/*",
        "s3:AbortMultipartUpload BatchBucket/results/*",
        "sqs:ChangeMessageVisibility ItemQueue",
        "dynamodb:GetItem ResultsTable",  # recover a logged answer: one record, never a scan
    },
    "BatchDlqFunction": BATCH_TABLE_CRUD
    | RESULTS_WRITE
    | {
        "s3:GetObject BatchBucket/batches/*",
        "s3:GetObjectVersion BatchBucket/batches/*",
        "s3:PutObject BatchBucket/results/*",
        "s3:AbortMultipartUpload BatchBucket/results/*",
        "sqs:SendMessage* ItemQueue",
        "dynamodb:GetItem ResultsTable",
    },
}


def grants(stack: Stack, function: str) -> set[str]:
    """'action resource' pairs, with the stack's physical names written as logical ids."""
    names = {}
    for logical, r in stack.template.resources.items():
        if r["Type"] in ("AWS::DynamoDB::Table", "AWS::SecretsManager::Secret", "AWS::SQS::Queue"):
            names[stack.arn(logical) if r["Type"] != "AWS::SecretsManager::Secret" else stack.ref(logical)] = logical
        elif r["Type"] == "AWS::S3::Bucket":
            names[stack.arn(logical)] = logical
    out = set()
    for st in stack.roles[function].statements:
        assert st["Effect"] == "Allow", st
        assert "Condition" not in st and "NotAction" not in st and "NotResource" not in st, st
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for resource in resources:
            for physical, logical in sorted(names.items(), key=lambda kv: -len(kv[0])):
                if resource == physical or resource.startswith(physical + "/"):
                    resource = logical + resource[len(physical) :]
                    break
            out |= {f"{a} {resource}" for a in actions}
    return out


@pytest.mark.parametrize("function", sorted(EXPECTED))
def test_each_function_is_granted_exactly_what_it_uses(stack, function):
    assert grants(stack, function) == EXPECTED[function]


def test_every_function_is_in_the_table(stack):
    assert set(stack.roles) == set(EXPECTED)


def test_no_function_may_batch_write_the_results_log_or_read_a_vendor_secret_it_does_not_call(stack):
    for function in stack.roles:
        assert not {g for g in grants(stack, function) if g.startswith("dynamodb:BatchWriteItem ResultsTable")}
    assert not {g for g in grants(stack, "VendorsFunction") if g.startswith("secretsmanager:GetSecretValue")}


def test_extra_input_buckets_are_granted_to_the_image_readers_only(stack_with_extra_buckets):
    listed = stack_with_extra_buckets
    expected = {"s3:GetObject arn:aws:s3:::photos-a/*", "s3:GetObject arn:aws:s3:::photos.b/*"}
    for function in listed.roles:
        extra = {g for g in grants(listed, function) if "photos" in g}
        readers = ("CompareFunction", "DetectFunction", "FeaturesFunction", "VerifyIdentityFunction")
        assert extra == (expected if function in (*readers, "BatchWorkerFunction") else set()), function
        if function in readers:
            assert listed.environment(function)["FACEGATE_INPUT_BUCKETS"] == "photos-a,photos.b"
            assert listed.environment(function)["FACEGATE_INPUTS_PREFIX"] == "inputs/"
