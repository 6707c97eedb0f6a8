"""The stack's IAM in moto: template.yaml through SAM's own translator, every function's
role made from ITS policies, and handlers run with that role's credentials while moto
enforces IAM.

What moto enforces, and what this adds (moto 5.2, ``moto/core/authorization.py``):

* S3 and SQS: moto checks the action and the resource ARN (``bucket/key``, the queue's ARN).
* DynamoDB and Secrets Manager: moto checks the action only, against resource ``*``, which
  would refuse every statement that names a table or a secret. ``enforce_resources`` teaches
  moto their resource ARNs (the request's TableName / SecretId), and that AWS authorizes
  each item of a TransactWriteItems as its own action (UpdateItem, PutItem, ...).
* Conditions: moto evaluates only a few condition keys. The stack's function policies have
  none; ``test_policies.py`` checks every statement statically as well.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from facegate_local.aws import create_resources
from facegate_local.template import Resolver, Template

ROOT = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
AWS_MANAGED = "arn:aws:iam::aws:policy/"
LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


# SAM's translator runs in the SAM CLI's own venv (`make lint` makes it): it pins a pydantic
# the runtime layer does not use, so it cannot share .venv.
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
_TRANSFORM = """
import json, sys
from samtranslator.translator.transform import transform

class AwsManagedPolicies:  # SAM's policy loader, offline: the policies SAM adds itself
    def load(self):
        names = ("AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess", "AWSLambdaSQSQueueExecutionRole")
        role = ("AWSLambdaBasicExecutionRole", "AWSLambdaSQSQueueExecutionRole")
        return {n: "arn:aws:iam::aws:policy/" + ("service-role/" if n in role else "") + n for n in names}

