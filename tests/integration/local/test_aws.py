"""The AWS emulation behind `make run`: resources created in moto from the
template's own definitions, and plain HTTP to loopback left alone."""

from __future__ import annotations

import json
import os
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
import requests
from moto import mock_aws

from facegate_local import aws
from facegate_local.template import Resolver, Template, Unresolvable

ROOT = Path(__file__).resolve().parents[3]
VENDORS = ("shuxun", "kuaidi100", "face2", "zoloz", "jumei")


@pytest.fixture
def real() -> Template:
    return Template.load(ROOT / "template.yaml")


def test_the_real_template_creates_every_table_and_the_results_table_as_defined(real):
    with mock_aws():
        resolver = Resolver(real, parameters={"Stage": "dev"})
        aws.create_resources(real, resolver, region="us-east-1")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        tables = real.of_type("AWS::DynamoDB::Table")
        assert "ResultsTable" in tables
        assert sorted(ddb.list_tables()["TableNames"]) == sorted(resolver.resolve({"Ref": t}) for t in tables)
        name = resolver.resolve({"Ref": "ResultsTable"})
        table = ddb.describe_table(TableName=name)["Table"]
        assert table["KeySchema"] == [{"AttributeName": "request_id", "KeyType": "HASH"}]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
        assert resolver.resolve({"Fn::GetAtt": ["ResultsTable", "Arn"]}) == table["TableArn"]


def test_the_real_template_creates_every_vendor_secret_with_given_values(real):
    creds = {"app_key": "k", "app_secret": "s"}
    with mock_aws():
        resolver = Resolver(real, parameters={"Stage": "test"})
        aws.create_resources(
            real,
            resolver,
            region="us-east-1",
            secret_values={"facegate/test/vendors/shuxun": json.dumps(creds)},
        )
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        names = {s["Name"] for s in sm.list_secrets()["SecretList"]}
        assert {n for n in names if "/vendors/" in n} == {f"facegate/test/vendors/{v}" for v in VENDORS}
        # The stage's pepper is generated, as CloudFormation would, and never a placeholder.
        pepper = sm.get_secret_value(SecretId="facegate/test/pepper")["SecretString"]
        assert len(pepper) >= 64
        value = sm.get_secret_value(SecretId="facegate/test/vendors/shuxun")["SecretString"]
        assert json.loads(value) == creds
        # Vendors without local credentials keep the template's placeholder.
        placeholder = sm.get_secret_value(SecretId="facegate/test/vendors/zoloz")["SecretString"]
        assert json.loads(placeholder) == {"configured": False}
        # Ref to a secret is its ARN, as in CloudFormation.
        arn = resolver.resolve({"Ref": "ShuxunSecret"})
        assert arn.startswith("arn:aws:secretsmanager:us-east-1:") and ":secret:facegate/test/vendors/shuxun" in arn


SMALL = """
Parameters:
  Stage: {Type: String, Default: dev}
Conditions:
  Never: !Equals [a, b]
Resources:
  Tokens:
    Type: AWS::SecretsManager::Secret
    Properties:
      Name: !Sub "${Bucket}/tokens"
      GenerateSecretString: {SecretStringTemplate: '{"user": "u"}', GenerateStringKey: password}
  Bucket:
    Type: AWS::S3::Bucket
    Properties: {BucketName: !Sub "facegate-${Stage}-images"}
  Skipped:
    Type: AWS::S3::Bucket
    Condition: Never
  Indexed:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: by, AttributeType: S}
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      GlobalSecondaryIndexes:
        - IndexName: by-index
          KeySchema: [{AttributeName: by, KeyType: HASH}]
          Projection: {ProjectionType: ALL}
          ContributorInsightsSpecification: {Enabled: true}
      SSESpecification: {SSEEnabled: true}
      TimeToLiveSpecification: {AttributeName: ttl, Enabled: false}
  Simple:
    Type: AWS::Serverless::SimpleTable
    Properties:
      PrimaryKey: {Name: id, Type: Number}
"""


def test_resources_are_created_in_dependency_order_with_their_settings():
    t = Template.from_text(textwrap.dedent(SMALL), ROOT / "inline.yaml")
    with mock_aws():
        resolver = Resolver(t)
        created = aws.create_resources(t, resolver, region="eu-west-1")
        order = [c.logical_id for c in created]
        assert order[-1] == "Tokens"  # listed first, but it names Bucket: it waits for the next pass
        assert set(order) == {"Tokens", "Bucket", "Indexed", "Simple"}
        assert "Skipped" not in {c.logical_id for c in created}
        s3 = boto3.client("s3", region_name="eu-west-1")
        assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {"facegate-dev-images"}
        sm = boto3.client("secretsmanager", region_name="eu-west-1")
        token = json.loads(sm.get_secret_value(SecretId="facegate-dev-images/tokens")["SecretString"])
        assert token["user"] == "u" and len(token["password"]) >= 32
        ddb = boto3.client("dynamodb", region_name="eu-west-1")
        indexed = ddb.describe_table(TableName="facegate-local-Indexed")["Table"]
        assert [i["IndexName"] for i in indexed["GlobalSecondaryIndexes"]] == ["by-index"]
        ttl = ddb.describe_time_to_live(TableName="facegate-local-Indexed")["TimeToLiveDescription"]
        assert ttl["TimeToLiveStatus"] == "DISABLED"
        simple = ddb.describe_table(TableName="facegate-local-Simple")["Table"]
        assert simple["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "N"}]


def test_a_resource_that_can_never_resolve_fails_with_its_name():
    t = Template.from_text(
        textwrap.dedent(
            """
            Resources:
              Secret:
                Type: AWS::SecretsManager::Secret
                Properties: {Name: !ImportValue shared-name}
            """
        ),
        ROOT / "inline.yaml",
    )
    with mock_aws(), pytest.raises(Unresolvable, match=r"cannot create Secret locally .*ImportValue"):
        aws.create_resources(t, Resolver(t), region="us-east-1")


class _Echo(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + 5))
        self.end_headers()
        self.wfile.write(b"echo:" + body)

    def log_message(self, *args):
        pass


def test_plain_http_to_loopback_passes_through_moto():
    """The vendor sandboxes are real servers on 127.0.0.1: moto (which patches
    requests through the `responses` library) must not swallow calls to them."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with mock_aws():
            boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="still-mocked")
            url = f"http://127.0.0.1:{server.server_address[1]}/v1/faceCompare/check"
            r = requests.post(url, data=b"ping", timeout=5)
            assert (r.status_code, r.content) == (200, b"echo:ping")
            assert [b["Name"] for b in boto3.client("s3", region_name="us-east-1").list_buckets()["Buckets"]] == [
                "still-mocked"
            ]
    finally:
        server.shutdown()
        server.server_close()


def test_the_environment_is_isolated_from_real_accounts():
    env = {
        "AWS_PROFILE": "work",
        "AWS_ENDPOINT_URL": "http://localhost:4566",
        "AWS_ENDPOINT_URL_DYNAMODB": "http://localhost:8000",
        "AWS_ACCESS_KEY_ID": "AKIAREAL",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "HOME": "/home/x",
    }
    region = aws.isolate_environment(env)
    assert region == "eu-central-1"
    assert "AWS_PROFILE" not in env
    assert not [k for k in env if k.startswith("AWS_ENDPOINT_URL")]
    assert env["AWS_ACCESS_KEY_ID"] == "local"
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    assert env["AWS_CONFIG_FILE"] == os.devnull
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-central-1"
    assert env["HOME"] == "/home/x"
