"""What every vendor is, and the data that crosses between vendors and the service.

A vendor module declares its capabilities, credential model and image limits, and
turns one operation into an ``HttpRequest`` and one ``HttpResponse`` back into an
outcome. Building and parsing are pure: no clock, no randomness, no I/O — the
clock and nonce come in through ``CallContext``, the bytes go out through the
transport. That is what makes golden-request tests possible.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from facegate.errors import UnsupportedOperation
from facegate.models import Decision, Operation, SecurityLevel

if TYPE_CHECKING:
    from facegate.images import Image, ImageLimits
    from facegate.transport import Transport


class Credentials(BaseModel):
    """Base for a vendor's secret. ``endpoint`` overrides the documented base URL."""

    # A validation error must never echo a secret's value. Unknown fields are ignored on
    # purpose: a secret is an operator's JSON that may carry more than this vendor reads (the
    # stack's placeholder's "configured", face2's optional keys, notes), and refusing it would
    # take the vendor out of service over a field nobody uses; the fields read are validated.
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True, defer_build=True)
    endpoint: str | None = None

    def __repr__(self) -> str:  # secrets never reach a log through repr()
        return f"{type(self).__name__}(endpoint={self.endpoint!r}, ...)"

    __str__ = __repr__


# --- what goes in -------------------------------------------------------------------

# How far (seconds, either way) a vendor's signed response time may be from the
# request's ``now`` before the answer is refused as a possible replay. Not from any
# vendor doc; FACEGATE_ZOLOZ_RESPONSE_MAX_SKEW_S sets it for ZOLOZ (facegate.config).
RESPONSE_MAX_SKEW_S = 300.0


@dataclass(frozen=True)
class CallContext:
    """Everything non-deterministic a request builder may use, fixed up front."""

    now: datetime  # timezone-aware
    nonce: str  # random, unique per attempt; vendors that want one use it
    request_id: str
    security_level: SecurityLevel = "normal"
    # The vendor's validated ``options_model`` instance (None if it takes no options).
    options: Any = None
    # time.monotonic() by which the answer must be in; the transport shortens its
    # timeouts to fit. Not for builders: requests must not depend on it.
    deadline: float | None = None
    # See RESPONSE_MAX_SKEW_S; a setting, passed in so parsers stay free of config.
    response_max_skew_s: float = RESPONSE_MAX_SKEW_S


@dataclass(frozen=True)
class ImageRef:
    """An image as a vendor receives it: decoded bytes, or a URL or token passed
    through to vendors that fetch images themselves."""

    image: Image | None = None
    url: str | None = None
    face_token: str | None = None


@dataclass(frozen=True)
class Identity:
    name: str
    id_number: str


# --- what comes out ------------------------------------------------------------------


@dataclass(frozen=True)
class CompareOutcome:
    """A vendor's answer to "same person?", already on facegate's scale.

    ``similarity`` is 0..1, higher is more alike. ``thresholds`` are the normalised
    similarity thresholds for each security level. ``inclusive`` says whether a
    similarity *equal* to a threshold clears it (≥) or not (>), as the vendor's doc
    words its line (Shuxun's "超过" is strict, jumei's "及以上" inclusive).

    The vendor's own verdict, where it gives one: ``vendor_match`` (a yes or no), or
    ``uncertain_band`` (lo, hi) for a vendor whose verdict is a rule on its score —
    below ``lo`` different, from ``lo`` up to ``hi`` it cannot tell, from ``hi`` up
    (compared as ``inclusive`` says) the same person. ``scale_documented`` is False
    where the score's mapping onto similarity is facegate's assumption (face2's
    distance): such a similarity may make the vendor's verdict stricter but never
    overrule its "different". ``decide`` explains how the levels use all this.
    """

    similarity: float
    vendor_score: float | None
    thresholds: Mapping[SecurityLevel, float]
    vendor_request_id: str | None = None
    billed: bool | None = None
    uncertain_band: tuple[float, float] | None = None
    vendor_match: bool | None = None
    inclusive: bool = True
    scale_documented: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. Kuaidi100 face tokens