data, parameters = json.load(sys.stdin)
json.dump(transform(data, parameters, AwsManagedPolicies()), sys.stdout)
"""


def sam_transform(template: Template, parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    """template.yaml as CloudFormation receives it, by SAM's own translator."""
    import subprocess

    if not SAM_PYTHON.exists():
        raise RuntimeError(f"{SAM_PYTHON} is missing: `make lint` installs the SAM CLI (and its translator) there")
    data = copy.deepcopy(template.data)
    # As after `sam package`: code lives in S3 (the transform accepts nothing else).
    for logical, r in data["Resources"].items():
        props = r.get("Properties") or {}
        for uri in ("CodeUri", "ContentUri"):
            if uri in props:
                props[uri] = f"s3://facegate-code/{logical}.zip"
    done = subprocess.run(  # noqa: S603 - our venv's python, our script
        [str(SAM_PYTHON), "-c", _TRANSFORM],
        input=json.dumps([data, dict(parameters or {})]),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"SAM's transform failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


@dataclass
class RolePolicies:
    """One function's role after the transform, every intrinsic resolved."""

    function: str
    inline: list[dict[str, Any]] = field(default_factory=list)  # policy documents
    managed: dict[str, dict[str, Any]] = field(default_factory=dict)  # the stack's managed policies by logical id
    aws_managed: list[str] = field(default_factory=list)  # ARNs

    @property
    def statements(self) -> list[dict[str, Any]]:
        docs = [*self.inline, *self.managed.values()]
        out = []
        for doc in docs:
            st = doc["Statement"]
            out += st if isinstance(st, list) else [st]
        return out


class Stack:
    """The template's tables, secrets, bucket and queues in moto (which must be running),
    its managed policies and one role per function."""

    def __init__(self, *, stage: str = "test", parameters: Mapping[str, str] | None = None) -> None:
        self.stage = stage
        self.parameters = {"Stage": stage, **(parameters or {})}
        source = Template.load(ROOT / "template.yaml")
        self.template = Template(source.path, sam_transform(source, self.parameters))
        self.resolver = Resolver(
            self.template, parameters=self.parameters, region=REGION, stack_name=f"facegate-{stage}"
        )
        create_resources(self.template, self.resolver, region=REGION)
        self.iam = boto3.client("iam", region_name=REGION)
        self.managed_arns: dict[str, str] = {}
        self.managed_docs: dict[str, dict[str, Any]] = {}
        for logical, r in self.template.of_type("AWS::IAM::ManagedPolicy").items():
            if "Condition" in r and not self.resolver.condition(r["Condition"]):
                continue  # e.g. KmsUsePolicy, only with a KmsKeyArn
            doc = self.resolver.resolve(r["Properties"]["PolicyDocument"])
            arn = self.iam.create_policy(PolicyName=f"{stage}-{logical}", PolicyDocument=json.dumps(doc))["Policy"][
                "Arn"
            ]
            self.resolver.set_physical(logical, arn)
            self.managed_arns[logical] = arn
            self.managed_docs[logical] = doc
        self.roles: dict[str, RolePolicies] = {}
        for logical, r in self.template.of_type("AWS::Lambda::Function").items():
            role_logical = r["Properties"]["Role"]["Fn::GetAtt"][0]
            props = self.template.resources[role_logical]["Properties"]
            role = RolePolicies(logical)
            for p in props.get("Policies") or []:
                # IAM reads a document without Version as 2008-10-17 (no policy variables: the
                # stack uses none); moto refuses such documents, so the test names the version.
                role.inline.append({"Version": "2012-10-17", **self.resolver.resolve(p["PolicyDocument"])})
            for arn in self.resolver.resolve(props.get("ManagedPolicyArns") or []):
                if arn.startswith(AWS_MANAGED):
                    role.aws_managed.append(arn)
                else:
                    name = next(k for k, v in self.managed_arns.items() if v == arn)
                    role.managed[name] = self.managed_docs[name]
            self.roles[logical] = role

    def ref(self, logical: str) -> Any:
        return self.resolver.resolve({"Ref": logical})

    def arn(self, logical: str) -> str:
        return self.resolver.resolve({"Fn::GetAtt": [logical, "Arn"]})

    def environment(self, function: str) -> dict[str, str]:
        """The function's environment as the transform leaves it (Globals merged in)."""
        props = self.template.resources[function]["Properties"]
        env = (props.get("Environment") or {}).get("Variables") or {}
        return {k: str(v) for k, v in self.resolver.resolve(env).items()}

    def credentials(self, function: str) -> dict[str, str]:
        """Credentials of a role made of the function's policies, as Lambda would assume it.
        AWS managed policies (logs, X-Ray, the SQS poller's) are left out: the code never
        calls what they grant, so leaving them out only makes the test stricter."""
        role = self.roles[function]
        name = f"{self.stage}-{function}"
        iam = self.iam
        try:
            iam.get_role(RoleName=name)
        except iam.exceptions.NoSuchEntityException:
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))
            for i, doc in enumerate(role.inline):
                iam.put_role_policy(RoleName=name, PolicyName=f"inline-{i}", PolicyDocument=json.dumps(doc))
            for logical in role.managed:
                iam.attach_role_policy(RoleName=name, PolicyArn=self.managed_arns[logical])
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        c = boto3.client("sts", region_name=REGION).assume_role(RoleArn=arn, RoleSessionName=function)["Credentials"]
        return {
            "AWS_ACCESS_KEY_ID": c["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
            "AWS_SESSION_TOKEN": c["SessionToken"],
        }


def reset_clients() -> None:
    """Every cached setting, store and boto3 client of the facegate package: the next
    call builds them again from the environment (credentials included)."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    from facegate import batch_jobs, batch_store, config, idempotency, inputs, service, store

    config.settings.cache_clear()
    service.default_service.cache_clear()
    inputs._s3.cache_clear()
    store.default_store.cache_clear()
    batch_store.default_batch_store.cache_clear()
    batch_jobs.default_jobs.cache_clear()
    idempotency.persistence_layer.cache_clear()
    parameters.clear_caches()
    DEFAULT_PROVIDERS.clear()
    boto3.DEFAULT_SESSION = None


@contextmanager
def running_as(stack: Stack, function: str, **extra_env: str) -> Iterator[None]:
    """The function's environment and its role's credentials, with moto enforcing IAM."""
    from moto.core import enable_iam_authentication

    saved = dict(os.environ)
    credentials = stack.credentials(function)  # made before enforcement starts
    env = {k: v for k, v in stack.environment(function).items() if not _missing_layer_path(v)}
    os.environ.update({**env, **credentials, **extra_env})
    reset_clients()
    try:
        with enable_iam_authentication():
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_clients()


def _missing_layer_path(value: str) -> bool:
    # /opt is Lambda's layer mount; locally the layers' packages (and models) come from the venv.
    return value.startswith("/opt/") and not Path(value).exists()


# --- teaching moto the resources of DynamoDB and Secrets Manager requests ------------------

_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _authorize(handler: Any, checks: list[tuple[str, str]]) -> None:
    """moto's ``_authenticate_and_authorize_action`` for explicit (action, resource) pairs."""
    from urllib.parse import urlparse

    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.access_control import IAMRequest

    if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
        ActionAuthenticatorMixin.request_count += 1
        return
    path = handler.raw_path
    if urlparse(handler.uri).query:
        path += "?" + urlparse(handler.uri).query
    for action, resource in checks:
        request = IAMRequest(
            account_id=handler.current_account,
            method=handler.method,
            path=path,
            data=handler.data,
            body=handler.raw_body,
            headers=handler.headers,
            action=action,
        )
        request.check_signature()
        request.check_action_permitted(resource)


def _dynamodb_checks(handler: Any, resource: str = "*") -> None:
    action = handler._get_action()
    body = getattr(handler, "params", None) or json.loads(handler.body or "{}")

    def table(name: str) -> str:
        return f"arn:aws:dynamodb:{handler.region}:{handler.current_account}:table/{name}"

    if action == "TransactWriteItems":
        checks = []
        for item in body["TransactItems"]:
            ((kind, spec),) = item.items()
            checks.append((_TRANSACT_ACTIONS[kind], table(spec["TableName"])))
    elif action in ("BatchWriteItem", "BatchGetItem"):
        checks = [(action, table(name)) for name in body["RequestItems"]]
    elif "TableName" in body:
        checks = [(action, table(body["TableName"]))]
    else:
        checks = [(action, "*")]
    _authorize(handler, checks)


def _secretsmanager_checks(handler: Any, resource: str = "*") -> None:
    from moto.secretsmanager.models import secretsmanager_backends

    action = handler._get_action()
    body = json.loads(handler.body or "{}")
    secret_id = body.get("SecretId")
    resource = "*"
    if secret_id:
        secrets = secretsmanager_backends[handler.current_account][handler.region].secrets
        found = next((s for s in secrets.values() if secret_id in (s.name, s.arn)), None)
        resource = (
            found.arn
            if found
            else f"arn:aws:secretsmanager:{handler.region}:{handler.current_account}:secret:{secret_id}"
        )
    _authorize(handler, [(action, resource)])


@contextmanager
def enforce_resources() -> Iterator[None]:
    from moto.dynamodb.responses import DynamoHandler
    from moto.secretsmanager.responses import SecretsManagerResponse

    saved = {
        cls: cls.__dict__.get("_authenticate_and_authorize_normal_action")
        for cls in (DynamoHandler, SecretsManagerResponse)
    }
    DynamoHandler._authenticate_and_authorize_normal_action = _dynamodb_checks
    SecretsManagerResponse._authenticate_and_authorize_normal_action = _secretsmanager_checks
    try:
        yield
    finally:
        for cls, original in saved.items():
            if original is None:
                del cls._authenticate_and_authorize_normal_action
            else:
                cls._authenticate_and_authorize_normal_action = original
