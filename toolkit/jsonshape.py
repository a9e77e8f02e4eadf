"""How deep user JSON may nest, checked without recursion (pure: no Django).

Workflow inputs and metadata are records, not trees. A limit well below Python's recursion limit keeps
every later step (parsing, serialising, storing, the launcher's encoder, the admin's pretty-printer) from
running out of stack on a hostile document, and a check written as recursion would itself be the
RecursionError it guards against: both checks here walk with an explicit stack or a counter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Levels a JSON value (`input`, `metadata`) may nest; the request body adds one level around them.
JSON_MAX_DEPTH = 32


def problem(value: Any, *, max_depth: int = JSON_MAX_DEPTH) -> str | None:
    """What is wrong with a decoded JSON value's shape, or None: nesting past `max_depth`, or a NUL
    character (PostgreSQL rejects \\u0000 in text and jsonb) in any key or string."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return "must not contain NUL characters"
            continue
        if not isinstance(node, Mapping | list | tuple):
            continue
        if depth > max_depth:
            return f"is nested too deeply (at most {max_depth} levels)"
        children = [*node.keys(), *node.values()] if isinstance(node, Mapping) else list(node)
        stack.extend((child, depth + 1) for child in children)
    return None


def too_deep(text: str, *, max_depth: int) -> tuple[bool, str]:
    """Scan JSON text (before parsing it, which recurses) for nesting past `max_depth`. Returns whether it
    is too deep and the top-level key it happened under ("" when not under one), so the 400 can name the
    field. Strings are skipped with their escapes; the text need not be valid JSON (the parser says so)."""
    depth = 0
    in_string = escaped = False
    string_start = 0
    last_string = ""
    key = ""
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
                last_string = text[string_start:index]
            continue
        if char == '"':
            in_string, string_start = True, index + 1
        elif char == ":" and depth == 1:
            key = last_string
        elif char in "{[":
            depth += 1
            if depth > max_depth:
                return True, key
        elif char in "}]":
            depth -= 1
        elif char == "," and depth == 1:
            key = ""
    return False, ""
