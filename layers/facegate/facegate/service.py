"""The operations: choose vendor(s), prepare images, call, normalise, log.

Everything the caller sent is validated before any vendor is called: the request
model, the vendor choice and its options, identity fields, and every image
(decoded and checked once, whichever vendor ends up using it). Every call, success
or failure, leaves exactly one record in the results log.

Cohesive: the one place where an operation runs end to end (choice, images, calls,
fallback, the record); its parts are already their own modules (router, inputs,
health, store), and what is left is the sequence that ties them together.
"""

from __future__ import annotations

import secrets as _secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel

from facegate import observability
from facegate.config import Settings, settings
from facegate.errors import (
    CallerError,
    FacegateError,
    InternalError,
    InvalidOption,
    UnsupportedOperation,
    VendorNotConfigured,
)
from facegate.health import CooldownPolicy, DynamoHealthBook, HealthBook, MemoryHealthBook
from facegate.inputs import RequestImages
from facegate.latency import DynamoLatencyBook, LatencyBook, MemoryLatencyBook
from facegate.models import (
    Box,
    CompareRequest,
    CompareResponse,
    DetectRequest,
    DetectResponse,
    ErrorBody,
    Face,
    FeaturesRequest,
    FeaturesResponse,
    ImageInput,
    Operation,
    Routing,
    SecurityLevel,
    VendorInfo,
    VendorsResponse,
    VendorVerdict,
    VerifyIdentityRequest,
    VerifyIdentityResponse,
)
from facegate.router import Attempts, Planned, RetryPolicy, Router, VendorGate, combine
from facegate.secrets import is_configured, load_credentials
from facegate.store import ConsensusVote, PrescreenNote, ResultRecord, ResultsStore, ResultView, default_store, now
from facegate.strategy import arrange
from facegate.transport import Timeouts, Transport
from facegate.vendors import vendor_class, vendor_ids
from facegate.vendors.base import (
    CallContext,
    CompareOutcome,
    DetectOutcome,
    FeaturesOutcome,
    HttpVendor,
    Identity,
    Vendor,
    decide,
)


class CallLog:
    """The one results-log record of one call: every call, success or failure, leaves
    exactly one (the module's promise).

    Each ``Caller`` has its own, so there is one per request (``facegate.api.handle``)
    and one per batch item. Whoever learns the call's outcome records it here: the
    service once it has run the operation (or been told of a failure before it,
    ``Service.log_failure``), the API edge for a request refused before the service
    ran (validation, a bad Idempotency-Key). Only the first outcome is written; a later
    one is ignored, so the edge records every failure it maps without asking whether
    the service already did."""

    def __init__(self) -> None:
        self._recorded = False

    def record(self, call: Call, outcome: BaseModel | FacegateError, store: ResultsStore) -> bool:
        """Write ``call``'s record with its ``outcome`` (the answer, or the error) to
        ``store``, unless this call's record is written already. True if this wrote it.
        A failed write is logged and counted, never raised: the caller still gets the
        answer they may have paid for."""
        if self._recorded:
            return False
        record = _record_of(call, outcome, store)
        self._recorded = True
        try:
            store.put(record)
        except Exception:
            from facegate.observability import logger, metrics

            logger.exception("results log write failed", extra={"request_id": call.caller.request_id})
            metrics.add_metric(name="ResultsLogWriteFailed", unit="Count", value=1)
        return True


@dataclass
class Caller:
    """Who is asking, and by when the answer must be out.

    ``tenant`` owns the call's record (``facegate.api.tenant_of``). A batch item has
    no API caller: its record belongs to the batch, ``batch:<batch_id>``, a tenant no
    API key or IAM principal can be, so it is read through the batch's report and
    GET /v1/batches, never through GET /v1/results."""

    request_id: str
    tenant: str | None = None
    deadline: float | None = None  # time.monotonic() value
    started: float = field(default_factory=time.monotonic)
    batch_id: str | None = None
    batch_line: int | None = None
    idempotency_id: str | None = None  # the Idempotency-Key record this call answers (facegate.idempotency)
    log: CallLog = field(default_factory=CallLog, repr=False, compare=False)  # its one results-log record
    gate: VendorGate | None = field(default=None, repr=False, compare=False)  # told of each vendor call (batch pacing)

    def __post_init__(self) -> None:
        if self.tenant is None and self.batch_id is not None:
            self.tenant = f"batch:{self.batch_id}"

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)