@dataclass(frozen=True)
class DetectedFace:
    left: int
    top: int
    width: int
    height: int
    confidence: float | None = None


@dataclass(frozen=True)
class DetectOutcome:
    faces: list[DetectedFace]
    vendor_request_id: str | None = None
    billed: bool | None = None


@dataclass(frozen=True)
class FeaturesOutcome:
    embedding: list[float]
    model: str
    vendor_request_id: str | None = None
    billed: bool | None = None


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    # Headers carry signatures and keys, bodies carry images and identities: never in a repr.
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    # Adapter-private state needed to read the reply (e.g. ZOLOZ's AES key). Never logged.
    state: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str] = field(repr=False)  # case-insensitive mapping from the transport
    body: bytes = field(repr=False)


LEVELS: tuple[SecurityLevel, ...] = ("low", "normal", "high")  # laxest first
# Decisions ranked from laxest to strictest answer: a stricter level never ranks higher.
_RANK: Mapping[Decision, int] = {"no_match": 0, "uncertain": 1, "match": 2}


def thresholds_in_force(
    defaults: Mapping[SecurityLevel, float], overrides: Mapping[SecurityLevel, float] | None = None
) -> dict[SecurityLevel, float]:
    """The vendor's thresholds with the stage's overrides, in order.

    An override never makes a level laxer than the level below it: a stricter
    level's threshold is raised to the laxer one's where it falls below it (a
    ``high`` override under ``normal``'s line decides at ``normal``'s line). To
    lower ``normal`` below ``low``, lower ``low`` too.
    """
    t = {level: float((overrides or {}).get(level, defaults[level])) for level in LEVELS}
    for laxer, stricter in itertools.pairwise(LEVELS):
        t[stricter] = max(t[stricter], t[laxer])
    return t


def decide(
    outcome: CompareOutcome, level: SecurityLevel, overrides: Mapping[SecurityLevel, float] | None = None
) -> tuple[Decision, float]:
    """The one place a similarity becomes a decision: (decision, threshold used).

    ``overrides`` are the stage's thresholds for this vendor (any subset of levels).
    Without a verdict from the vendor each level compares the similarity with its
    threshold. With one (``vendor_match`` or an ``uncertain_band`` rule):

    * ``normal`` follows the verdict; a stage override on ``normal`` can only
      tighten it (the verdict *and* the threshold);
    * ``high`` needs the verdict *and* the high threshold;
    * ``low`` accepts the verdict *or* the low threshold — so ``low`` may accept a
      score the vendor calls different, by its documented scale; where that scale is
      facegate's assumption (``scale_documented`` False) ``low`` follows the verdict.

    With "uncertain" ranked between no_match and match, "and" is the lower and "or"
    the higher of the two answers, and the thresholds are in order, so by
    construction: match at ``high`` ⇒ match at ``normal`` ⇒ match at ``low``, and
    "uncertain" at a level is never above the laxer level's answer.
    """
    thresholds = thresholds_in_force(outcome.thresholds, overrides)
    threshold = thresholds[level]
    by_score: Decision = "match" if _clears(outcome, threshold) else "no_match"
    verdict = _verdict(outcome)
    if verdict is None:
        return by_score, threshold
    if level == "low":
        decision = max(verdict, by_score, key=_RANK.__getitem__) if outcome.scale_documented else verdict
    elif level == "normal" and level not in (overrides or {}):
        decision = verdict
    else:
        decision = min(verdict, by_score, key=_RANK.__getitem__)
    return decision, threshold


def _clears(outcome: CompareOutcome, threshold: float) -> bool:
    return outcome.similarity >= threshold if outcome.inclusive else outcome.similarity > threshold


