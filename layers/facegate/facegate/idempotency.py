"""``Idempotency-Key``: a POST operation that is safe to repeat.

A caller that sends ``Idempotency-Key: <key>`` with POST /v1/compare, /v1/detect,
/v1/features or /v1/verify-identity gets the first answer again for every repeat
of that request while the key lives: same status, same body, same ``request_id``,
plus the header ``Idempotent-Replay: true``. A repeat calls no vendor and writes
no results-log record, so one check is never paid for twice.

Built on Powertools' Idempotency utility (``idempotent_function`` over the
DynamoDB persistence layer, table ``FACEGATE_IDEMPOTENCY_TABLE``):

* Scope. A record's id is ``facegate.<operation>#`` + SHA-256 of the caller's
  tenant (API key id or IAM principal) and the Idempotency-Key (``record_id``).
  Two tenants never share (or read) a record; the same key on two operations is
  two records. Neither value is stored in clear.
* Erasure. The call's results-log record keeps that id (``idempotency_id``), so
  DELETE /v1/results/{request_id} erases the key's record too (``erase``).
* The same key with a different body. Each record keeps a hash of the SHA-256 of
  the raw request body; a repeat whose body differs is 422 IDEMPOTENCY_KEY_REUSED
  and runs nothing.
* A concurrent repeat. While the first request runs its record is INPROGRESS and a
  repeat is 409 IDEMPOTENCY_IN_PROGRESS (retryable). The lock lasts as long as the
  Lambda invocation may (``register_lambda_context``), so a crashed or timed-out
  run frees the key for the next attempt.
* What is kept. Only final answers: 2xx and the caller's own errors (4xx). An
  answer worth retrying (5xx, 429, or any error marked retryable) is not kept:
  raising it inside the idempotent function makes Powertools delete the record,
  and the answer is handed back here. The next attempt with the key runs again.
* What a record holds: the hashed id, status, expiry, the body hash and the whole
  API answer (status, headers, body): the caller's own result, which may include a
  decision, scores, an embedding or masked identity fields, but never an image
  (no response carries one). Records expire after FACEGATE_IDEMPOTENCY_TTL_S
  (24 h by default) through DynamoDB TTL on ``expiration``.

Deliberate choices:

* The header without a configured table is 501 IDEMPOTENCY_NOT_CONFIGURED rather
  than ignored: a caller who asked for a safe repeat must never silently get an
  unsafe one. The stack configures the table for the four operations, and
  ``make run`` creates it from the template, so this only shows a broken setup.
* The idempotency store failing before the operation ran is 503
  IDEMPOTENCY_UNAVAILABLE (retryable; nothing was called). Failing after it ran,
  the caller still gets the answer (a vendor may have billed it) and the failure
  is logged and counted; the key then stays locked until the in-progress lock
  expires.
* ``POWERTOOLS_IDEMPOTENCY_DISABLED`` (a Powertools development switch) turns all
  of this off; never set it in a deployed stack.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from facegate.config import Settings, settings
from facegate.errors import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    IdempotencyNotConfigured,
    IdempotencyUnavailable,
    InvalidRequest,
)
from facegate.models import Operation
from facegate.observability import logger, metrics

if TYPE_CHECKING:
    # Imported where used: Powertools Idempotency pulls in boto3, which requests
    # without an Idempotency-Key (most of them) should not pay for at cold start.
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replay"
# The operations a key applies to (all POST); other routes ignore the header.
OPERATIONS = frozenset({Operation.COMPARE, Operation.DETECT, Operation.FEATURES, Operation.VERIFY_IDENTITY})

_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def requested_key(event: Mapping[str, Any]) -> str | None:
    """The request's Idempotency-Key (header name in any case), None without one.
    A malformed key, or two different ones, is the caller's mistake (400)."""
    name = HEADER.lower()
    values: set[str] = {v for k, v in (event.get("headers") or {}).items() if k.lower() == name and v is not None}
    for k, vs in (event.get("multiValueHeaders") or {}).items():
        if k.lower() == name:
            values.update(v for v in vs or () if v is not None)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest(f"send one {HEADER} header, not several")
    key = values.pop()
    if not _KEY.fullmatch(key):
        # The value is not echoed back: messages never carry what the caller sent.
        raise InvalidRequest(f"{HEADER} must be 1 to 128 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'")
    return key


def body_sha256(event: Mapping[str, Any]) -> str:
    """SHA-256 of the request body's bytes as sent."""
    body = event.get("body") or ""
    raw = body.encode("utf-8")
    if event.get("isBase64Encoded"):
        with contextlib.suppress(ValueError):  # not base64 after all: hash what arrived
            raw = base64.b64decode(body, validate=True)
    return hashlib.sha256(raw).hexdigest()


def is_final(response: Mapping[str, Any]) -> bool:
    """Is this answer the request's outcome (kept for repeats), rather than a
    failure worth retrying (5xx, 429, or an error marked retryable)?"""
    status = int(response.get("statusCode") or 500)
    if status >= 500 or status == 429:
        return False
    if status < 400:
        return True
    try:
        body = json.loads(response.get("body") or "{}")
    except (TypeError, ValueError):
        return True
    error = body.get("error") if isinstance(body, dict) else None
    return not (isinstance(error, dict) and error.get("retryable") is True)


