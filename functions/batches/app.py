"""GET /v1/batches/{batch_id} — a batch's progress, by batch id only (a manifest name is guessable)."""

from aws_lambda_powertools.logging import correlation_paths

from facegate.api import create_app, handle
from facegate.batch import BatchProgress
from facegate.batch_store import default_batch_store
from facegate.observability import log_metrics, logger, tracer

app = create_app()


@app.get("/v1/batches/<batch_id>")
@tracer.capture_method
def get_batch(batch_id: str) -> BatchProgress:
    return default_batch_store().find(batch_id).progress()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@log_metrics()
def lambda_handler(event, context):
    return handle(app, event, context)
