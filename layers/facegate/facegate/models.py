"""The public request and response models (the HTTP contract, in pydantic).

No ``from __future__ import annotations`` here: with it every field's annotation is a
string that pydantic compiles and evaluates when it creates the class (~100 of them,
about a third of this module's import); without it Python evaluates them as code.
"""

import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from facegate.vendors import vendor_ids

# The registry is the one list of vendors: a dict of strings, importing no vendor module.
VENDOR_IDS: tuple[str, ...] = tuple(vendor_ids())
VendorId = Literal[VENDOR_IDS]  # type: ignore[valid-type]  # built from the registry at run time; mypy sees Any
SecurityLevel = Literal["low", "normal", "high"]
Decision = Literal["match", "no_match", "uncertain"]
Strategy = Literal["ordered", "cheapest", "fastest"]


class Model(BaseModel):
    """Every model of the contract. Built on first use, not at import: each function uses
    a few of them, and building all of them was the largest part of importing this module."""

    model_config = ConfigDict(defer_build=True)


class Operation(StrEnum):
    COMPARE = "compare"
    DETECT = "detect"
    FEATURES = "features"
    VERIFY_IDENTITY = "verify_identity"


class Strict(Model):
    """Unknown fields are the caller's typo, not something to ignore silently."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


# --- images -------------------------------------------------------------------------


# S3's general purpose bucket naming rules ("Bucket naming rules", Amazon S3 User Guide):
# "between 3 and 63 characters long", "only lowercase letters, numbers, periods (.), and
# hyphens (-)", "begin and end with a letter or number", "must not contain two adjacent
# periods", "must not be formatted as an IP address", and the reserved prefixes and suffixes.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class S3Location(Strict):
    """An object to read an image from. Names are checked here, before any AWS call:
    a bucket S3 could not have (``a/../b``) or a key that is not a plain path (``..``,
    ``.`` or empty segments, a leading ``/``, control characters) is the caller's error.
    Such keys are legal in S3, but URL normalisation along the way could turn them into
    another object than the one the prefix check saw. Which buckets and prefixes a stage
    reads from is the stage's decision (``facegate.inputs.s3_bucket``)."""

    bucket: str | None = Field(default=None, description="Defaults to the stack's own bucket.")
    key: Annotated[str, StringConstraints(min_length=1, max_length=1024)]

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if (
            not _BUCKET_NAME.fullmatch(v)
            or ".." in v
            or _IP_ADDRESS.fullmatch(v)
            or v.startswith(_RESERVED_BUCKET_PREFIXES)
            or v.endswith(_RESERVED_BUCKET_SUFFIXES)
        ):
            raise ValueError("bucket is not a valid S3 bucket name")
        return v

    @field_validator("key")
    @classmethod
    def _plain_key(cls, v: str) -> str:
        if len(v.encode()) > 1024:  # S3's limit is 1,024 bytes of UTF-8
            raise ValueError("key is longer than 1024 bytes")
        if _CONTROL_CHARACTERS.search(v):
            raise ValueError("key contains control characters")
        if v.startswith("/"):
            raise ValueError("key must not start with '/'")
        if any(segment in ("", ".", "..") for segment in v.split("/")):
            raise ValueError("key must not have empty, '.' or '..' segments")
        return v


def _exactly_one_image_schema(schema: dict[str, Any]) -> None:
    """The spec says what ``_exactly_one`` checks: one kind given (not null), the others absent or null."""
    kinds = list(schema["properties"])
    schema["oneOf"] = [
        {"required": [k], "properties": {k: {"not": {"type": "null"}}} | {o: {"type": "null"} for o in kinds if o != k}}
        for k in kinds
    ]


class ImageInput(Strict):
    """Exactly one of ``base64`` (a ``data:`` URI prefix is accepted), ``url``, ``s3``,
    or ``face_token`` (a token an earlier Kuaidi100 compare returned)."""

    model_config = ConfigDict(json_schema_extra=_exactly_one_image_schema)

    # Not in repr: Powertools formats the route's arguments into a debug message on every
    # request, logged or not (megabytes of text, ~5 ms; and an image must never reach a log).
    base64: str | None = Field(default=None, repr=False)
    # The pattern only tells the spec what ``_https`` checks (JSON Schema applies it to strings only).
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None, json_schema_extra={"pattern": "^[hH][tT][tT][pP][sS]?://"}
    )
    s3: S3Location | None = None
    face_token: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [n for n in ("base64", "url", "s3", "face_token") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("an image is exactly one of base64, url, s3 or face_token")
        return self

    @field_validator("url")
    @classmethod
    def _https(cls, v: str | None) -> str | None:
        # Syntax only: whether plain http is fetched, and from where, is the stage's rule (facegate.fetch).
        if v is None:
            return v
        if not v.lower().startswith(("https://", "http://")):
            raise ValueError("url must be an https:// URL")
        if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in v):
            raise ValueError("url must not contain control characters")
        if "@" in urlsplit(v).netloc:
            raise ValueError("url must not carry a user name or password")
        return v

    @property
    def kind(self) -> Literal["base64", "url", "s3", "face_token"]:
        for n in ("base64", "url", "s3", "face_token"):
            if getattr(self, n) is not None:
                return n
        raise AssertionError("validated")


