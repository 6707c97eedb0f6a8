"""AWS emulated in-process by moto, with the stack's resources created from
template.yaml's own definitions.

``CREATORS`` maps a CloudFormation resource type to a function that creates it in
moto and reports its physical id (what ``Ref`` returns) and attributes (what
``Fn::GetAtt`` returns). Supporting a new resource type (an SQS queue, say) is one
more entry; resource types without an entry are simply not emulated, and anything
that refers to them fails to resolve with a message that says so.

moto only intercepts botocore clients made after it is imported and started, so
``start()`` must run before any handler module (which may build clients at import
time) is loaded. Plain ``requests`` calls to anything that is not an AWS endpoint,
such as the vendor sandboxes on loopback, pass through moto untouched.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from facegate_local.template import Resolver, Template, Unresolvable, as_bool

# Variables that could send boto3 to a real account or to another emulator.
_AWS_ENV_REMOVED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def isolate_environment(environ: MutableMapping[str, str] = os.environ) -> str:
    """Fake credentials, no profile, no config files, no instance metadata: boto3
    must never find (let alone use) real credentials on the developer's machine,
    even if moto were not intercepting. Returns the region in use."""
    for name in list(environ):
        if name in _AWS_ENV_REMOVED or name.startswith("AWS_ENDPOINT_URL_"):
            del environ[name]
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    environ.update(
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",  # noqa: S106 - a placeholder, never a real key  # nosec B106
        AWS_SESSION_TOKEN="local",  # noqa: S106
        AWS_REGION=region,
        AWS_DEFAULT_REGION=region,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return region


def start() -> Any:
    """Start moto for the whole process; returns the mock (``.stop()`` ends it)."""
    from moto import mock_aws

    mock = mock_aws()
    mock.start()
    return mock


@dataclass
class Created:
    logical_id: str
    type: str
    ref: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bootstrap:
    """What a creator may use: the region, the resolver (for properties and for
    default names), and the values to put into secrets, by secret name."""

    region: str
    resolver: Resolver
    secret_values: Mapping[str, str]

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=self.region)  # type: ignore[call-overload]  # any service by name


Creator = Callable[[Bootstrap, str, dict[str, Any]], Created]


def _pick(props: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {n: props[n] for n in names if n in props}


_INDEX_FIELDS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")


def _create_table(b: Bootstrap, logical: str, props: dict[str, Any]) -> Created:
    # Only what changes behaviour locally is passed on: keys, indexes, billing,
    # streams and TTL. SSE, PITR, tags and deletion protection have no local effect
    # (and CloudFormation's SSESpecification does not even share the API's shape).
    name = props.get("TableName") or b.resolver.default_name(logical)
    kwargs = _pick(
        props,
        "KeySchema",
        "AttributeDefinitions",
        "BillingMode",
        "ProvisionedThroughput",
        "StreamSpecification",
        "OnDemandThroughput",
    )
    for indexes in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(indexes):
            kwargs[indexes] = [_pick(i, *_INDEX_FIELDS) for i in props[indexes]]
    ddb = b.client("dynamodb")
    table = ddb.create_table(TableName=name, **kwargs)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification") or {}
    if ttl and as_bool(ttl.get("Enabled", True)):
        ddb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    return Created(
        logical,
        "AWS::DynamoDB::Table",
        name,
        {"Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn")},
    )


def _create_simple_table(b: Bootstrap, logical: str, props: dict[str, Any]) -> Created:
    key = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
    kind = {"String": "S", "Number": "N", "Binary": "B"}[key.get("Type", "String")]
    table_props = {
        "TableName": props.get("TableName"),
        "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": kind}],
        "BillingMode": "PROVISIONED" if props.get("ProvisionedThroughput") else "PAY_PER_REQUEST",
        **_pick(props, "ProvisionedThroughput"),
    }
    created = _create_table(b, logical, {k: v for k, v in table_props.items() if v is not None})
    created.type = "AWS::Serverless::SimpleTable"
    return created


def _create_secret(b: Bootstrap, logical: str, props: dict[str, Any]) -> Created:
    name = props.get("Name") or b.resolver.default_name(logical)
    stored = b.secret_values.get(name)
    value = props.get("SecretString")
    if value is None:
        # No placeholder: the value given is the secret's first (and only) version.
        value, stored = stored, None
    if value is None and "GenerateSecretString" in props:
        # CloudFormation generates a random password into the template's JSON.
        g = props["GenerateSecretString"]
        base = json.loads(g.get("SecretStringTemplate") or "{}")
        key = g.get("GenerateStringKey")
        generated = secrets.token_urlsafe(int(g.get("PasswordLength", 32)))
        value = json.dumps({**base, key: generated}) if key else generated
    kwargs = _pick(props, "Description")
    if value is not None:  # with neither value nor generator, CloudFormation makes an empty secret
        kwargs["SecretString"] = value
    sm = b.client("secretsmanager")
    arn = sm.create_secret(Name=name, **kwargs)["ARN"]
    if stored is not None:
        # As in a deployed stage: the stack writes the template's placeholder, the
        # operator then puts the credentials as a new version (put-secret-value), which
        # is how GET /v1/vendors tells a configured vendor (facegate/secrets.py).
        sm.put_secret_value(SecretId=arn, SecretString=stored)
    # Ref to a secret is its ARN, as in CloudFormation; Id is the same ARN.
    return Created(logical, "AWS::SecretsManager::Secret", arn, {"Id": arn, "Name": name})


def _create_bucket(b: Bootstrap, logical: str, props: dict[str, Any]) -> Created:
    name = props.get("BucketName") or b.resolver.default_name(logical).lower()
    kwargs: dict[str, Any] = {}
    if b.region != "us-east-1":  # us-east-1 is the one region that refuses a location constraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": b.region}
    b.client("s3").create_bucket(Bucket=name, **kwargs)
    return Created(
        logical,
        "AWS::S3::Bucket",
        name,
        {
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{b.region}.amazonaws.com",
        },
    )


def _create_queue(b: Bootstrap, logical: str, props: dict[str, Any]) -> Created:
    name = props.get("QueueName") or b.resolver.default_name(logical)
    attributes = {
        k: json.dumps(v) if isinstance(v, dict) else str(v)
        for k, v in props.items()
        if k
        in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "ReceiveMessageWaitTimeSeconds",
            "RedrivePolicy",
            "DelaySeconds",
            "MaximumMessageSize",
        )
    }
    sqs = b.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # Ref to a queue is its URL, as in CloudFormation.
    return Created(logical, "AWS::SQS::Queue", url, {"Arn": arn, "QueueName": name, "QueueUrl": url})


CREATORS: dict[str, Creator] = {
    "AWS::DynamoDB::Table": _create_table,
    "AWS::Serverless::SimpleTable": _create_simple_table,
    "AWS::SecretsManager::Secret": _create_secret,
    "AWS::S3::Bucket": _create_bucket,
    "AWS::SQS::Queue": _create_queue,
}


def create_resources(
    template: Template,
    resolver: Resolver,
    *,
    region: str,
    secret_values: Mapping[str, str] | None = None,
) -> list[Created]:
    """Create every emulated resource of the template in moto (which must be
    running) and register each one's Ref and attributes with ``resolver``.

    Resources that refer to each other are created in dependency order: one whose
    properties cannot be resolved yet waits for the next pass. ``secret_values``
    (secret name → SecretString) overrides the template's placeholder values.
    """
    b = Bootstrap(region, resolver, secret_values or {})
    pending = {
        logical: r
        for logical, r in template.resources.items()
        if r.get("Type") in CREATORS and ("Condition" not in r or resolver.condition(r["Condition"]))
    }
    created: list[Created] = []
    while pending:
        progress = False
        errors: dict[str, str] = {}
        for logical, resource in list(pending.items()):
            try:
                props = resolver.resolve(resource.get("Properties") or {})
            except Unresolvable as e:
                errors[logical] = str(e)
                continue
            c = CREATORS[resource["Type"]](b, logical, props)
            resolver.set_physical(logical, c.ref, **c.attributes)
            created.append(c)
            del pending[logical]
            progress = True
        if not progress:
            detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
            raise Unresolvable(f"cannot create {', '.join(pending)} locally ({detail})")
    return created
