"""What happened to a trigger that someone may want to hear about, and the one door it leaves by.

Why a registry here, under every app: the events arise in the lower layers — a run's end and the failure
streak in `schedules.services` (`trigger_note_end`, the auto-pause), skipped and missed slots in the fire
path (`executions.events`) — while the app that delivers them (`notifications`) sits above both. The
emitters call `emit_after_commit`; the listener registers itself here from its `AppConfig.ready`. Nothing
below imports the app above.

The cost must stay near zero on the bulk paths (a fire batch records thousands of rows): an emitter first
asks `wanted()` — the event kinds anyone subscribed to, which a listener answers from a cache — and builds
nothing when the answer is empty. Events leave only after the transaction that recorded them commits (a
rolled-back fire announces nothing), and a listener that fails costs a log line, never the fire."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from django.db import transaction

from toolkit.enums import Choices

logger = logging.getLogger(__name__)


class EventKind(Choices):
    """What a subscription listens for; `failures` is decided from a `failed` event's streak."""

    FAILED = "failed", "A run failed or timed out"
    FAILURES = "failures", "N consecutive failures (the streak reached the subscription's threshold)"
    RECOVERED = "recovered", "Recovered: the first success after failures"
    AUTO_PAUSED = "auto_paused", "Auto-paused after consecutive failures"
    SKIPPED = "skipped", "Slots recorded as skipped (optionally only some reasons)"
    MISSED = "missed", "Missed slots recorded by catch-up (or started past the misfire grace)"


@dataclass(frozen=True)
class Event:
    """One thing that happened to one trigger. Plain values only, so it travels in a task message.

    `count` is how many slots a `skipped`/`missed` event stands for (one per trigger, kind and reason per
    batch); `failures` the streak after a `failed` run (or before a `recovered` one); `reason` the skip
    reason or the pause note; `detail` the run's error (already scrubbed by the launcher)."""

    kind: str
    trigger_id: str
    owner_id: int
    at: str
    reason: str = ""
    failures: int = 0
    count: int = 1
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__ if name in raw})

    @classmethod
    def of(cls, kind: str, *, trigger: Any, at: datetime, **fields: Any) -> Event:
        """An event about a trigger row (anything with `pk` and `owner_id`)."""
        return cls(
            kind=str(kind), trigger_id=str(trigger.pk), owner_id=trigger.owner_id, at=at.isoformat(), **fields
        )


class Listener(Protocol):
    def wanted(self) -> frozenset[str]:
        """The event kinds someone listens for now (cheap: cached); empty when nobody does."""

    def __call__(self, events: Sequence[Event]) -> None:
        """Take committed events (after commit, outside the emitter's transaction)."""


_listeners: list[Listener] = []


def listen(listener: Listener) -> None:
    """Register a listener (idempotent: `ready()` may run twice in tests)."""
    if listener not in _listeners:
        _listeners.append(listener)


def unlisten(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def wanted() -> frozenset[str]:
    """The kinds worth building events for. No listener, or nobody subscribed: empty, and no I/O when no
    listener is registered. A listener whose cache cannot be read is taken as wanting nothing: a fire
    must never fail for a notification."""
    kinds: set[str] = set()
    for listener in _listeners:
        try:
            kinds |= listener.wanted()
        except Exception:
            logger.warning("event listener %r could not say what it wants", listener, exc_info=True)
    return frozenset(kinds)


def emit_after_commit(events: Sequence[Event]) -> None:
    """Hand `events` to every listener once the current transaction commits (at once outside one)."""
    if not events or not _listeners:
        return
    batch = list(events)

    def deliver() -> None:
        for listener in list(_listeners):
            try:
                listener(batch)
            except Exception:
                logger.warning("event listener %r failed on %d events", listener, len(batch), exc_info=True)

    transaction.on_commit(deliver, robust=True)