def _verdict(outcome: CompareOutcome) -> Decision | None:
    """The vendor's own answer, if it gives one."""
    if outcome.vendor_match is not None:
        return "match" if outcome.vendor_match else "no_match"
    if outcome.uncertain_band is not None:
        lo, hi = outcome.uncertain_band
        if _clears(outcome, hi):
            return "match"
        return "uncertain" if outcome.similarity >= lo else "no_match"
    return None


# --- vendors ---------------------------------------------------------------------------


class Vendor(ABC):
    """One vendor. Subclasses set the class attributes and implement their operations.

    An adapter declares ``operations`` and implements exactly those: the operation's
    method below (``compare`` …) for a vendor that runs in-process, or the two hooks of
    the operation's capability class for one reached over HTTP (``HttpCompare`` …). A
    class that declares an operation it does not implement, or implements one it does
    not declare, fails when it is defined, not on its first request.
    """

    id: ClassVar[str]
    name: ClassVar[str]
    operations: ClassVar[frozenset[Operation]]
    credentials_model: ClassVar[type[Credentials] | None] = None  # None: needs no secret
    limits: ClassVar[ImageLimits]
    accepts_urls: ClassVar[bool] = False  # URL inputs go straight through
    # ``{"face_token": …}`` inputs go straight through: tokens the vendor itself issued.
    accepts_face_tokens: ClassVar[bool] = False
    options_model: ClassVar[type[BaseModel] | None] = None  # the request's ``options``, validated

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = getattr(cls, "operations", None)
        if declared is None:
            return  # a layer between Vendor and the adapters (HttpVendor, HttpCompare …)
        implemented = {op for op, default in _UNSUPPORTED.items() if getattr(cls, default.__name__) is not default}
        # ABC refuses to instantiate a class with abstract hooks left; say so now instead.
        missing = sorted(n for n in dir(cls) if getattr(getattr(cls, n, None), "__isabstractmethod__", False))
        if declared != implemented or missing:
            raise TypeError(
                f"vendor class {cls.__name__} declares {sorted(op.value for op in declared)}"
                f" but implements {sorted(op.value for op in implemented)}"
                + (f" and lacks {', '.join(missing)}" if missing else "")
            )

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> BaseModel | None:
        """Validate a request's vendor ``options`` before anything is called."""
        from pydantic import ValidationError

        from facegate.errors import InvalidOption

        if cls.options_model is None:
            if options:
                raise InvalidOption(f"vendor '{cls.id}' takes no options")
            return None
        try:
            return cls.options_model.model_validate(dict(options))
        except ValidationError as e:
            fields = ", ".join(".".join(str(p) for p in err["loc"]) or "options" for err in e.errors())
            raise InvalidOption(f"invalid options for vendor '{cls.id}': {fields}") from None

    def __init__(self, credentials: Credentials | None = None) -> None:
        self.credentials = credentials

    @classmethod
    def available(cls) -> bool:
        """Can this vendor run here at all (e.g. the engine layer is present)?"""
        return True

    def supports(self, op: Operation) -> bool:
        return op in self.operations

    def _unsupported(self, op: Operation) -> UnsupportedOperation:
        return UnsupportedOperation(f"vendor '{self.id}' does not offer {op.value}", vendor=self.id)

    def compare(self, image1: ImageRef, image2: ImageRef, ctx: CallContext) -> CompareOutcome:
        raise self._unsupported(Operation.COMPARE)

    def detect(self, image: ImageRef, max_faces: int, ctx: CallContext) -> DetectOutcome:
        raise self._unsupported(Operation.DETECT)

    def features(self, image: ImageRef, ctx: CallContext) -> FeaturesOutcome:
        raise self._unsupported(Operation.FEATURES)

    def verify_identity(self, identity: Identity, image: ImageRef, ctx: CallContext) -> CompareOutcome:
        raise self._unsupported(Operation.VERIFY_IDENTITY)


