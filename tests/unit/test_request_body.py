"""request_body's documented limits, just under and just over: nesting (MAX_DEPTH = 32)
and a number's length (MAX_NUMBER_CHARS = 32)."""

from __future__ import annotations

import pytest

from facegate.errors import InvalidRequest
from facegate.request_body import MAX_DEPTH, MAX_NUMBER_CHARS, loads


def nested(depth: int) -> str:
    """An object ``depth`` containers deep: the body itself is level 1."""
    return '{"a":' * depth + "1" + "}" * depth


def test_the_documented_limits():
    assert (MAX_DEPTH, MAX_NUMBER_CHARS) == (32, 32)


def test_a_body_nested_exactly_max_depth_is_read():
    value = loads(nested(MAX_DEPTH))
    for _ in range(MAX_DEPTH - 1):
        value = value["a"]
    assert value == {"a": 1}


def test_a_body_nested_one_deeper_is_refused():
    with pytest.raises(InvalidRequest, match=f"nested more than {MAX_DEPTH} levels"):
        loads(nested(MAX_DEPTH + 1))


@pytest.mark.parametrize(
    "number",
    ["9" * MAX_NUMBER_CHARS, "-" + "9" * (MAX_NUMBER_CHARS - 1), "1." + "5" * (MAX_NUMBER_CHARS - 2)],
    ids=["int", "negative-int", "float"],
)
def test_a_number_of_exactly_max_chars_is_read(number):
    assert loads(f'{{"n":{number}}}')["n"] == (float(number) if "." in number else int(number))


@pytest.mark.parametrize(
    "number",
    ["9" * (MAX_NUMBER_CHARS + 1), "-" + "9" * MAX_NUMBER_CHARS, "1." + "5" * (MAX_NUMBER_CHARS - 1)],
    ids=["int", "negative-int", "float"],
)
def test_a_number_one_char_longer_is_refused(number):
    with pytest.raises(InvalidRequest):
        loads(f'{{"n":{number}}}')
