"""The HTTP edge shared by every function: the resolver, the request context, and
the one place an exception becomes an HTTP response in the contract's error shape.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import ResponseBuilder
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from facegate import request_body
from facegate.errors import (
    FacegateError,
    InternalError,
    InvalidRequest,
    MalformedJson,
    NotFound,
    UnsupportedMediaType,
    describe_validation_errors,
)
from facegate.ids import new_request_id
from facegate.models import Operation
from facegate.observability import logger, metrics
from facegate.service import Call, Caller

Body = dict[str, Any]  # a JSON response body

# API Gateway gives up on an integration after 29 s: answer before that, whatever
# the function's own timeout, so the caller gets our error instead of a 504 page.
GATEWAY_LIMIT_S = 29.0
DEADLINE_MARGIN_S = 1.5


class Resolver(APIGatewayRestResolver):
    """Powertools' REST resolver, knowing the operation its routes perform."""

    def __init__(self, operation: Operation | None = None) -> None:
        # The body reaches this parser only through handle(), checked (facegate.request_body).
        super().__init__(enable_validation=True, json_body_deserializer=request_body.loads)
        self.operation = operation


def create_app(operation: Operation | None = None) -> Resolver:
    """A resolver with validation on and every error mapped to the contract shape.
    ``operation`` names what failed requests are logged as (None: not logged) and
    makes the routes honour Idempotency-Key (``facegate.idempotency``)."""
    app = Resolver(operation)

    @app.exception_handler(FacegateError)  # type: ignore[untyped-decorator]  # Powertools' decorator is unannotated
    def _facegate_error(e: FacegateError) -> Response[Body]:
        return _error(app, e, operation)

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]  # Powertools' decorator is unannotated
    def _validation_error(e: RequestValidationError) -> Response[Body]:
        return _error(app, _from_validation(e), operation)

    @app.exception_handler(RequestUnsupportedContentType)  # type: ignore[untyped-decorator]  # Powertools' decorator is unannotated
    def _content_type(e: RequestUnsupportedContentType) -> Response[Body]:
        return _error(app, UnsupportedMediaType("send the request body as application/json"), operation)

    @app.exception_handler(NotFoundError)  # type: ignore[untyped-decorator]  # Powertools' decorator is unannotated
    def _not_found(e: NotFoundError) -> Response[Body]:
        return _error(app, NotFound(f"no route for {app.current_event.http_method} {app.current_event.path}"), None)

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]  # Powertools' decorator is unannotated
    def _unexpected(e: Exception) -> Response[Body]:
        logger.exception("unhandled error", extra={"request_id": caller(app).request_id})
        metrics.add_metric(name="InternalErrors", unit="Count", value=1)
        return _error(app, InternalError("internal error; the request id identifies it in our logs"), operation)

    return app


def handle(app: APIGatewayRestResolver, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Resolve one API Gateway event with a fresh request id and deadline."""
    started = time.monotonic()
    remaining_s = GATEWAY_LIMIT_S
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        remaining_s = min(remaining_s, context.get_remaining_time_in_millis() / 1000)
    c = Caller(  # with the request's one results-log record (c.log: the service or _error writes it)
        request_id=new_request_id(),
        tenant=tenant_of(event),
        deadline=started + remaining_s - DEADLINE_MARGIN_S,
        started=started,
    )
    logger.append_keys(request_id=c.request_id)
    operation: Operation | None = getattr(app, "operation", None)
    try:
        event = request_body.checked_event(event)
        from facegate import idempotency  # its store and Powertools' Idempotency load with the first key

        keyed = operation in idempotency.OPERATIONS and event.get("httpMethod") == "POST"
        key = idempotency.requested_key(event) if keyed else None
        if key is None or operation is None:  # a key is only read for an operation's routes
            return _resolve(app, event, context, c)
        c.idempotency_id = idempotency.record_id(operation, c.tenant, key)
        return idempotency.run(
            lambda: _resolve(app, event, context, c),
            event=event,
            context=context,
            operation=operation,
            tenant=c.tenant,
            key=key,
        )
    except FacegateError as e:  # the body's or the key's own problems; the route was not run
        response = ResponseBuilder[APIGatewayProxyEvent](_error(app, e, operation, c), serializer=_to_json).build(
            APIGatewayProxyEvent(event)
        )
        response.setdefault("headers", {})["X-Request-Id"] = c.request_id
        return response


def tenant_of(event: dict[str, Any]) -> str | None:
    """Who owns what this request makes (ARCHITECTURE.md, Tenancy): the API key's id
    when API Gateway checked a key, else the IAM principal that signed the request
    (SigV4: ``userArn``, or ``caller`` where no ARN is given). None only for an
    event no gateway authenticated; such a caller owns nothing it can read back."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    return identity.get("apiKeyId") or identity.get("userArn") or identity.get("caller") or None


def _resolve(app: APIGatewayRestResolver, event: dict[str, Any], context: Any, c: Caller) -> dict[str, Any]:
    app.append_context(caller=c)  # type: ignore[no-untyped-call]  # Powertools leaves it unannotated
    response = app.resolve(event, context)
    response.setdefault("headers", {})["X-Request-Id"] = c.request_id
    return response


def _to_json(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


def caller(app: APIGatewayRestResolver) -> Caller:
    c = app.context.get("caller")
    if c is None:  # resolve() called without handle(): still give every answer an id
        c = Caller(request_id=new_request_id())
        app.append_context(caller=c)  # type: ignore[no-untyped-call]  # Powertools leaves it unannotated
    return c


def _error(
    app: APIGatewayRestResolver, e: FacegateError, operation: Operation | None, c: Caller | None = None
) -> Response[Body]:
    c = c or caller(app)
    if operation is not None:  # its one record, unless the service wrote it (CallLog: at most once)
        from facegate.store import default_store

        c.log.record(Call(operation, c), e, default_store())
    logger.info(
        "request failed",
        extra={"error_code": e.code, "status": e.status, "vendor": e.vendor, "vendor_code": e.vendor_code},
    )
    metrics.add_metric(name=f"Error_{e.code}", unit="Count", value=1)
    return Response(
        status_code=e.status,
        content_type=content_types.APPLICATION_JSON,
        body={"request_id": c.request_id, "error": e.body()},
        headers={"X-Request-Id": c.request_id},
    )


def _from_validation(e: RequestValidationError) -> FacegateError:
    """A caller-facing message built from field locations and pydantic's messages
    only: the offending values (images, ID numbers) are never echoed back."""
    errors = e.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return MalformedJson("the request body is not valid JSON")
    return InvalidRequest(describe_validation_errors(errors, skip=("body",)))
