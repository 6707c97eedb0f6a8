"""Vendor credentials from Secrets Manager (one JSON secret per vendor), cached per
container through Powertools Parameters so a warm Lambda does not pay a Secrets
Manager round trip per request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from facegate.config import Settings, settings
from facegate.errors import VendorNotConfigured

if TYPE_CHECKING:
    from facegate.vendors.base import Credentials, Vendor


def _fetch(name: str, max_age: int) -> dict | None:
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
    if vendor.credentials_model is None:
        return vendor.available()
    try:
        return load_credentials(vendor, cfg) is not None
    except VendorNotConfigured:
        return False
