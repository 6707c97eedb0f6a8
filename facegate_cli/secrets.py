"""``facegate secrets put VENDOR FILE``: a vendor's credentials, checked against the
vendor's own credential model before anything is written to Secrets Manager at
``facegate/<stage>/vendors/<id>``. Values are never printed: not on success, not in a
validation error (field names and the kind of problem only)."""

from __future__ import annotations

import argparse
import json

from facegate_cli.aws import aws_errors
from facegate_cli.aws import client as aws_client
from facegate_cli.main import OK, UsageError, describe


def read_secret(path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read it ({e.strerror or type(e).__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        # Position only: the decoder's message can quote the file's text.
        raise UsageError(f"{path}: not JSON (line {e.lineno}, column {e.colno})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the secret is a JSON object of the vendor's fields")
    return data


def put(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from facegate.vendors import vendor_class

    model = vendor_class(args.vendor).credentials_model
    if model is None:
        raise UsageError(f"vendor {args.vendor} needs no credentials")
    secret = read_secret(args.file)
    try:
        model.model_validate(secret)
    except ValidationError as e:
        raise UsageError(f"{args.file}: {describe(e)} credentials for {args.vendor}") from None
    name = f"facegate/{args.stage}/vendors/{args.vendor}"
    with aws_errors("Secrets Manager"):
        stored = aws_client("secretsmanager", args.region).put_secret_value(
            SecretId=name, SecretString=json.dumps(secret)
        )
    print(f"stored {', '.join(sorted(secret))} for {args.vendor} in {name} (version {stored.get('VersionId')})")
    return OK
