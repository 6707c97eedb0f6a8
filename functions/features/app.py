"""POST /v1/features — the face embedding of one image."""

from aws_lambda_powertools.logging import correlation_paths

from facegate.api import caller, create_app, handle
from facegate.models import FeaturesRequest, FeaturesResponse, Operation
from facegate.observability import log_metrics, logger, tracer
from facegate.service import default_service

app = create_app(Operation.FEATURES)


@app.post("/v1/features")
@tracer.capture_method
def features(request: FeaturesRequest) -> FeaturesResponse:
    return default_service().features(request, caller(app))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@log_metrics()
def lambda_handler(event, context):
    return handle(app, event, context)
