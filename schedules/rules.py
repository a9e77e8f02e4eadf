"""Execution windows, blackouts and excluded dates: whether a trigger may run a slot, and if not, why and
when it could instead. Pure (no Django, Redis or Celery): the fire path and the preview both decide by
:func:`decide`, so what a preview promises is what the fire records.

The rules, per trigger, evaluated in the trigger's own IANA zone:

* **Excluded dates** (a calendar: holidays, company closures): a slot whose *local* date is excluded is
  skipped (``calendar``). Never deferred: a holiday means "not this day", not "later".
* **Blackouts** (maintenance from/until, two instants, half-open ``[start, end)``): a slot inside one is
  skipped (``blackout``) or deferred to its end.
* **Windows** (``Mon-Fri 09:00-17:00``; several may be given, a slot needs to be inside one): a slot
  outside every window is skipped (``outside_window``) or deferred to the next opening. A window whose end
  is not after its start runs overnight into the next day (``22:00-06:00``) and belongs to the day it opens
  on; ``24:00`` is the end of the day.

**Daylight saving.** A window is one unbroken span of instants per day it opens on: from the first instant
whose local wall clock reaches ``start`` to the first instant whose wall clock reaches ``end``. That is the
fixed-local-time rule cron uses (`schedules.timing`): a boundary that falls in a skipped hour (spring
forward) is the first instant after the gap (Berlin 2026-03-29, a window opening 02:30 opens at 03:00 CEST);
a boundary in a repeated hour (fall back) is its first occurrence (a window ending 02:30 on Berlin
2026-10-25 closes at 02:30 CEST, and the second pass of 02:00-02:30 CET is outside it). So a window never
opens twice in a day, and its length is the wall-clock length less a skipped hour or plus a repeated one
only when the transition falls strictly inside it.

**Deferral** moves a run to the first instant that every rule allows (inside a window, outside every
blackout, not on an excluded date), searched at most :data:`DEFER_HORIZON` ahead; when there is none, the
slot is skipped with its reason. The slot stays the run's identity: only its ``not_before`` moves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "BLACKOUT",
    "CALENDAR",
    "DAY_NAMES",
    "DEFER_HORIZON",
    "OUTSIDE_WINDOW",
    "Blackout",
    "RuleError",
    "SlotRules",
    "Verdict",
    "Window",
    "decide",
    "excluded_between",
    "parse_blackouts",
    "parse_windows",
    "resolve_wall",
]

#: Skip reasons (the values of `executions.policies.SkipReason` members of the same meaning).
OUTSIDE_WINDOW = "outside_window"
BLACKOUT = "blackout"
CALENDAR = "calendar"

#: How far ahead a deferred run may move; beyond it the slot is skipped (a window that never opens again,
#: a blackout a year long).
DEFER_HORIZON = timedelta(days=366)
MAX_WINDOWS = 50
MAX_BLACKOUTS = 200

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_INDEX = {name: i for i, name in enumerate(DAY_NAMES)}
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")
_END_OF_DAY = time(0, 0)  # stored as `end_of_day=True`; 24:00 is not a `time`


class RuleError(ValueError):
    """A window or blackout that cannot be read; `message` names the item and what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Window:
    """Days it opens on (0 = Monday), and its local start and end (`end_of_day` for 24:00)."""

    days: frozenset[int]
    start: time
    end: time
    end_of_day: bool = False

    @property
    def overnight(self) -> bool:
        return self.end_of_day or self.end <= self.start

    def as_json(self) -> dict[str, Any]:
        return {
            "days": [DAY_NAMES[d] for d in sorted(self.days)],
            "start": self.start.strftime("%H:%M"),
            "end": "24:00" if self.end_of_day else self.end.strftime("%H:%M"),
        }


@dataclass(frozen=True)
class Blackout:
    """No run in ``[start, end)`` (aware instants)."""

    start: datetime
    end: datetime
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"start": _iso(self.start), "end": _iso(self.end), "note": self.note}


@dataclass(frozen=True)
class SlotRules:
    """Everything :func:`decide` needs about one trigger."""

    zone: ZoneInfo
    windows: tuple[Window, ...] = ()
    blackouts: tuple[Blackout, ...] = ()
    excluded_dates: frozenset[date] = field(default_factory=frozenset)
    defer: bool = False
    calendar_name: str = ""

    @property
    def empty(self) -> bool:
        return not (self.windows or self.blackouts or self.excluded_dates)


@dataclass(frozen=True)
class Verdict:
    """Run the slot (``not_before`` set when deferred), or skip it with ``reason`` (one of the constants
    above). ``detail`` says which rule, in words, for previews and logs."""

    run: bool
    reason: str | None = None
    not_before: datetime | None = None
    detail: str = ""


RUN = Verdict(run=True)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- Reading what users send -----------------------------------------------------------------------------