# What a record's id hashes: the request fields this selects (Powertools' event_key_jmespath).
_SCOPE = "[tenant, idempotency_key]"


def _scope(tenant: str | None, key: str) -> dict[str, str]:
    return {"tenant": tenant or "", "idempotency_key": key}


def _prefix(operation: Operation) -> str:
    return f"facegate.{operation.value}"


def record_id(operation: Operation, tenant: str | None, key: str) -> str:
    """The id of this key's record, as Powertools computes it: ``<key_prefix>#`` +
    the configured hash of the JSON of what ``event_key_jmespath`` selects (its
    ``BasePersistenceLayer._get_hashed_idempotency_key``; a test holds the two equal)."""
    scope = _scope(tenant, key)
    selected = [scope["tenant"], scope["idempotency_key"]]
    digest = hashlib.sha256(json.dumps(selected, sort_keys=True).encode()).hexdigest()
    return f"{_prefix(operation)}#{digest}"


def erase(idempotency_id: str, cfg: Settings | None = None) -> None:
    """Delete a key's record (gone already, or never kept: nothing to do)."""
    cfg = cfg or settings()
    if not cfg.idempotency_table:
        return
    layer = persistence_layer(cfg.idempotency_table, cfg.idempotency_ttl_s)
    layer.client.delete_item(TableName=layer.table_name, Key={layer.key_attr: {"S": idempotency_id}})


class _NotFinal(Exception):
    """Raised inside the idempotent function so that Powertools keeps nothing."""


@cache
def persistence_layer(table: str, ttl_s: int) -> DynamoDBPersistenceLayer:
    """One per container (and TTL: Powertools configures a layer once). Attribute
    names are Powertools' defaults: ``id`` (hash key), ``expiration`` (TTL),
    ``in_progress_expiration``, ``status``, ``data``, ``validation``. Short timeouts:
    a slow store must not eat the request's deadline (the vendor's share of it)."""
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from botocore.config import Config

    # Short timeouts: a slow key store must not eat the request's deadline.
    client = Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "max_attempts": 3})
    return DynamoDBPersistenceLayer(table_name=table, boto_config=client)


def run(
    resolve: Callable[[], dict[str, Any]],
    *,
    event: Mapping[str, Any],
    context: Any,
    operation: Operation,
    tenant: str | None,
    key: str,
    cfg: Settings | None = None,
) -> dict[str, Any]:
    """``resolve()`` (the whole API answer) at most once per key, scope and body.
    Raises a FacegateError for the key's own problems; the caller maps it."""
    cfg = cfg or settings()
    if not cfg.idempotency_table:
        raise IdempotencyNotConfigured(
            f"{HEADER} is not supported by this deployment (no idempotency table is configured); "
            "the request was not run"
        )
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        BaseError,
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )

    config = IdempotencyConfig(
        event_key_jmespath=_SCOPE,
        payload_validation_jmespath="body_sha256",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=cfg.idempotency_ttl_s,
        hash_function="sha256",
        response_hook=_replayed,
    )
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        # The in-progress lock then ends when this invocation must have ended.
        config.register_lambda_context(context)
    answered: list[dict[str, Any]] = []

    def first_run(request: dict[str, str]) -> dict[str, Any]:
        response = resolve()
        answered.append(response)
        if not is_final(response):
            raise _NotFinal  # Powertools deletes the record: the next attempt runs again
        return response

    once = idempotent_function(
        first_run,
        data_keyword_argument="request",
        persistence_store=persistence_layer(cfg.idempotency_table, cfg.idempotency_ttl_s),
        config=config,
        key_prefix=_prefix(operation),
    )
    request = {**_scope(tenant, key), "body_sha256": body_sha256(event)}
    try:
        answer: dict[str, Any] = once(request=request)  # idempotent_function is untyped
        return answer
    except _NotFinal:
        return answered[0]
    except IdempotencyValidationError:
        raise IdempotencyKeyReused(
            f"this {HEADER} was already used with a different request body; use a new key for a new request"
        ) from None
    except IdempotencyAlreadyInProgressError:
        raise IdempotencyInProgress(
            f"a request with this {HEADER} is still running; retry shortly with the same key"
        ) from None
    except BaseError:
        if answered:
            # The operation ran (and may have been billed): the caller gets its answer.
            logger.exception("idempotency store failed after the operation ran", extra={"operation": operation})
            metrics.add_metric(name="IdempotencyStoreFailed", unit="Count", value=1)
            return answered[0]
        logger.exception("idempotency store failed before the operation ran", extra={"operation": operation})
        raise IdempotencyUnavailable(
            "the idempotency store is unavailable; the request was not run, retry it with the same key"
        ) from None


def _replayed(response: Any, idempotent_data: DataRecord) -> Any:
    """Powertools' response hook: the stored answer, marked as a replay."""
    if isinstance(response, dict):
        headers = response["headers"] = dict(response.get("headers") or {})
        headers[REPLAY_HEADER] = "true"
        logger.info("idempotent replay", extra={"replayed_request_id": headers.get("X-Request-Id")})
    metrics.add_metric(name="IdempotentReplays", unit="Count", value=1)
    return response
