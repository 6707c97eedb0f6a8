"""GET /v1/results/{request_id} — the logged outcome of an earlier call."""

from aws_lambda_powertools.logging import correlation_paths

from facegate.api import create_app, handle
from facegate.errors import NotFound
from facegate.ids import is_request_id
from facegate.observability import logger, metrics, tracer
from facegate.service import default_service
from facegate.store import ResultRecord

app = create_app()


@app.get("/v1/results/<request_id>")
@tracer.capture_method
def get_result(request_id: str) -> ResultRecord:
    if not is_request_id(request_id):  # not worth a DynamoDB read
        raise NotFound(f"no result with request_id '{request_id[:64]}'")
    return default_service().result(request_id)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event, context):
    return handle(app, event, context)
