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