# --- requests -------------------------------------------------------------------------


class Routing(Strict):
    vendor: VendorId | None = Field(default=None, description="Defaults to the stage's default vendor.")
    fallback: Annotated[list[VendorId], Field(max_length=5, json_schema_extra={"uniqueItems": True})] = Field(
        default_factory=list, description="Vendors to try in order when the vendor is unavailable."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Vendor-specific options.")
    strategy: Strategy = Field(
        default="ordered",
        description="The order in which the candidate vendors (vendor + fallback, or the stage's order) are tried: "
        "ordered (as stated); cheapest (by the stage's price per billed call, FACEGATE_VENDOR_PRICES; vendors "
        "without a price after those with one); fastest (by the median latency of each vendor's recent answers, "
        "shared by all containers; vendors not observed yet after those observed). Ties keep the stated order, a "
        "vendor cooling down is still skipped, failover is unchanged (only when a vendor gave no answer), and "
        "each attempt's reason says why its vendor came when it did. A consensus asks all its vendors at once: "
        "it takes ordered only (cheapest or fastest there is a 400).",
    )

    @field_validator("fallback")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("fallback lists each vendor at most once")
        return v


class ConsensusSpec(Strict):
    vendors: Annotated[list[VendorId], Field(min_length=2, max_length=5, json_schema_extra={"uniqueItems": True})]
    rule: Literal["all", "majority"] = "majority"

    @field_validator("vendors")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("consensus lists each vendor at most once")
        return v


class CompareRequest(Routing):
    image1: ImageInput
    image2: ImageInput
    security_level: SecurityLevel = "normal"
    consensus: ConsensusSpec | None = Field(
        default=None, description="Ask several vendors at once and combine their decisions."
    )
    prescreen: bool | None = Field(
        default=None,
        description="Screen the photos on the built-in detector before a paid vendor is called (true: the stage's "
        "FACEGATE_PRESCREEN mode, or faces if it is off; false: not screened). Default: the stage's setting.",
    )

    @model_validator(mode="after")
    def _one_strategy(self) -> Self:
        if self.consensus is not None and (self.vendor is not None or self.fallback):
            raise ValueError("consensus names its own vendors: leave out vendor and fallback")
        return self

    @model_validator(mode="after")
    def _consensus_has_no_order(self) -> Self:
        if self.consensus is not None and self.strategy != "ordered":
            raise ValueError(f"consensus asks all its vendors at once: strategy {self.strategy} does not apply")
        return self


class DetectRequest(Routing):
    image: ImageInput
    max_faces: Annotated[int, Field(ge=1, le=50)] = 10


class FeaturesRequest(Routing):
    image: ImageInput
    prescreen: bool | None = Field(
        default=None,
        description="Screen the photos on the built-in detector before a paid vendor is called (true: the stage's "
        "FACEGATE_PRESCREEN mode, or faces if it is off; false: not screened). Default: the stage's setting.",
    )


class VerifyIdentityRequest(Routing):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    id_number: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    image: ImageInput
    security_level: SecurityLevel = "normal"
    prescreen: bool | None = Field(
        default=None,
        description="Screen the photos on the built-in detector before a paid vendor is called (true: the stage's "
        "FACEGATE_PRESCREEN mode, or faces if it is off; false: not screened). Default: the stage's setting.",
    )


# --- responses ------------------------------------------------------------------------


def _absent(value: object) -> bool:
    return value is None


def when(applies: str, **kw: Any) -> Any:
    """A field left out of an answer where it does not apply, rather than sent as null;
    ``applies`` says when it appears (it becomes the spec's description)."""
    return Field(default=None, exclude_if=_absent, description=f"Present {applies}.", **kw)


class ErrorBody(Model):
    code: str
    message: str
    retryable: bool
    vendor: str | None = None
    vendor_code: str | None = None
    vendor_message: str | None = None


class Attempt(Model):
    vendor: str
    outcome: str = Field(description='"ok" or the error code of the attempt')
    billed: bool | None = None
    latency_ms: int
    reason: str | None = when(
        "on every attempt (records older than strategies have none): why this vendor was tried when it was, by "
        'the request\'s strategy, e.g. "ordered: as stated, 1st of 2", "cheapest: 0.1 CNY per call, 1st of 3", '
        '"fastest: median 120 ms over its last 8 sampled answers, 1st of 2", "consensus: asked at once with the others"'
    )


class Response(Model):
    request_id: str
    operation: Operation
    vendor: str = Field(description="The vendor that answered.")
    latency_ms: int
    vendor_request_id: str | None = None
    billed: bool | None = Field(default=None, description="Did the vendor bill this call (null: unknown).")
    attempts: list[Attempt] = Field(default_factory=list)


class Verdict(Model):
    decision: Decision
    match: bool | None
    similarity: Annotated[float, Field(ge=0.0, le=1.0)]
    threshold: Annotated[float, Field(ge=0.0, le=1.0)]
    security_level: SecurityLevel
    vendor_score: float | None = Field(default=None, description="The vendor's own score, unscaled.")


class VendorVerdict(Model):
    """One vendor's part in a consensus: its verdict, or the error it gave."""

    vendor: str
    decision: Decision | None = when("when the vendor answered")
    match: bool | None = None
    similarity: float | None = when("when the vendor answered")
    threshold: float | None = when("when the vendor answered")
    security_level: SecurityLevel | None = when("when the vendor answered")
    vendor_score: float | None = when("when the vendor answered with a score")
    vendor_request_id: str | None = when("when the vendor gives its own request ids")
    billed: bool | None = None
    error: ErrorBody | None = when("when the vendor gave no answer: its error")


class CompareResponse(Response, Verdict):
    consensus_rule: Literal["all", "majority"] | None = when("on a consensus compare only")
    verdicts: list[VendorVerdict] | None = when("on a consensus compare only: every vendor's answer or error")
    face_tokens: dict[str, str] | None = when(
        'when Kuaidi100 answered: tokens to send back later as {"face_token": ...} images'
    )


class VerifyIdentityResponse(Response, Verdict):
    name_masked: str
    id_number_masked: str


class Box(Model):
    left: int
    top: int
    width: int
    height: int


class Face(Model):
    box: Box
    confidence: float | None = when("when the vendor scores its detections (0..1)")


class DetectResponse(Response):
    faces: list[Face]
    face_count: int
    image_width: int | None = when("when facegate had the image's bytes (not a URL passed through)")
    image_height: int | None = when("when facegate had the image's bytes (not a URL passed through)")


class FeaturesResponse(Response):
    embedding: list[float]
    dimension: int
    model: str


class ErrorResponse(Model):
    request_id: str
    error: ErrorBody


class VendorInfo(Model):
    id: str
    name: str
    operations: list[Operation]
    configured: bool
    default: bool = False
    health: dict[str, Any] | None = Field(
        default=None, description="Cooldown state: closed (healthy), open (skipped) or half_open (probing)."
    )


class VendorsResponse(Model):
    vendors: list[VendorInfo]
    default_vendor: str


class UsageRow(Model):
    """One vendor and operation over the asked days, counted per attempt: a call that failed
    over from one vendor to another counts once for each vendor it tried (store.UsageCounter)."""

    vendor: str
    operation: Operation
    calls: int = Field(ge=0, description="Attempts made to the vendor (each retry and each failover is one).")
    billed: int = Field(ge=0, description="Attempts the vendor billed.")
    billing_unknown: int = Field(
        ge=0, description="Attempts that may have been billed (e.g. a read timeout): not in the estimate."
    )
    errors: int = Field(ge=0, description="Attempts that ended in an error.")
    billed_calls_avoided: int = Field(
        default=0,
        ge=0,
        description="Calls to this vendor that pre-screening refused before sending (FACEGATE_PRESCREEN): "
        "not made, not billed, not in calls.",
    )
    estimated_cost: float | None = Field(
        description="billed × the stage's price per call for the vendor (billing_unknown calls are not priced); "
        "null when the stage sets no price for the vendor."
    )


class UsageResponse(Model):
    """GET /v1/usage: the caller's calls per vendor and operation, days inclusive (UTC)."""

    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from", description="First day counted (UTC), inclusive.")
    to: date = Field(description="Last day counted (UTC), inclusive.")
    currency: str = Field(description="Currency of estimated_cost (the stage's price table).")
    vendors: list[UsageRow]