@dataclass
class Call:
    """The bookkeeping of one operation, whatever its outcome; becomes the log record
    (``CallLog.record`` writes every field here, so nothing an operation learns is lost)."""

    operation: Operation
    caller: Caller
    fingerprints: list[str] = field(default_factory=list)
    attempts: Attempts = field(default_factory=Attempts)
    face_count: int | None = None
    dimension: int | None = None
    name_masked: str | None = None
    id_number_masked: str | None = None
    id_number_hmac: str | None = None  # internal correlation only: never in an answer
    consensus_rule: Literal["all", "majority"] | None = None
    consensus: list[VendorVerdict] | None = None
    prescreen: PrescreenNote | None = None


class Service:
    def __init__(
        self,
        cfg: Settings | None = None,
        store: ResultsStore | None = None,
        transport: Transport | None = None,
        credentials: Callable[[type[Vendor]], Any] | None = None,
        health: HealthBook | None = None,
        latency: LatencyBook | None = None,
    ):
        self.cfg = cfg = cfg or settings()
        self.store = store or default_store()
        self.transport = transport or Transport(
            Timeouts(cfg.connect_timeout, cfg.read_timeout),
            {v: Timeouts(t.connect, t.read) for v, t in cfg.vendor_timeouts.items()},
        )
        self._credentials = credentials or (lambda cls: load_credentials(cls, cfg))
        self._vendors: dict[str, tuple[Any, Vendor]] = {}
        policy = CooldownPolicy(cfg.cooldown_failures, cfg.cooldown_window_s, cfg.cooldown_s)
        self.health = health or (
            DynamoHealthBook(cfg.state_table, policy) if cfg.state_table else MemoryHealthBook(policy)
        )
        interval = cfg.latency_sample_interval_s
        self.latency = latency or (
            DynamoLatencyBook(cfg.state_table, sample_interval_s=interval)
            if cfg.state_table
            else MemoryLatencyBook(sample_interval_s=interval)
        )
        self.router = Router(self.health, self._vendor, RetryPolicy(max_retries=cfg.max_retries), latency=self.latency)

    # --- operations -------------------------------------------------------------------

    def compare(self, req: CompareRequest, caller: Caller) -> CompareResponse:
        call = Call(Operation.COMPARE, caller)
        return self._run(call, lambda: self._compare(req, call))

    def detect(self, req: DetectRequest, caller: Caller) -> DetectResponse:
        call = Call(Operation.DETECT, caller)
        return self._run(call, lambda: self._detect(req, call))

    def features(self, req: FeaturesRequest, caller: Caller) -> FeaturesResponse:
        call = Call(Operation.FEATURES, caller)
        return self._run(call, lambda: self._features(req, call))

    def verify_identity(self, req: VerifyIdentityRequest, caller: Caller) -> VerifyIdentityResponse:
        call = Call(Operation.VERIFY_IDENTITY, caller)
        return self._run(call, lambda: self._verify_identity(req, call))

    def result(self, request_id: str, tenant: str | None) -> ResultView:
        """The caller's own record; another tenant's is NotFound, as an unknown id."""
        return self.store.owned(request_id, tenant).view()

    def erase(self, request_id: str, tenant: str | None) -> None:
        """Erase the caller's record and its Idempotency-Key record (else a repeat of the
        call would replay the erased answer). Vendors keep what they keep: not ours."""
        record = self.store.owned(request_id, tenant)
        assert record.tenant is not None
        if record.idempotency_id is not None:
            from facegate import idempotency

            idempotency.erase(record.idempotency_id, self.cfg)
        self.store.delete(request_id, record.tenant)

    def vendors(self) -> VendorsResponse:
        infos = []
        for vid in vendor_ids():
            cls = vendor_class(vid)
            infos.append(
                VendorInfo(
                    id=vid,
                    name=cls.name,
                    operations=sorted(cls.operations, key=list(Operation).index),
                    configured=is_configured(cls, self.cfg),
                    default=vid == self.cfg.default_vendor,
                    health=self.health.health(vid).as_dict(),
                )
            )
        return VendorsResponse(vendors=infos, default_vendor=self.cfg.default_vendor)

    def log_failure(self, operation: Operation, caller: Caller, error: FacegateError) -> None:
        """Record a failure that happened before the service ran (a batch line that does
        not parse, an item no delivery finished); nothing if the call has its record."""
        caller.log.record(Call(operation, caller), error, self.store)

    # --- the operations' bodies ------------------------------------------------------

    def _compare(self, req: CompareRequest, call: Call) -> CompareResponse:
        plan = self._plan(call.operation, req)
        images = self._images([req.image1, req.image2], call, plan)
        self._prescreen(call, req, plan, images, ["image1", "image2"])

        def attempt(vendor: Vendor, planned: Planned) -> CompareOutcome:
            refs = images.refs_for(vendor)
            return vendor.compare(refs[0], refs[1], self._ctx(call, planned, req.security_level))

        if req.consensus is None:
            vendor, outcome = self.router.first(plan, attempt, *self._routed(call))
            return CompareResponse(
                **self._verdict(vendor.id, outcome, req.security_level),
                **self._common(call, vendor.id, outcome),
            )
        return self._consensus(req, call, plan, attempt)

    def _consensus(
        self, req: CompareRequest, call: Call, plan: list[Planned], attempt: Callable[[Vendor, Planned], CompareOutcome]
    ) -> CompareResponse:
        """Ask every vendor at once; combine the answers by the request's rule. A caller
        error from any vendor (e.g. no face) is the answer: the request is at fault."""
        assert req.consensus is not None
        results = self.router.every(plan, attempt, *self._routed(call))
        verdicts, answered = [], []
        for vid, _, result in results:
            if isinstance(result, FacegateError):
                verdicts.append(VendorVerdict(vendor=vid, error=ErrorBody(**result.body()), billed=result.billed))
                continue
            v = self._verdict(vid, result, req.security_level)
            answered.append(v)
            verdicts.append(
                VendorVerdict(vendor=vid, vendor_request_id=result.vendor_request_id, billed=result.billed, **v)
            )
        caller_errors = [r for _, _, r in results if isinstance(r, CallerError)]
        if caller_errors:
            raise caller_errors[0]
        if not answered:
            raise next(r for _, _, r in results if isinstance(r, FacegateError))
        decision = combine([v["decision"] for v in answered], len(plan), req.consensus.rule)

        def mean(key: str) -> float:
            total: float = sum(v[key] for v in answered)
            return round(total / len(answered), 4)

        call.consensus_rule, call.consensus = req.consensus.rule, verdicts
        return CompareResponse(
            decision=decision,
            match=None if decision == "uncertain" else decision == "match",
            similarity=mean("similarity"),
            threshold=mean("threshold"),
            security_level=req.security_level,
            vendor_score=None,
            request_id=call.caller.request_id,
            operation=call.operation,
            vendor="+".join(vid for vid, _, r in results if not isinstance(r, FacegateError)),
            latency_ms=call.caller.elapsed_ms(),
            billed=call.attempts.billed(),
            attempts=call.attempts.items,
            consensus_rule=req.consensus.rule,
            verdicts=verdicts,
        )

    def _verify_identity(self, req: VerifyIdentityRequest, call: Call) -> VerifyIdentityResponse:
        from facegate.identity import (
            fingerprint,
            mask_id_number,
            mask_name,
            validate_id_number,
            validate_name,
        )

        # Identity first: an invalid ID number must never reach a (billing) vendor.
        identity = Identity(name=validate_name(req.name), id_number=validate_id_number(req.id_number))
        call.name_masked = mask_name(identity.name)
        call.id_number_masked = mask_id_number(identity.id_number)
        call.id_number_hmac = fingerprint(identity.id_number, pepper=self._pepper())
        plan = self._plan(call.operation, req)
        images = self._images([req.image], call, plan)
        self._prescreen(call, req, plan, images, ["image"], single_face=True)

        def attempt(vendor: Vendor, planned: Planned) -> CompareOutcome:
            ctx = self._ctx(call, planned, req.security_level)
            return vendor.verify_identity(identity, images.refs_for(vendor)[0], ctx)

        vendor, outcome = self.router.first(plan, attempt, *self._routed(call))
        return VerifyIdentityResponse(
            **self._verdict(vendor.id, outcome, req.security_level),
            **self._common(call, vendor.id, outcome),
            name_masked=call.name_masked,
            id_number_masked=call.id_number_masked,
        )

    def _detect(self, req: DetectRequest, call: Call) -> DetectResponse:
        plan = self._plan(call.operation, req)
        images = self._images([req.image], call, plan)

        def attempt(vendor: Vendor, planned: Planned) -> DetectOutcome:
            return vendor.detect(images.refs_for(vendor)[0], req.max_faces, self._ctx(call, planned))

        vendor, outcome = self.router.first(plan, attempt, *self._routed(call))
        faces = [
            Face(box=Box(left=f.left, top=f.top, width=f.width, height=f.height), confidence=f.confidence)
            for f in outcome.faces[: req.max_faces]
        ]
        call.face_count = len(faces)
        width, height = images.size(0) or (None, None)
        return DetectResponse(
            faces=faces,
            face_count=len(faces),
            image_width=width,
            image_height=height,
            **self._common(call, vendor.id, outcome),
        )

    def _features(self, req: FeaturesRequest, call: Call) -> FeaturesResponse:
        plan = self._plan(call.operation, req)
        images = self._images([req.image], call, plan)
        self._prescreen(call, req, plan, images, ["image"])

        def attempt(vendor: Vendor, planned: Planned) -> FeaturesOutcome:
            return vendor.features(images.refs_for(vendor)[0], self._ctx(call, planned))

        vendor, outcome = self.router.first(plan, attempt, *self._routed(call))
        call.dimension = len(outcome.embedding)
        return FeaturesResponse(
            embedding=outcome.embedding,
            dimension=len(outcome.embedding),
            model=outcome.model,
            **self._common(call, vendor.id, outcome),
        )

    def _images(self, inputs: list[ImageInput], call: Call, plan: list[Planned]) -> RequestImages:
        """The request's images, every one checked (and read, unless a URL) for every
        planned vendor before any is called; their fingerprints go to the record."""
        images = RequestImages(inputs, [p.vendor_class for p in plan], self.cfg, call.caller.deadline)
        call.fingerprints.extend(images.fingerprints)
        return images

    def _prescreen(
        self,
        call: Call,
        req: CompareRequest | FeaturesRequest | VerifyIdentityRequest,
        plan: list[Planned],
        images: RequestImages,
        labels: list[str],
        single_face: bool = False,
    ) -> None:
        """Screen the images facegate holds on the built-in detector (``facegate.prescreen``)
        before the first paid vendor is called; a refusal is the caller's 422, nothing sent.
        Not when the plan starts with the free built-in engine (it detects anyway)."""
        from facegate import prescreen

        mode = prescreen.mode_for(self.cfg.prescreen, req.prescreen)
        consensus = getattr(req, "consensus", None) is not None
        paid = [p.id for p in plan if p.id != "local"]
        if mode == "off" or not paid or (not consensus and plan[0].id == "local"):
            return
        avoided = paid if consensus else [plan[0].id]  # the calls a refusal saves
        if not engine_available():
            call.prescreen = PrescreenNote(outcome="skipped", check="engine_unavailable", mode=mode, screened=0, ms=0)
            observability.logger.warning("prescreen skipped: the built-in engine is not installed in this function")
            observability.record_prescreen_skipped()
            return
        started, screened = time.monotonic(), 0
        for i, label in enumerate(labels):
            image = images.held(i)
            if image is None:  # a URL the vendor fetches itself, or a face token: nothing to look at
                continue
            screened += 1
            refusal = prescreen.screen(image, mode, single_face).refusal
            if refusal is not None:
                ms = int((time.monotonic() - started) * 1000)
                call.prescreen = PrescreenNote(
                    outcome="refused", check=refusal.check, image=label, mode=mode, screened=screened, ms=ms,
                    avoided=avoided,
                )  # fmt: skip
                observability.record_prescreen_refused(refusal.check, avoided)
                raise prescreen.error_for(refusal, label, avoided)
        ms = int((time.monotonic() - started) * 1000)
        call.prescreen = PrescreenNote(outcome="passed", mode=mode, screened=screened, ms=ms)

    # --- vendor choice, routing -------------------------------------------------------

    def _plan(self, op: Operation, req: Routing) -> list[Planned]:
        """The vendors to try, in order, each checked and its options validated, before
        anything is called."""
        consensus = getattr(req, "consensus", None)
        if consensus is not None:
            ids = list(consensus.vendors)
        else:
            ids = [req.vendor or self._default_vendor(op)]
            if req.fallback:  # the caller's own list: a vendor in it that lacks the operation is an error
                ids += [v for v in req.fallback if v not in ids]
            elif not req.vendor:  # the stage's default order serves every operation: skip what does not fit
                ids += [v for v in self.cfg.fallback if v not in ids and op in vendor_class(v).operations]
        unknown = set(req.options) - set(ids)
        if unknown:
            raise InvalidOption(
                "options are keyed by vendor id and must name a vendor this request may use: "
                + ", ".join(sorted(unknown))
            )
        plan = []
        for i, vid in enumerate(ids):
            cls = vendor_class(vid)
            if op not in cls.operations:
                where = (
                    "vendor"
                    if i == 0 and consensus is None
                    else "fallback vendor"
                    if consensus is None
                    else "consensus vendor"
                )
                raise UnsupportedOperation(f"{where} '{vid}' does not offer {op.value}", vendor=vid)
            opts = req.options.get(vid, {})
            if not isinstance(opts, dict):
                raise InvalidOption(f"options for vendor '{vid}' must be an object")
            plan.append(Planned(cls, cls.parse_options(opts)))
        if consensus is not None:
            return plan
        return arrange(
            plan, req.strategy, prices=self.cfg.vendor_prices, currency=self.cfg.price_currency, latency=self.latency
        )

    @staticmethod
    def _routed(call: Call) -> tuple[Attempts, float | None, VendorGate | None]:
        """What the router needs of a call besides the plan: where its attempts go, its
        deadline, and who is told of each vendor call."""
        return call.attempts, call.caller.deadline, call.caller.gate

    def _pepper(self) -> str | None:
        """The stage's pepper for ID-number HMACs, from its secret (cached like the
        vendors' credentials); None falls back to FACEGATE_PEPPER, then to nothing."""
        if not self.cfg.pepper_secret:
            return None
        from aws_lambda_powertools.utilities import parameters

        pepper: str = parameters.get_secret(self.cfg.pepper_secret, max_age=self.cfg.secrets_max_age)
        return pepper

    def _default_vendor(self, op: Operation) -> str:
        """The stage's default vendor, or for an operation it lacks (verify-identity on
        the built-in engine) the first vendor that offers it."""
        default: str = self.cfg.default_vendor
        if op in vendor_class(default).operations:
            return default
        return next(v for v in vendor_ids() if op in vendor_class(v).operations)

    def _ctx(self, call: Call, planned: Planned, security_level: SecurityLevel = "normal") -> CallContext:
        return CallContext(
            now=now(),
            nonce=_secrets.token_hex(16),
            request_id=call.caller.request_id,
            security_level=security_level,
            options=planned.options,
            deadline=call.caller.deadline,
            response_max_skew_s=self.cfg.zoloz_response_max_skew_s,  # only ZOLOZ signs its response time
        )

    def _vendor(self, cls: type[Vendor]) -> Vendor:
        creds = self._credentials(cls)
        if cls.credentials_model is not None and creds is None:
            raise VendorNotConfigured(f"vendor '{cls.id}' is not configured", vendor=cls.id)
        cached = self._vendors.get(cls.id)
        if cached is not None and cached[0] == creds:
            return cached[1]
        vendor = cls(creds, self.transport) if issubclass(cls, HttpVendor) else cls(creds)
        self._vendors[cls.id] = (creds, vendor)
        return vendor

    # --- results ---------------------------------------------------------------------

    def _verdict(self, vendor_id: str, outcome: CompareOutcome, level: SecurityLevel) -> dict[str, Any]:
        overrides = self.cfg.thresholds.get(vendor_id)
        decision, threshold = decide(outcome, level, overrides)
        observability.record_answer(vendor_id, decision)
        return {
            "decision": decision,
            "match": None if decision == "uncertain" else decision == "match",
            "similarity": round(min(1.0, max(0.0, outcome.similarity)), 4),
            "threshold": round(threshold, 4),
            "security_level": level,
            "vendor_score": outcome.vendor_score,
        }

    def _common(self, call: Call, vendor_id: str, outcome: Any) -> dict[str, Any]:
        extra = getattr(outcome, "extra", None) or {}
        return {
            "request_id": call.caller.request_id,
            "operation": call.operation,
            "vendor": vendor_id,
            "latency_ms": call.caller.elapsed_ms(),
            "vendor_request_id": outcome.vendor_request_id,
            "billed": call.attempts.billed(),
            "attempts": call.attempts.items,
            **({"face_tokens": extra["face_tokens"]} if "face_tokens" in extra else {}),
        }

    def _run[R: BaseModel](self, call: Call, body: Callable[[], R]) -> R:
        try:
            response = body()
        except FacegateError as e:
            call.caller.log.record(call, e, self.store)
            raise
        except Exception as e:
            call.caller.log.record(call, InternalError("internal error"), self.store)
            raise e
        call.caller.log.record(call, response, self.store)
        return response