def _parse_time(value: Any, where: str) -> tuple[time, bool]:
    if not isinstance(value, str) or not _TIME.fullmatch(value.strip()):
        raise RuleError(f"{where}: {value!r} is not a time HH:MM (00:00-23:59, or 24:00 for an end)")
    text = value.strip()
    if text == "24:00":
        return _END_OF_DAY, True
    return time(int(text[:2]), int(text[3:])), False


def _parse_days(value: Any, where: str) -> frozenset[int]:
    """A list of day names (``mon`` … ``sun``), or a string of names and ranges: ``"mon-fri"``,
    ``"mon,wed,fri"``, ``"sat-sun"``. Ranges may wrap (``"fri-mon"``)."""
    items: list[str]
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise RuleError(f"{where}: days must be a list of day names (mon … sun) or a range like 'mon-fri'")
    days: set[int] = set()
    for item in items:
        low, _, high = item.lower().partition("-")
        if low not in _DAY_INDEX or (high and high not in _DAY_INDEX):
            raise RuleError(f"{where}: {item!r} is not a day name (mon, tue, wed, thu, fri, sat, sun)")
        first = _DAY_INDEX[low]
        last = _DAY_INDEX[high] if high else first
        days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    if not days:
        raise RuleError(f"{where}: days must name at least one day")
    return frozenset(days)


def _items(
    value: Any, noun: str, example: str, keys: tuple[str, ...], limit: int
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The objects of a rule list (windows, blackouts), each with the words that name it in an error; the
    list's own shape, its length and each object's keys are checked here, the values by the caller."""
    if not isinstance(value, list):
        raise RuleError(f"must be a list of {noun}s like {example}")
    if len(value) > limit:
        raise RuleError(f"at most {limit} {noun}s")
    needed = [key for key in keys if key != "note"]
    for i, item in enumerate(value, 1):
        where = f"{noun} {i}"
        if not isinstance(item, Mapping):
            raise RuleError(f"{where}: must be an object with {', '.join(needed[:-1])} and {needed[-1]}")
        unknown = sorted(set(item) - set(keys))
        if unknown:
            raise RuleError(f"{where}: {unknown[0]!r} is not a key of a {noun} ({', '.join(keys)})")
        yield where, item


def parse_windows(value: Any) -> tuple[Window, ...]:
    """``[{"days": "mon-fri", "start": "09:00", "end": "17:00"}, …]`` → windows; `RuleError` naming the
    item. ``days`` defaults to every day. A window whose start equals its end is refused (empty or the
    whole day is ambiguous: say ``00:00``-``24:00``)."""
    if value is None:
        return ()
    windows = []
    example = "{'days': 'mon-fri', 'start': '09:00', 'end': '17:00'}"
    for where, item in _items(value, "window", example, ("days", "start", "end"), MAX_WINDOWS):
        days = _parse_days(item.get("days", list(DAY_NAMES)), where)
        start, start_eod = _parse_time(item.get("start"), f"{where} start")
        if start_eod:
            raise RuleError(f"{where} start: 24:00 is only an end")
        end, end_eod = _parse_time(item.get("end"), f"{where} end")
        if not end_eod and end == start:
            raise RuleError(f"{where}: start and end are equal; use 00:00-24:00 for the whole day")
        windows.append(Window(days, start, end, end_eod))
    return tuple(windows)


def _parse_instant(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise RuleError(f"{where}: {value!r} is not an ISO 8601 date-time") from None
    else:
        raise RuleError(f"{where}: must be an ISO 8601 date-time")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RuleError(f"{where}: must include a time zone offset (e.g. 2026-01-01T09:00:00Z)")
    return moment.astimezone(UTC)


def parse_blackouts(value: Any) -> tuple[Blackout, ...]:
    """``[{"start": "…Z", "end": "…Z", "note": "db upgrade"}, …]`` → blackouts, oldest first."""
    if value is None:
        return ()
    blackouts = []
    example = "{'start': '2026-05-01T22:00:00Z', 'end': '…'}"
    for where, item in _items(value, "blackout", example, ("start", "end", "note"), MAX_BLACKOUTS):
        start = _parse_instant(item.get("start"), f"{where} start")
        end = _parse_instant(item.get("end"), f"{where} end")
        if end <= start:
            raise RuleError(f"{where}: end must be after start")
        note = item.get("note", "")
        if not isinstance(note, str) or len(note) > 200 or "\x00" in note:
            raise RuleError(f"{where} note: must be text of at most 200 characters")
        blackouts.append(Blackout(start, end, note))
    return tuple(sorted(blackouts, key=lambda b: (b.start, b.end)))


# --- Time in a zone --------------------------------------------------------------------------------------


def resolve_wall(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The first instant (aware UTC) whose wall clock in `zone` reaches `day` `at`: the wall time itself when
    it exists (its first occurrence when repeated), the end of the gap when it was skipped."""
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=1 reads the wall with the offset after the jump (an instant before the gap), fold=0 with
    # the one before it (an instant after). The transition lies between; find its second.
    low, high = sorted((wall.replace(tzinfo=zone, fold=1).astimezone(UTC), first))
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0) if high.microsecond else high


