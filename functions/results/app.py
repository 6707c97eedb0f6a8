"""The caller's own results-log records; another caller's record answers exactly as an
unknown id does (404 NOT_FOUND).

GET /v1/results/{request_id} — the logged outcome of one of the caller's earlier calls.
DELETE /v1/results/{request_id} — erase one of the caller's records and its idempotency entry.
"""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths

from facegate.api import caller, create_app, handle
from facegate.ids import is_request_id
from facegate.observability import log_metrics, logger, tracer
from facegate.service import default_service
from facegate.store import ResultView, no_result

app = create_app()


def _checked(request_id: str) -> str:
    if not is_request_id(request_id):  # not worth a DynamoDB read
        raise no_result(request_id)
    return request_id


@app.get("/v1/results/<request_id>")
@tracer.capture_method
def get_result(request_id: str) -> ResultView:
    return default_service().result(_checked(request_id), caller(app).tenant)


@app.delete("/v1/results/<request_id>", responses={204: {"description": "Erased; no body."}})
@tracer.capture_method
def erase_result(request_id: str) -> Response[None]:
    default_service().erase(_checked(request_id), caller(app).tenant)
    return Response(status_code=204, body=None, headers={"X-Request-Id": caller(app).request_id})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@log_metrics()
def lambda_handler(event, context):
    return handle(app, event, context)
