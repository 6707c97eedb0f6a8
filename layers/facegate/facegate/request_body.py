"""The request body, checked before anything reads it.

API Gateway hands a function whatever bytes the caller sent. Python's own JSON
reading has sharp edges that would otherwise surface as 500s: a body that is not
UTF-8 (``UnicodeDecodeError``), deep nesting (``RecursionError``), an integer of
more than 4300 digits (``ValueError``, ``sys.int_info.str_digits_check_threshold``),
and it quietly accepts what JSON does not define: ``NaN``/``Infinity``, ``1e999``
(→ inf), a repeated key (the last one wins) and ``"\\ud800"`` escapes, which make a
``str`` that cannot be encoded back to UTF-8 later. Here each of those is the
caller's 4xx, in two steps:

* ``checked_event`` (``facegate.api.handle``, before the resolver or the
  Idempotency-Key sees the event): the media type must be JSON in UTF-8, not
  compressed; the body is decoded strictly (base64 first when API Gateway marked it
  so) and handed on as text.
* ``loads`` (the resolver's JSON deserializer, so the body is parsed once): strict
  JSON with bounded nesting and numbers, unique keys, a JSON object at the top, no
  NUL characters and no unpaired surrogates in any string.

The checks cost next to nothing on the hot path (megabytes of base64 in one string):
an ASCII string is tested with ``isascii`` (constant time) and one ``in`` scan.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any

from facegate.errors import InvalidRequest, MalformedJson, UnsupportedMediaType

MAX_DEPTH = 32  # the deepest request the models take is 4; options get some room
MAX_NUMBER_CHARS = 32  # no field takes a number anywhere near this long
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def checked_event(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` with its body as checked UTF-8 text (``isBase64Encoded`` false) and
    its JSON Content-Type in canonical form; raises a CallerError otherwise. Events
    without a body, or for methods that take none, are returned as they are."""
    if event.get("httpMethod") not in _BODY_METHODS or not event.get("body"):
        return event
    headers = event.get("headers") or {}
    _check_media_type(headers)
    text = event["body"]
    try:
        if event.get("isBase64Encoded"):
            text = base64.b64decode(text, validate=True).decode("utf-8")
        elif not text.isascii():  # constant time; the usual JSON of base64 images is ASCII
            text.encode("utf-8")  # a str from the event may still hold lone surrogates
    except (binascii.Error, ValueError):  # UnicodeError is a ValueError
        raise MalformedJson("the request body is not UTF-8 text") from None
    # Powertools reads JSON only under a lower-case "application/json…" type.
    canonical = {k: v for k, v in headers.items() if k.lower() != "content-type"} | {"Content-Type": "application/json"}
    return {**event, "body": text, "isBase64Encoded": False, "headers": canonical}


def _check_media_type(headers: Mapping[str, str | None]) -> None:
    from email.message import Message

    lower = {k.lower(): v for k, v in headers.items() if v is not None}
    if lower.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
        raise UnsupportedMediaType("compressed request bodies are not accepted: send the JSON uncompressed")
    if "content-type" not in lower:
        return  # read as JSON, as Powertools does
    parsed = Message()
    parsed["Content-Type"] = lower["content-type"]
    charset = parsed.get_param("charset")
    if parsed.get_content_type() != "application/json" or (
        charset is not None and str(charset).lower() not in ("utf-8", "utf8")
    ):
        raise UnsupportedMediaType("send the request body as application/json in UTF-8")


def loads(text: str) -> Any:
    """Strict JSON for a request body; a CallerError for anything else."""
    try:
        value = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
        )
    except json.JSONDecodeError as e:
        # Position and reason only: the message never quotes the body.
        raise MalformedJson(
            f"the request body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
        ) from None
    except RecursionError:
        raise InvalidRequest(f"the request body is nested more than {MAX_DEPTH} levels deep") from None
    if not isinstance(value, dict):
        raise InvalidRequest("the request body must be a JSON object")
    _check_tree(value)
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # which one, for the message
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise InvalidRequest(f"the request body repeats the key {_quoted(k)}")
            seen.add(k)
    return obj


def _int(s: str) -> int:
    if len(s) > MAX_NUMBER_CHARS:
        raise InvalidRequest(f"a number in the request body is longer than {MAX_NUMBER_CHARS} characters")
    return int(s)


def _float(s: str) -> float:
    if len(s) > MAX_NUMBER_CHARS or not math.isfinite(f := float(s)):
        raise InvalidRequest("a number in the request body is out of range")
    return f


def _constant(s: str) -> Any:
    raise MalformedJson(f"the request body is not valid JSON ({s} is not a JSON number)")


def _check_tree(root: dict[str, Any]) -> None:
    """Depth, and the strings' content, without recursion (the tree is the caller's)."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise InvalidRequest(f"the request body is nested more than {MAX_DEPTH} levels deep")
            for k, v in value.items():
                _check_text(k)
                stack.append((v, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                raise InvalidRequest(f"the request body is nested more than {MAX_DEPTH} levels deep")
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str):
            _check_text(value)


def _check_text(s: str) -> None:
    if "\x00" in s:
        raise InvalidRequest("text in the request body must not contain NUL characters")
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(
                "text in the request body must not contain unpaired surrogates (\\ud800-\\udfff escapes)"
            ) from None


def _quoted(key: str) -> str:
    return json.dumps(key[:64] + ("…" if len(key) > 64 else ""))
