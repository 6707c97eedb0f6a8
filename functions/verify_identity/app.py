"""POST /v1/verify-identity — does this photo match the ID card holder."""

from aws_lambda_powertools.logging import correlation_paths

from facegate.api import caller, create_app, handle
from facegate.models import Operation, VerifyIdentityRequest, VerifyIdentityResponse
from facegate.observability import log_metrics, logger, tracer
from facegate.service import default_service

app = create_app(Operation.VERIFY_IDENTITY)


@app.post("/v1/verify-identity")
@tracer.capture_method
def verify_identity(request: VerifyIdentityRequest) -> VerifyIdentityResponse:
    return default_service().verify_identity(request, caller(app))


# The event carries a name and an ID number: never log it (no log_event).
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@log_metrics()
def lambda_handler(event, context):
    return handle(app, event, context)
