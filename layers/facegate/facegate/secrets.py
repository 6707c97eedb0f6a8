"""Vendor credentials from Secrets Manager (one JSON secret per vendor), cached per
container through Powertools Parameters so a warm Lambda does not pay a Secrets
Manager round trip per request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from facegate.config import Settings, settings
from facegate.errors import VendorNotConfigured

if TYPE_CHECKING:
    from facegate.vendors.base import Credentials, Vendor


def _fetch(name: str, max_age: int) -> dict[str, Any] | None:
    from aws_lambda_powertools.utilities import parameters
    from botocore.exceptions import ClientError

    try:
        value = parameters.get_secret(name, transform="json", max_age=max_age)
    except parameters.exceptions.GetParameterError as e:
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ClientError) and cause.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        if "ResourceNotFoundException" in type(cause).__name__:
            return None
        raise
    except parameters.exceptions.TransformParameterError:
        return None
    return value if isinstance(value, dict) else None


def load_credentials(vendor: type[Vendor], cfg: Settings | None = None) -> Credentials | None:
    """The vendor's credentials, or None when its secret is absent or still the
    stack's placeholder (i.e. the vendor is not configured)."""
    if vendor.credentials_model is None:
        return None
    cfg = cfg or settings()
    raw = _fetch(cfg.secret_name(vendor.id), cfg.secrets_max_age)
    if not raw or raw.get("configured") is False:
        return None
    try:
        return vendor.credentials_model.model_validate(raw)
    except ValidationError as e:
        # Field names only: the values are secrets.
        fields = ", ".join(".".join(str(p) for p in err["loc"]) for err in e.errors())
        raise VendorNotConfigured(
            f"the secret for vendor '{vendor.id}' is invalid ({fields})", vendor=vendor.id
        ) from None


def is_configured(vendor: type[Vendor], cfg: Settings | None = None) -> bool:
    """Whether the vendor's credentials have been stored, without reading them.

    The stack creates each vendor secret with the placeholder ``{"configured": false}``;
    storing the credentials (``put-secret-value``) makes a new version current and moves
    Secrets Manager's AWSPREVIOUS label onto the placeholder. So a secret configured by
    the operator is one with a version labelled AWSPREVIOUS, which DescribeSecret shows:
    the listing needs ``secretsmanager:DescribeSecret``, never GetSecretValue. (Writing
    the placeholder back with put-secret-value still counts as configured; the calls
    themselves then answer VENDOR_NOT_CONFIGURED.)"""
    if vendor.credentials_model is None:
        return vendor.available()
    cfg = cfg or settings()
    return _has_replaced_value(cfg.secret_name(vendor.id))


def _has_replaced_value(name: str) -> bool:
    import boto3
    from botocore.exceptions import ClientError

    try:
        described = boto3.client("secretsmanager").describe_secret(SecretId=name)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise
    return any("AWSPREVIOUS" in stages for stages in (described.get("VersionIdsToStages") or {}).values())
