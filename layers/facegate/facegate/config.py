"""Runtime settings, parsed once per container from the environment.

| variable | meaning | default |
|---|---|---|
| FACEGATE_STAGE | stage name; secrets live under ``facegate/<stage>/vendors/<id>`` | dev |
| FACEGATE_RESULTS_TABLE | DynamoDB table of the results log | facegate-results |
| FACEGATE_DEFAULT_VENDOR | vendor used when a request names none | local |
| FACEGATE_FALLBACK | comma-separated default fallback order | (none) |
| FACEGATE_RESULT_TTL_DAYS | days a results-log record is kept | 90 |
| FACEGATE_THRESHOLDS | JSON ``{"<vendor>": {"<level>": similarity}}`` threshold overrides | {} |
| FACEGATE_BUCKET | bucket for ``{"s3": {"key": …}}`` images without a bucket | (none) |
| FACEGATE_INPUTS_PREFIX | keys ``{"s3": …}`` images in FACEGATE_BUCKET must start with (API: ``inputs/``) | (any) |
| FACEGATE_INPUT_BUCKETS | comma-separated other buckets ``{"s3": …}`` images may name | (none) |
| FACEGATE_ALLOW_HTTP_URLS | accept plain-http image URLs (local sandboxes only) | false |
| FACEGATE_URL_ALLOWLIST | local development only: hosts/CIDRs image URLs may reach though not public | (none) |
| FACEGATE_CONNECT_TIMEOUT / FACEGATE_READ_TIMEOUT | per-vendor HTTP timeouts, seconds | 3.05 / 10 |
| FACEGATE_SECRETS_MAX_AGE | seconds a fetched secret is cached in a warm container | 300 |
| FACEGATE_BATCH_TABLE | DynamoDB table of batch progress and per-line outcomes | facegate-batches |
| FACEGATE_BATCH_QUEUE_URL | SQS queue of batch items (the splitter sends, the worker backs off on it) | (none) |
| FACEGATE_BATCH_MAX_RECEIVES | the item queue's maxReceiveCount: on that delivery an error is final | 5 |
| FACEGATE_BATCH_RETRY_BASE_S | backoff before a retryable item is tried again (doubles per delivery) | 2 |
| FACEGATE_BATCH_MAX_ITEMS | most items one manifest may hold | 100000 |
| FACEGATE_BATCH_VENDOR_RATES | JSON ``{"<vendor>": calls/s}``: batch workers pace calls to stay under it | {} |
| FACEGATE_BATCH_CONCURRENCY | batch worker instances at once (MaximumConcurrency); they share the rates | 1 |
| FACEGATE_IDEMPOTENCY_TABLE | DynamoDB table of Idempotency-Key records; without one the header is a 501 | (none) |
| FACEGATE_IDEMPOTENCY_TTL_S | seconds an Idempotency-Key (and the answer it replays) is kept | 86400 |
| FACEGATE_VENDOR_TIMEOUTS | JSON ``{"<vendor>": {"connect": s, "read": s}}`` per-vendor overrides | {} |
| FACEGATE_MAX_RETRIES | retries of one vendor, only when it cannot have billed | 1 |
| FACEGATE_STATE_TABLE | DynamoDB table of vendor cooldowns and observed latencies; in memory without | (none) |
| FACEGATE_LATENCY_SAMPLE_INTERVAL_S | least seconds between latency samples of a vendor (0: all; off: none) | 1 |
| FACEGATE_LATENCY_SAMPLE_RATE | removed: refused, FACEGATE_LATENCY_SAMPLE_INTERVAL_S replaces it | — |
| FACEGATE_COOLDOWN_FAILURES / _WINDOW_S / _S | failures in the window that open a cooldown; its length | 5 / 60 / 30 |
| FACEGATE_PEPPER_SECRET | secret (name or ARN) holding the stage's pepper for ID-number HMACs | (none) |
| FACEGATE_PEPPER | the pepper itself (local runs); without either, no ID-number HMAC is stored | (none) |
| FACEGATE_USAGE_TABLE | DynamoDB table of daily usage counters (GET /v1/usage); none: nothing counted | (none) |
| FACEGATE_USAGE_TTL_DAYS | days a daily usage counter is kept | 400 |
| FACEGATE_VENDOR_PRICES | JSON ``{"<vendor>": price per billed call}``: usage, ``cheapest`` (``local``: 0) | {} |
| FACEGATE_PRICE_CURRENCY | currency of those prices, named in GET /v1/usage's answer | CNY |
| FACEGATE_PRESCREEN | screen photos on the engine before paid vendors: off, faces, quality (facegate.prescreen) | off |
| FACEGATE_ZOLOZ_RESPONSE_MAX_SKEW_S | seconds ZOLOZ's signed Response-Time may be off ours (replay guard) | 300 |
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from facegate.models import VENDOR_IDS, SecurityLevel, VendorId
from facegate.vendors.base import RESPONSE_MAX_SKEW_S


def _csv(v: object) -> object:
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    return v


def _off_is_none(v: object) -> object:
    return None if isinstance(v, str) and v.strip().lower() == "off" else v


def _json(v: object) -> object:
    if isinstance(v, str):
        return json.loads(v) if v.strip() else {}
    return v


# Settings this release removed, each with what replaces it. A stage still setting one is refused
# at start rather than ignored or warned about: the old value meant something the new default
# does not (FACEGATE_LATENCY_SAMPLE_RATE=0 turned the latency writes off; ignored, they come back
# at one per vendor per second per container), and a warning in a log nobody reads changes
# nothing. Refused, it fails like any other bad setting (a ValidationError on the first request:
# a logged 500 and the InternalErrors alarm), and the message says what to set instead.
REMOVED = {
    "FACEGATE_LATENCY_SAMPLE_RATE": (
        "removed: set FACEGATE_LATENCY_SAMPLE_INTERVAL_S instead, the least seconds between a vendor's"
        " latency samples (`off`: none, where a rate of 0 stopped them; `0`: every answer)"
    ),
}


class Timeout(BaseModel):
    model_config = ConfigDict(defer_build=True)  # built on first use, not at import

    connect: float = Field(default=3.05, gt=0, le=10)
    read: float = Field(default=10.0, gt=0, le=28)


class Settings(BaseModel):
    model_config = ConfigDict(defer_build=True)

    stage: str = "dev"
    results_table: str = "facegate-results"
    default_vendor: VendorId = "local"
    fallback: Annotated[list[VendorId], BeforeValidator(_csv)] = Field(default_factory=list)
    result_ttl_days: int = Field(default=90, ge=1, le=3650)
    thresholds: Annotated[dict[VendorId, dict[SecurityLevel, float]], BeforeValidator(_json)] = Field(
        default_factory=dict
    )
    bucket: str | None = None
    inputs_prefix: str | None = None
    input_buckets: Annotated[list[str], BeforeValidator(_csv)] = Field(default_factory=list)
    allow_http_urls: bool = False
    url_allowlist: Annotated[list[str], BeforeValidator(_csv)] = Field(default_factory=list)
    connect_timeout: float = Field(default=3.05, gt=0, le=10)
    read_timeout: float = Field(default=10.0, gt=0, le=28)
    secrets_max_age: int = Field(default=300, ge=0)
    batch_table: str = "facegate-batches"
    batch_queue_url: str | None = None
    batch_max_receives: int = Field(default=5, ge=1, le=1000)
    batch_retry_base_s: float = Field(default=2.0, ge=0, le=900)
    batch_max_items: int = Field(default=100_000, ge=1, le=1_000_000)
    batch_vendor_rates: Annotated[dict[VendorId, Annotated[float, Field(gt=0)]], BeforeValidator(_json)] = Field(
        default_factory=dict
    )
    batch_concurrency: int = Field(default=1, ge=1, le=1000)
    idempotency_table: str | None = None
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    vendor_timeouts: Annotated[dict[VendorId, Timeout], BeforeValidator(_json)] = Field(default_factory=dict)
    max_retries: int = Field(default=1, ge=0, le=3)
    state_table: str | None = None
    cooldown_failures: int = Field(default=5, ge=1)
    cooldown_window_s: float = Field(default=60.0, gt=0)
    cooldown_s: float = Field(default=30.0, gt=0)
    # None (``off``): no samples. The default is facegate.latency.SAMPLE_INTERVAL_S (why: there).
    latency_sample_interval_s: Annotated[float | None, BeforeValidator(_off_is_none)] = Field(
        default=1.0, ge=0, le=3600
    )
    pepper_secret: str | None = None
    usage_table: str | None = None
    usage_ttl_days: int = Field(default=400, ge=1, le=3650)
    # The built-in engine costs nothing unless the stage says otherwise.
    vendor_prices: Annotated[
        dict[VendorId, Annotated[float, Field(ge=0)]],
        BeforeValidator(_json),
        AfterValidator(lambda prices: {"local": 0.0, **prices}),
    ] = Field(default_factory=dict, validate_default=True)
    price_currency: str = Field(default="CNY", min_length=1, max_length=16)
    prescreen: Literal["off", "faces", "quality"] = "off"
    zoloz_response_max_skew_s: float = Field(default=RESPONSE_MAX_SKEW_S, gt=0, le=24 * 3600)

    def secret_name(self, vendor_id: str) -> str:
        assert vendor_id in VENDOR_IDS
        return f"facegate/{self.stage}/vendors/{vendor_id}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        removed = [
            InitErrorDetails(type=PydanticCustomError("removed_setting", why), loc=(name,), input=env[name])
            for name, why in REMOVED.items()
            if env.get(name, "") != ""  # empty: unset, as for every setting
        ]
        if removed:
            raise ValidationError.from_exception_data(cls.__name__, removed)
        prefix = "FACEGATE_"
        values = {k[len(prefix) :].lower(): v for k, v in env.items() if k.startswith(prefix) and v != ""}
        known = {k: v for k, v in values.items() if k in cls.model_fields}
        return cls.model_validate(known)


@cache
def settings() -> Settings:
    return Settings.from_env()
