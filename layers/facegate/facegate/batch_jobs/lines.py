"""What the worker and the dead-letter drain both do to one line: claim it, read it,
recover an outcome an earlier attempt logged, store its outcome or give it back."""

from __future__ import annotations

from collections.abc import Iterable

from facegate import manifest
from facegate.batch import ItemMessage, ManifestUnreadable, ReportLine, error_body
from facegate.batch_jobs.context import LEASE_MARGIN_S, BatchContext, Static, count, count_billed
from facegate.batch_jobs.outcomes import error_line, recovered_line
from facegate.batch_records import Claim
from facegate.errors import CallerError, FacegateError, InvalidRequest, NotFound
from facegate.models import Operation
from facegate.observability import logger
from facegate.service import Caller

# One ranged GET reads the lines of an invocation's messages together when they lie within
# this many bytes of the manifest (ten lines naming images as S3 keys are ~2 KB; ten with
# inline base64 images may be megabytes, and are read one by one).
READ_AHEAD_MAX_BYTES = 1024 * 1024


class Lines:
    def __init__(self, ctx: BatchContext):
        self.ctx = ctx
        self._ahead: tuple[ItemMessage, ...] = ()  # this invocation's messages
        self._read: dict[str, tuple[int, bytes]] = {}  # batch id → (offset, bytes) read for them

    def read_ahead(self, msgs: Iterable[ItemMessage]) -> None:
        """The messages of one invocation: the first of their lines parsed reads all of
        them in one ranged GET (when close together: SendMessageBatch queued them ten at
        a time, in manifest order), not one GET per line. Replaces the last invocation's."""
        self._ahead = tuple(msgs)
        self._read.clear()

    def _line_bytes(self, msg: ItemMessage, static: Static) -> bytes:
        offset, data = self._read.get(msg.batch_id, (0, b""))
        if not (offset <= msg.start and msg.end <= offset + len(data)):
            offset, data = self._read_range(msg, static)
        return data[msg.start - offset : msg.end - offset]

    def _read_range(self, msg: ItemMessage, static: Static) -> tuple[int, bytes]:
        """The bytes of ``msg``'s line, and of the other lines read ahead with it if they
        are close (no more than READ_AHEAD_MAX_BYTES, no more than half of it gaps)."""
        together = [
            m for m in self._ahead if m.batch_id == msg.batch_id and 0 < m.end - m.start <= manifest.MAX_LINE_BYTES
        ]
        lo, hi = msg.start, msg.end
        if msg in together:
            lo, hi = min(m.start for m in together), max(m.end for m in together)
            if hi - lo > READ_AHEAD_MAX_BYTES or hi - lo > 2 * sum(m.end - m.start for m in together):
                lo, hi = msg.start, msg.end
        data = self.ctx.get_manifest(static.ref, byte_range=f"bytes={lo}-{hi - 1}")["Body"].read()
        if (lo, hi) != (msg.start, msg.end) and len(data) == hi - lo:
            self._read[msg.batch_id] = (lo, data)
        return lo, data

    def claim(self, msg: ItemMessage, request_id: str, remaining_s: float) -> Claim:
        """The line for this delivery (no outcome yet, no live lease), leased until the
        invocation is surely over."""
        now = self.ctx.clock()
        return self.ctx.store.claim_line(
            msg.batch_id,
            msg.line,
            request_id,
            now,
            now + remaining_s + LEASE_MARGIN_S,
            expires_at=self.ctx.expires(now),
        )

    def parse(self, msg: ItemMessage, static: Static) -> manifest.ParsedLine:
        if msg.end - msg.start > manifest.MAX_LINE_BYTES:
            return manifest.ParsedLine(
                error=InvalidRequest(
                    f"the line is longer than {manifest.MAX_LINE_BYTES // (1024 * 1024)} MiB; "
                    "give images as S3 keys or URLs"
                )
            )
        if msg.end <= msg.start:
            return manifest.ParsedLine(error=InvalidRequest("the line is empty"))
        try:
            raw = self._line_bytes(msg, static)
        except ManifestUnreadable as e:
            return manifest.ParsedLine(error=e)
        return manifest.parse_line(static.format, raw, static.header)

    def peek(self, msg: ItemMessage) -> manifest.ParsedLine:
        """The line's operation and caller id, as far as they can be read."""
        static = self.ctx.static_for(msg.batch_id)
        if static is not None:
            try:
                parsed = self.parse(msg, static)
                return manifest.ParsedLine(operation=parsed.operation, caller_id=parsed.caller_id)
            except Exception:
                logger.debug("line unreadable in the dead-letter drain")
        return manifest.ParsedLine()

    def complete(
        self,
        msg: ItemMessage,
        outcome: ReportLine,
        *,
        billed: tuple[int, int] = (0, 0),
        recovered: bool = False,
    ) -> bool:
        now = self.ctx.clock()
        written = self.ctx.store.complete_line(
            msg.batch_id,
            outcome,
            now,
            billed_calls=billed[0],
            billed_unknown=billed[1],
            recovered=recovered,
            expires_at=self.ctx.expires(now),
        )
        if written:
            count("BatchItemsOk" if outcome.status == "ok" else "BatchItemsFailed")
        return written

    def release(self, msg: ItemMessage, request_id: str, e: FacegateError, *, billed: tuple[int, int]) -> None:
        try:
            self.ctx.store.release_line(
                msg.batch_id,
                msg.line,
                request_id,
                billed_calls=billed[0],
                billed_unknown=billed[1],
                last_error=error_body(e),
            )
        except Exception:
            logger.exception("could not release a batch line", extra={"batch_id": msg.batch_id, "line": msg.line})

    def recover(self, request_ids: Iterable[str], msg: ItemMessage) -> tuple[ReportLine, tuple[int, int]] | None:
        """An outcome an earlier attempt got (and logged) but never stored: no vendor is
        asked again. The caller id is not in the results log; it is read from the line."""
        for rid in reversed(tuple(request_ids)):
            try:
                record = self.ctx.results.get(rid)
            except NotFound:
                continue
            if record.batch_id not in (None, msg.batch_id) or record.batch_line not in (None, msg.line):
                continue
            outcome = recovered_line(record, msg.line)
            if outcome is None:
                continue  # not final: the line is tried again
            outcome.caller_id = self.peek(msg).caller_id
            return outcome, count_billed(record.attempts)
        return None

    def complete_recovered(self, msg: ItemMessage, request_ids: Iterable[str]) -> bool:
        """Store what an earlier attempt got, if it logged a final outcome."""
        recovered = self.recover(request_ids, msg)
        if recovered is None:
            return False
        self.complete(msg, recovered[0], billed=recovered[1], recovered=True)
        return True

    def billed_from_log(self, request_id: str, e: FacegateError) -> tuple[int, int]:
        try:
            return count_billed(self.ctx.results.get(request_id).attempts)
        except Exception:
            if isinstance(e, CallerError) or e.billed is False:
                return (0, 0)
            return (1, 0) if e.billed else (0, 1)

    def fail(self, msg: ItemMessage, request_id: str, error: FacegateError) -> None:
        """End the line with ``error``, logged in the results log unless this attempt's
        record is there already."""
        parsed = self.peek(msg)
        try:
            self.ctx.results.get(request_id)
        except NotFound:
            caller = Caller(request_id=request_id, batch_id=msg.batch_id, batch_line=msg.line)
            self.ctx.operations.log_failure(parsed.operation or Operation.COMPARE, caller, error)
        self.complete(msg, error_line(msg.line, parsed, request_id, error))
