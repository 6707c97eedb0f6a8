"""Powertools Logger, Tracer and Metrics: one instance each per container.

Configured by the environment (POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE,
POWERTOOLS_LOG_LEVEL, POWERTOOLS_TRACE_DISABLED). Nothing logged here may carry
request bodies: log request ids, vendors, codes and timings only.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="facegate")
tracer = Tracer(service="facegate")
metrics = Metrics(namespace="Facegate", service="facegate")


def count(name: str, dimension: str, value: str, n: int = 1) -> None:
    """A Count metric with a dimension of its own, written at once (Powertools'
    ``single_metric``): added to ``metrics`` it would put the dimension on every metric
    of the invocation. Not written when metrics are off (locally); never raises — a
    metric is not a reason for a request to fail."""
    try:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric
        from aws_lambda_powertools.metrics.functions import is_metrics_disabled

        if is_metrics_disabled():
            return
        dimensions = {"service": metrics.service or "facegate", dimension: value}
        with single_metric(
            name=name, unit=MetricUnit.Count, value=n, namespace=metrics.namespace, default_dimensions=dimensions
        ):
            pass
    except Exception:
        logger.debug("metric not recorded", extra={"metric": name})
