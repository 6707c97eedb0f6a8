"""POST /v1/compare — are two faces the same person."""

from aws_lambda_powertools.logging import correlation_paths

from facegate.api import caller, create_app, handle
from facegate.models import CompareRequest, CompareResponse, Operation
from facegate.observability import log_metrics, logger, tracer
from facegate.service import default_service

app = create_app(Operation.COMPARE)


@app.post("/v1/compare")
@tracer.capture_method
def compare(request: CompareRequest) -> CompareResponse:
    return default_service().compare(request, caller(app))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@log_metrics()
def lambda_handler(event, context):
    return handle(app, event, context)
