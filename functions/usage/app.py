"""The caller's own usage, from daily counters (facegate.store.UsageCounter): never a scan.

GET /v1/usage — the caller's calls per vendor and operation between two days, with an estimated cost.
"""

from datetime import UTC, datetime
from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths

from facegate.api import caller, create_app, handle
from facegate.models import UsageResponse
from facegate.observability import log_metrics, logger, tracer
from facegate.store import USAGE_MAX_DAYS, default_usage, usage_days

app = create_app()

_DAY = {"format": "date", "examples": ["2026-11-01"]}


@app.get("/v1/usage")
@tracer.capture_method
def get_usage(
    from_: Annotated[
        str | None,
        Query(alias="from", description="First day (UTC), inclusive; default: the first of to's month.",
              json_schema_extra=_DAY),
    ] = None,
    to: Annotated[
        str | None,
        Query(description=f"Last day (UTC), inclusive; default: today. At most {USAGE_MAX_DAYS} days.",
              json_schema_extra=_DAY),
    ] = None,
) -> UsageResponse:  # fmt: skip
    first, last = usage_days(from_, to, datetime.now(UTC).date())
    return default_usage().report(caller(app).tenant, first, last)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@log_metrics()
def lambda_handler(event, context):
    return handle(app, event, context)
