"""The context a log line is about (`trigger_id`, `execution_id`, `slot`, `attempt`, …), carried by a
`ContextVar` so it follows the code that set it (a Celery task, a request, a thread) and never leaks
between tasks. Here, below the apps, so the fire and launch paths can bind what they are working on;
`operations.logs` copies it onto every record and formats it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any

#: The fields a line may carry about the run it concerns, in the order JSON lines show them.
CONTEXT_FIELDS = ("trigger_id", "execution_id", "slot", "attempt", "task_id", "task")

_context: ContextVar[Mapping[str, Any]] = ContextVar("scheduler_log_context", default=MappingProxyType({}))


# --- Context ----------------------------------------------------------------------------------------------


def current_context() -> Mapping[str, Any]:
    return _context.get()


def push_context(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add fields to the context (None values are left out); undo with `pop_context(token)`."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    return _context.set(MappingProxyType(merged))


def pop_context(token: Token[Mapping[str, Any]]) -> None:
    _context.reset(token)


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """`with logs.bind(execution_id=..., attempt=2):` — every line logged inside carries these fields."""
    token = push_context(**fields)
    try:
        yield
    finally:
        pop_context(token)
