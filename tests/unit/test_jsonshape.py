"""The JSON depth checks against a plain recursive reference, on random documents (strings with quotes,
braces and escapes included, so the text scanner's string handling is exercised)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit import jsonshape

tricky_text = st.text(alphabet='ab{}[]":,\\ ', max_size=6)
documents = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=25,
)


def depth(value) -> int:
    """Containers count a level each; scalars none (the reference the checks must agree with)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=documents, limit=st.integers(1, 6))
def test_text_scan_and_value_walk_agree_with_the_reference(value, limit: int) -> None:
    text = json.dumps(value)
    deep, _key = jsonshape.too_deep(text, max_depth=limit)
    assert deep == (depth(value) > limit)
    assert (jsonshape.problem(value, max_depth=limit) is not None) == (depth(value) > limit)


@settings(max_examples=200, deadline=None)
@given(fields=st.dictionaries(tricky_text, documents, min_size=1, max_size=4), limit=st.integers(1, 5))
def test_the_scan_names_the_top_level_key_it_went_too_deep_under(fields, limit: int) -> None:
    text = json.dumps(fields)
    deep, key = jsonshape.too_deep(text, max_depth=limit + 1)
    offenders = [name for name, value in fields.items() if depth(value) > limit]
    assert deep == bool(offenders)
    if deep:
        assert key == json.dumps(offenders[0])[1:-1], "the first field, as it is written in the text"


@pytest.mark.parametrize("depth_", [33, 1000, 100_000])
def test_hostile_depths_are_found_without_recursion(depth_: int) -> None:
    text = '{"input": ' + "[" * depth_ + "]" * depth_ + "}"
    assert jsonshape.too_deep(text, max_depth=33) == (True, "input")


def test_nul_anywhere_is_a_problem() -> None:
    assert jsonshape.problem({"a": ["ok", {"b\x00": 1}]}) == "must not contain NUL characters"
    assert jsonshape.problem({"a": ["ok", {"b": "x\x00"}]}) == "must not contain NUL characters"
    assert jsonshape.problem({"a": ["ok"]}) is None
