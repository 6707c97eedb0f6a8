"""GET /v1/vendors — vendors, their operations, whether each is configured."""

from aws_lambda_powertools.logging import correlation_paths

from facegate.api import create_app, handle
from facegate.models import VendorsResponse
from facegate.observability import log_metrics, logger, tracer
from facegate.service import default_service

app = create_app()


@app.get("/v1/vendors")
@tracer.capture_method
def list_vendors() -> VendorsResponse:
    return default_service().vendors()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@log_metrics()
def lambda_handler(event, context):
    return handle(app, event, context)