# Each operation's method as Vendor leaves it: a vendor that still has it does not offer it.
_UNSUPPORTED: Mapping[Operation, Callable[..., Any]] = {
    Operation.COMPARE: Vendor.compare,
    Operation.DETECT: Vendor.detect,
    Operation.FEATURES: Vendor.features,
    Operation.VERIFY_IDENTITY: Vendor.verify_identity,
}


class HttpVendor(Vendor):
    """A vendor reached over HTTPS. An adapter subclasses the capability class of each
    operation it offers (``HttpCompare`` …) and implements its two pure hooks,
    ``build_<op>`` and ``parse_<op>``; this class sends the bytes through the transport."""

    default_endpoint: ClassVar[str | None] = None

    def __init__(self, credentials: Credentials | None, transport: Transport) -> None:
        super().__init__(credentials)
        self.transport = transport

    @property
    def endpoint(self) -> str:
        base = (self.credentials.endpoint if self.credentials else None) or self.default_endpoint
        if not base:
            from facegate.errors import VendorNotConfigured

            raise VendorNotConfigured(f"vendor '{self.id}' has no endpoint configured", vendor=self.id)
        return base.rstrip("/")

    def _exchange[R](
        self, request: HttpRequest, parse: Callable[[HttpResponse, HttpRequest, CallContext], R], ctx: CallContext
    ) -> R:
        import time

        remaining = None if ctx.deadline is None else ctx.deadline - time.monotonic()
        response = self.transport.send(self.id, request, deadline_s=remaining)
        return parse(response, request, ctx)


class HttpCompare(HttpVendor):
    """Compare over HTTP: the request for two images, and the outcome in its reply."""

    @abstractmethod
    def build_compare(self, image1: ImageRef, image2: ImageRef, ctx: CallContext) -> HttpRequest: ...

    @abstractmethod
    def parse_compare(self, response: HttpResponse, request: HttpRequest, ctx: CallContext) -> CompareOutcome: ...

    def compare(self, image1: ImageRef, image2: ImageRef, ctx: CallContext) -> CompareOutcome:
        return self._exchange(self.build_compare(image1, image2, ctx), self.parse_compare, ctx)


class HttpDetect(HttpVendor):
    """Detect over HTTP: the request for one image, and the faces in its reply."""

    @abstractmethod
    def build_detect(self, image: ImageRef, max_faces: int, ctx: CallContext) -> HttpRequest: ...

    @abstractmethod
    def parse_detect(self, response: HttpResponse, request: HttpRequest, ctx: CallContext) -> DetectOutcome: ...

    def detect(self, image: ImageRef, max_faces: int, ctx: CallContext) -> DetectOutcome:
        return self._exchange(self.build_detect(image, max_faces, ctx), self.parse_detect, ctx)


class HttpFeatures(HttpVendor):
    """Features over HTTP: the request for one image, and the embedding in its reply."""

    @abstractmethod
    def build_features(self, image: ImageRef, ctx: CallContext) -> HttpRequest: ...

    @abstractmethod
    def parse_features(self, response: HttpResponse, request: HttpRequest, ctx: CallContext) -> FeaturesOutcome: ...

    def features(self, image: ImageRef, ctx: CallContext) -> FeaturesOutcome:
        return self._exchange(self.build_features(image, ctx), self.parse_features, ctx)


class HttpVerifyIdentity(HttpVendor):
    """Verify-identity over HTTP: the request for an identity and a photo, and the outcome."""

    @abstractmethod
    def build_verify_identity(self, identity: Identity, image: ImageRef, ctx: CallContext) -> HttpRequest: ...

    @abstractmethod
    def parse_verify_identity(
        self, response: HttpResponse, request: HttpRequest, ctx: CallContext
    ) -> CompareOutcome: ...

    def verify_identity(self, identity: Identity, image: ImageRef, ctx: CallContext) -> CompareOutcome:
        return self._exchange(self.build_verify_identity(identity, image, ctx), self.parse_verify_identity, ctx)
