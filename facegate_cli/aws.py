"""AWS from the CLI: boto3 clients, and botocore's failures as one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from facegate_cli.main import CommandFailed, UsageError


def client(service: str, region: str | None) -> Any:
    import boto3

    return boto3.session.Session(region_name=region).client(service)


@contextmanager
def aws_errors(service: str) -> Iterator[None]:
    """Unreachable (exit 3), refused (exit 1) or a local file problem (exit 2)."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    from facegate.client import Unreachable

    try:
        yield
    except EndpointConnectionError as e:
        raise Unreachable(f"cannot reach {service} ({e.kwargs.get('endpoint_url', '')})") from None
    except ClientError as e:
        error = e.response.get("Error", {})
        raise CommandFailed(f"{service} refused: {error.get('Code')}: {error.get('Message')}") from None
    except (S3UploadFailedError, BotoCoreError) as e:
        raise CommandFailed(f"{service}: {e}") from None
    except OSError as e:
        raise UsageError(f"{e.filename}: {e.strerror or type(e).__name__}") from None
