"""Powertools Logger, Tracer and Metrics: one instance each per container, and the
per-vendor metrics the dashboard and alarms read.

Configured by the environment (POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE,
POWERTOOLS_LOG_LEVEL, POWERTOOLS_TRACE_DISABLED). Nothing logged here may carry
request bodies: log request ids, vendors, codes and timings only.

Metric names and their dimensions are the ``METRICS`` table below: template.yaml's
alarms and dashboard name them, and a test checks that they exist here (rename one
and the alarms must follow). Every dimension value comes from a bounded set (vendor
ids, error codes, decisions), never from a request: CloudWatch bills each distinct
dimension combination as a metric of its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

# What a traced function patches for X-Ray: the AWS SDK (DynamoDB, Secrets Manager, S3, SQS)
# and the vendors' HTTP client, each keyed to the package whose import triggers its patch.
# (Powertools' default patches every library X-Ray knows that is installed, importing each
# one (sqlite3, httplib, ...) at cold start.)
#
# X-Ray patches each library when the package that makes its clients or sessions is first
# imported, not at init. X-Ray's patches wrap methods of the classes (botocore's
# ``BaseClient._make_api_call``, requests' ``Session.request``), so every call made after that
# import is traced, whichever client or session makes it. botocore's clients are made through
# boto3 (ours, and Powertools' parameters and idempotency): botocore itself cannot be the
# trigger, Powertools imports the package at init for its user agent, and a submodule
# (``botocore.client``) cannot either: its hook runs before the package has the attribute
# X-Ray's patch reads.
PATCHED_WHEN_IMPORTED = {"botocore": "boto3", "requests": "requests"}

# Lambda's initialisation types that run the init ahead of any request (SnapStart's snapshot
# at publish time; provisioned concurrency before traffic): there the patches, and the imports
# they need, are done at init, so that they cost no caller.
INIT_AHEAD_OF_REQUESTS = ("snap-start", "provisioned-concurrency")


class NoTracing(BaseProvider):
    """The provider of a Tracer that is off: segments that record nothing. Powertools'
    Tracer imports the X-Ray SDK (and with it botocore's session: ~40% of a handler's
    import) even when tracing is off; with this provider it does not."""

    class Segment(BaseSegment):
        def close(self, end_time: int | None = None) -> None: ...
        def add_subsegment(self, subsegment: Any) -> None: ...
        def remove_subsegment(self, subsegment: Any) -> None: ...
        def put_annotation(self, key: str, value: Any) -> None: ...
        def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...
        def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None: ...

    @contextlib.contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield NoTracing.Segment()

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncIterator[BaseSegment]:
        yield NoTracing.Segment()

    def put_annotation(self, key: str, value: Any) -> None: ...
    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...
    def patch(self, modules: Any) -> None: ...
    def patch_all(self) -> None: ...


def make_tracer() -> Tracer:
    """The X-Ray tracer when tracing is on (in Lambda, POWERTOOLS_TRACE_DISABLED not
    true: the template's ``Tracing: Active``), built at init as Powertools does, since the
    first request's segment needs it; else one that never imports the X-Ray SDK. "On" is
    Powertools' own rule (``Tracer._is_tracer_disabled``).

    Traced, botocore and requests are patched when the process first imports them
    (``patch_when_imported``), not here: untraced, they are imported only by the first
    request that needs them, and importing them at init only to patch them was most of a
    traced handler's import (bench/RESULTS.md, "Handler cold start"). The time moves to that
    first request; it is not saved (see ``patch_when_imported`` for SnapStart)."""
    if Tracer._is_tracer_disabled():
        return Tracer(service="facegate", disabled=True, provider=NoTracing())
    traced = Tracer(service="facegate", auto_patch=False)
    patch_when_imported(traced)
    return traced


def patch_when_imported(traced: Tracer) -> None:
    """Patch each library of ``PATCHED_WHEN_IMPORTED`` for X-Ray as soon as its trigger is
    imported (at once if it already is): one import hook per library, so no call site needs
    to remember it. In an init that runs ahead of requests (SnapStart, provisioned
    concurrency) the triggers are imported now, so the snapshot or the ready container holds
    them patched."""
    import importlib

    import wrapt  # the X-Ray SDK's own dependency, imported with it

    def patcher(name: str) -> Callable[[ModuleType], None]:
        return lambda _: traced.patch(modules=[name])

    for library, trigger in PATCHED_WHEN_IMPORTED.items():
        wrapt.register_post_import_hook(patcher(library), trigger)
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") in INIT_AHEAD_OF_REQUESTS:
        for trigger in PATCHED_WHEN_IMPORTED.values():
            importlib.import_module(trigger)


logger = Logger(service="facegate")
tracer = make_tracer()
metrics = Metrics(namespace="Facegate", service="facegate")


def log_metrics() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``metrics.log_metrics`` (with the ColdStart metric) for every function, where metrics
    are on. Where they are off (``make run``, tests) the handler runs undecorated: Powertools
    (3.37) would still print ColdStart through ``single_metric``, which ignores
    POWERTOOLS_METRICS_DISABLED, and warn "No application metrics to publish" after every
    invocation, since nothing is collected. Decided at import, when a container reads its
    environment."""
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    if is_metrics_disabled():
        return lambda handler: handler
    return metrics.log_metrics(capture_cold_start_metric=True)


# --- metric names (namespace Facegate; Powertools adds the ``service`` dimension) -------------

VENDOR_ATTEMPTS = "VendorAttempts"  # a call to a vendor (each retry is one)
VENDOR_LATENCY = "VendorLatency"  # ms of that call, answer or error
VENDOR_FAILURES = "VendorFailures"  # 1 if the call failed vendor-side (the cooldown's rule), else 0
VENDOR_BILLED = "VendorBilled"  # 1 if the vendor billed the call, else 0 (unknown counts 0)
VENDOR_ERRORS = "VendorErrors"  # an attempt that ended in an error, by its code (skips included)
VENDOR_ANSWERS = "VendorAnswers"  # a vendor's verdict, by decision (each consensus vote is one)
VENDOR_FALLBACKS = "VendorFallbacks"  # a request moved on from this vendor to the next in its plan
COOLDOWN_OPENED = "CooldownOpened"  # this vendor's circuit opened (closed or half-open -> open)
RESULTS_LOG_WRITE_FAILED = "ResultsLogWriteFailed"  # an answer whose results-log record was lost
PRESCREEN_REFUSED = "PrescreenRefused"  # a photo refused by pre-screening, by the check that failed
BILLED_CALLS_AVOIDED = "BilledCallsAvoided"  # a paid vendor call pre-screening made unnecessary
PRESCREEN_SKIPPED = "PrescreenSkipped"  # pre-screening was asked for but the engine is not installed here

# name -> its dimensions, exactly as emitted.
METRICS: Mapping[str, tuple[str, ...]] = {
    VENDOR_ATTEMPTS: ("service", "vendor"),
    VENDOR_LATENCY: ("service", "vendor"),
    VENDOR_FAILURES: ("service", "vendor"),
    VENDOR_BILLED: ("service", "vendor"),
    VENDOR_ERRORS: ("service", "vendor", "error_code"),
    VENDOR_ANSWERS: ("service", "vendor", "decision"),
    VENDOR_FALLBACKS: ("service", "vendor"),
    COOLDOWN_OPENED: ("service", "vendor"),
    RESULTS_LOG_WRITE_FAILED: ("service",),
    PRESCREEN_REFUSED: ("service", "check"),
    BILLED_CALLS_AVOIDED: ("service", "vendor"),
    PRESCREEN_SKIPPED: ("service",),
}


def publish(dimensions: Mapping[str, str], values: Mapping[str, tuple[str, float]]) -> None:
    """Write ``{name: (unit, value)}`` at once as one EMF record with exactly these
    dimensions (plus ``service``): added to ``metrics`` they would put the dimensions on
    every metric of the invocation. Not written when metrics are off (locally); never
    raises — a metric is not a reason for a request to fail."""
    try:
        from aws_lambda_powertools.metrics import EphemeralMetrics
        from aws_lambda_powertools.metrics.functions import is_metrics_disabled

        if is_metrics_disabled():
            return
        record = EphemeralMetrics(namespace=metrics.namespace, service=metrics.service or "facegate")
        for dimension, label in dimensions.items():
            record.add_dimension(name=dimension, value=label)
        for name, (unit, value) in values.items():
            record.add_metric(name=name, unit=unit, value=value)
        record.flush_metrics()
    except Exception:
        logger.debug("metric not recorded", extra={"metrics": list(values)})


def count(name: str, dimension: str, value: str, n: int = 1) -> None:
    """A Count metric with one dimension of its own (see ``publish``)."""
    publish({dimension: value}, {name: ("Count", n)})


def record_attempt(
    vendor: str, error_code: str | None, *, latency_ms: int | None, billed: bool | None, vendor_failure: bool
) -> None:
    """One attempt of the router's. ``latency_ms`` None: the vendor was not called
    (cooling down, no time left), so only its error code is counted."""
    if latency_ms is not None:
        publish(
            {"vendor": vendor},
            {
                VENDOR_ATTEMPTS: ("Count", 1),
                VENDOR_LATENCY: ("Milliseconds", latency_ms),
                VENDOR_FAILURES: ("Count", int(vendor_failure)),
                VENDOR_BILLED: ("Count", int(billed is True)),
            },
        )
    if error_code is not None:
        publish({"vendor": vendor, "error_code": error_code}, {VENDOR_ERRORS: ("Count", 1)})


def record_answer(vendor: str, decision: str) -> None:
    publish({"vendor": vendor, "decision": decision}, {VENDOR_ANSWERS: ("Count", 1)})


def record_fallback(vendor: str) -> None:
    """A request left ``vendor`` (no answer) for the next vendor of its plan."""
    count(VENDOR_FALLBACKS, "vendor", vendor)


def record_cooldown_opened(vendor: str) -> None:
    count(COOLDOWN_OPENED, "vendor", vendor)


def record_prescreen_refused(check: str, avoided: list[str]) -> None:
    """Pre-screening refused a photo (``check``): one call avoided for each paid vendor in ``avoided``."""
    count(PRESCREEN_REFUSED, "check", check)
    for vendor in avoided:
        count(BILLED_CALLS_AVOIDED, "vendor", vendor)


def record_prescreen_skipped() -> None:
    publish({}, {PRESCREEN_SKIPPED: ("Count", 1)})