def _record_of(call: Call, outcome: BaseModel | FacegateError, store: ResultsStore) -> ResultRecord:
    """The record, field by field: what the answer says (none of it for an error), what
    the error says, and all the call's bookkeeping."""
    error = outcome if isinstance(outcome, FacegateError) else None
    r = outcome.model_dump() if isinstance(outcome, BaseModel) else {}
    created = now()
    return ResultRecord(
        request_id=call.caller.request_id,
        operation=call.operation,
        status="ok" if error is None else "error",
        http_status=200 if error is None else error.status,
        vendor=r.get("vendor") or (error.vendor if error else None),
        decision=r.get("decision"),
        similarity=r.get("similarity"),
        threshold=r.get("threshold"),
        security_level=r.get("security_level"),
        vendor_score=r.get("vendor_score"),
        vendor_request_id=r.get("vendor_request_id"),
        billed=call.attempts.billed() if call.attempts.items else (error.billed if error else None),
        latency_ms=call.caller.elapsed_ms(),
        error_code=error.code if error else None,
        vendor_code=error.vendor_code if error else None,
        image_sha256=call.fingerprints,
        face_count=call.face_count,
        dimension=call.dimension,
        name_masked=call.name_masked,
        id_number_masked=call.id_number_masked,
        id_number_hmac=call.id_number_hmac,
        consensus_rule=call.consensus_rule,
        consensus=None if call.consensus is None else [ConsensusVote.of(v) for v in call.consensus],
        attempts=call.attempts.items,
        prescreen=call.prescreen,
        tenant=call.caller.tenant,
        idempotency_id=call.caller.idempotency_id,
        batch_id=call.caller.batch_id,
        batch_line=call.caller.batch_line,
        created_at=created,
        expires_at=store.expiry(created),
    )


@cache
def engine_available() -> bool:
    """Is the built-in engine installed in this function (its layer and models)? Asked once
    per container: pre-screening needs it, and is skipped without it."""
    from facegate import engine

    return engine.available()


@cache
def default_service() -> Service:
    return Service()