def _span(window: Window, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[open, close) of `window` on the day it opens; empty (open == close) when a gap swallows it."""
    opens = resolve_wall(day, window.start, zone)
    close_day = day + timedelta(days=1) if window.overnight else day
    closes = resolve_wall(close_day, window.end, zone)
    return opens, max(opens, closes)


def _local_date(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def _in_window(rules: SlotRules, moment: datetime) -> bool:
    today = _local_date(moment, rules.zone)
    for day in (today - timedelta(days=1), today):
        for window in rules.windows:
            if day.weekday() in window.days:
                opens, closes = _span(window, day, rules.zone)
                if opens <= moment < closes:
                    return True
    return False


def _next_opening(rules: SlotRules, moment: datetime) -> datetime | None:
    """The earliest window opening at or after `moment` (within the next eight days: every window opens at
    least once a week, and a gap can swallow one day's span)."""
    today = _local_date(moment, rules.zone)
    best: datetime | None = None
    for offset in range(-1, 9):
        day = today + timedelta(days=offset)
        for window in rules.windows:
            if day.weekday() not in window.days:
                continue
            opens, closes = _span(window, day, rules.zone)
            if opens < closes and opens >= moment and (best is None or opens < best):
                best = opens
    return best


def _blackout_at(rules: SlotRules, moment: datetime) -> Blackout | None:
    for blackout in rules.blackouts:
        if blackout.start <= moment < blackout.end:
            return blackout
    return None


def _blocked(rules: SlotRules, moment: datetime) -> tuple[str, str] | None:
    """(reason, detail) of the first rule that forbids `moment`, most final first: an excluded date, then a
    blackout, then the windows."""
    local = _local_date(moment, rules.zone)
    if local in rules.excluded_dates:
        name = f" {rules.calendar_name!r}" if rules.calendar_name else ""
        return CALENDAR, f"{local.isoformat()} is excluded by calendar{name}"
    blackout = _blackout_at(rules, moment)
    if blackout is not None:
        note = f" ({blackout.note})" if blackout.note else ""
        return BLACKOUT, f"in the blackout {_iso(blackout.start)} - {_iso(blackout.end)}{note}"
    if rules.windows and not _in_window(rules, moment):
        return OUTSIDE_WINDOW, "outside the execution windows"
    return None


def _first_allowed(rules: SlotRules, moment: datetime) -> datetime | None:
    """The first instant at or after `moment` that no rule forbids, within the horizon."""
    limit = moment + DEFER_HORIZON
    candidate = moment
    for _ in range(10_000):  # each step moves forward by a day, a blackout or to an opening
        if candidate > limit:
            return None
        local = _local_date(candidate, rules.zone)
        if local in rules.excluded_dates:
            candidate = resolve_wall(local + timedelta(days=1), time(0, 0), rules.zone)
            continue
        blackout = _blackout_at(rules, candidate)
        if blackout is not None:
            candidate = blackout.end
            continue
        if rules.windows and not _in_window(rules, candidate):
            opening = _next_opening(rules, candidate)
            if opening is None:
                return None
            candidate = opening
            continue
        return candidate
    return None  # pragma: no cover - the horizon ends the walk long before


def decide(rules: SlotRules, slot: datetime) -> Verdict:
    """Whether `slot` (aware) may run now, must wait for `not_before`, or is skipped and why.

    An excluded date is always a skip; a blackout or a window is a skip, or with ``defer`` a run deferred to
    the first instant every rule allows (a skip when there is none within :data:`DEFER_HORIZON`)."""
    if slot.tzinfo is None or slot.utcoffset() is None:
        raise ValueError(f"slot must be a timezone-aware datetime, got naive {slot!r}")
    if rules.empty:
        return RUN
    blocked = _blocked(rules, slot)
    if blocked is None:
        return RUN
    reason, detail = blocked
    if rules.defer and reason != CALENDAR:
        later = _first_allowed(rules, slot)
        if later is not None:
            return Verdict(run=True, not_before=later, detail=f"{detail}; deferred to {_iso(later)}")
    return Verdict(run=False, reason=reason, detail=detail)


def excluded_between(dates: Iterable[date], start: date, end: date) -> list[date]:
    """The excluded dates in [start, end], sorted (what a preview lists beside its slots)."""
    return sorted(d for d in set(dates) if start <= d <= end)


def parse_dates(values: Sequence[Any]) -> frozenset[date]:
    """ISO dates as stored on a calendar (``"2026-12-25"``) → dates; `RuleError` naming the first bad one."""
    result = set()
    for value in values:
        if isinstance(value, date) and not isinstance(value, datetime):
            result.add(value)
            continue
        try:
            result.add(date.fromisoformat(str(value)))
        except ValueError:
            raise RuleError(f"{value!r} is not a date YYYY-MM-DD") from None
    return frozenset(result)
