"""What every batch role shares: settings, the batch table, the ports to the service,
the results log and vendor health, S3 and SQS, and one clock.

The ports are narrow on purpose: a batch asks the service to compare, verify or log a
failure, reads back what an earlier attempt logged, and asks whether a vendor is
cooling down. Nothing else of the service's insides is within reach.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from facegate.batch import ManifestFormat, ManifestRef, ManifestUnreadable
from facegate.batch_store import BatchStore, default_batch_store
from facegate.config import Settings, settings
from facegate.errors import FacegateError
from facegate.observability import logger, metrics

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef
    from mypy_boto3_sqs import SQSClient

    from facegate.health import VendorHealth
    from facegate.models import (
        CompareRequest,
        CompareResponse,
        Operation,
        VerifyIdentityRequest,
        VerifyIdentityResponse,
    )
    from facegate.service import Caller
    from facegate.store import ResultRecord

CHUNK = 1024 * 1024
SEND_BATCH = 10  # SendMessageBatch's limit
CHECKPOINT_EVERY = 1000  # items queued between enqueue checkpoints
LEASE_MARGIN_S = 10.0  # a lease outlives the invocation that took it by this much
REPORT_LEASE_S = 900.0
MIN_ITEM_S = 5.0  # below this much time left, an item is not started (it goes back)
PACING_MARGIN_S = 0.005  # added to a pacing window: the vendor's clock and ours may differ a little
DEADLINE_MARGIN_S = 2.0  # an item's deadline leaves this much of the invocation for the rest
MAX_VISIBILITY_S = 900
MAX_REDRIVES = 1  # rounds a never-started line gets from the dead-letter drain


# --- ports ----------------------------------------------------------------------------------


class Operations(Protocol):
    """The service as a batch line uses it (``facegate.service.Service``)."""

    def compare(self, req: CompareRequest, caller: Caller) -> CompareResponse: ...

    def verify_identity(self, req: VerifyIdentityRequest, caller: Caller) -> VerifyIdentityResponse: ...

    def log_failure(self, operation: Operation, caller: Caller, error: FacegateError) -> None: ...


class ResultsLog(Protocol):
    """The results log as batches read it (``facegate.store.ResultsStore``): the record
    an earlier attempt of a line left, by its request id. Raises ``NotFound``."""

    def get(self, request_id: str) -> ResultRecord: ...


class VendorCooldowns(Protocol):
    """Vendor health as the retry delay reads it (``facegate.health.HealthBook``)."""

    def health(self, vendor: str) -> VendorHealth: ...


# --- the context ----------------------------------------------------------------------------


class RetryLater(Exception):
    """This message should come back after ``delay_s`` (partial batch failure)."""

    def __init__(self, reason: str, delay_s: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = max(0.0, min(float(delay_s), MAX_VISIBILITY_S))


@dataclass(frozen=True)
class Static:
    """The parts of a batch's meta item that never change once items are queued."""

    ref: ManifestRef
    format: ManifestFormat
    header: list[str] | None


class BatchContext:
    """Everything a role needs, each part given or made on first use (a splitter never
    makes the service, an invocation that never touches S3 never makes its client)."""

    def __init__(
        self,
        cfg: Settings | None = None,
        store: BatchStore | None = None,
        operations: Operations | None = None,
        results: ResultsLog | None = None,
        cooldowns: VendorCooldowns | None = None,
        s3: S3Client | None = None,
        sqs: SQSClient | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = cfg or settings()
        self.store = store or default_batch_store()
        self._operations = operations
        self._results = results
        self._cooldowns = cooldowns
        self._s3 = s3
        self._sqs = sqs
        self.clock = clock
        self._statics: dict[str, Static] = {}

    @property
    def operations(self) -> Operations:
        if self._operations is None:
            from facegate.service import default_service

            self._operations = default_service()
        return self._operations

    @property
    def results(self) -> ResultsLog:
        if self._results is None:
            from facegate.store import default_store

            self._results = default_store()  # the store default_service() logs to
        return self._results

    @property
    def cooldowns(self) -> VendorCooldowns:
        if self._cooldowns is None:
            from facegate.service import default_service

            self._cooldowns = default_service().health  # the book the service's router keeps
        return self._cooldowns

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    @property
    def sqs(self) -> SQSClient:
        if self._sqs is None:
            import boto3

            self._sqs = boto3.client("sqs")
        return self._sqs

    def expires(self, now: float) -> int:
        return self.store.expiry(now)

    def remember(self, batch_id: str, static: Static) -> None:
        self._statics[batch_id] = static

    def static_for(self, batch_id: str) -> Static | None:
        static = self._statics.get(batch_id)
        if static is None:
            meta = self.store.get_meta(batch_id)
            if meta is None or meta.total is None:
                return None
            static = Static(meta.manifest, meta.format, meta.header)
            self._statics[batch_id] = static
        return static

    def get_manifest(self, ref: ManifestRef, byte_range: str | None = None) -> GetObjectOutputTypeDef:
        """The manifest object, exactly the version the event named (or a range of it)."""
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
        if ref.version_id:
            kwargs["VersionId"] = ref.version_id
        elif ref.etag:
            kwargs["IfMatch"] = f'"{ref.etag.strip(chr(34))}"'
        if byte_range:
            kwargs["Range"] = byte_range
        try:
            return self.s3.get_object(**kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "NoSuchVersion", "PreconditionFailed", "412", "404", "InvalidRange"):
                raise ManifestUnreadable(
                    f"the manifest object is gone or was replaced before it was read ({code})"
                ) from None
            raise


# --- helpers --------------------------------------------------------------------------------


def retryable_codes() -> dict[str, bool]:
    """Error code → whether an error with it may succeed when retried."""
    out: dict[str, bool] = {}
    stack: list[type[FacegateError]] = [FacegateError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        out[cls.code] = out.get(cls.code, False) or bool(cls.retryable)
    return out


def count_billed(attempts: Iterable[Any]) -> tuple[int, int]:
    """(billed, maybe billed) vendor calls among a request's attempts."""
    billed = unknown = 0
    for a in attempts:
        if a.billed is True:
            billed += 1
        elif a.billed is None:
            unknown += 1
    return billed, unknown


def where(e: BaseException) -> dict[str, str]:
    """An exception's type and innermost frame, without its message."""
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "/facegate/" in f.filename] or frames
    place = f"{ours[-1].filename.rsplit('/', 1)[-1]}:{ours[-1].lineno} {ours[-1].name}" if ours else ""
    return {"error_type": type(e).__name__, "where": place}


def count(name: str) -> None:
    """A CloudWatch metric; never a reason for an item to fail. Not even collected when
    metrics are off (locally): Powertools would print every hundred values anyway."""
    try:
        from aws_lambda_powertools.metrics.functions import is_metrics_disabled

        if is_metrics_disabled():
            return
        metrics.add_metric(name=name, unit="Count", value=1)
    except Exception:
        logger.debug("metric not recorded", extra={"metric": name})
