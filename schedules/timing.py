"""The pure time maths of the scheduler: parsing cron expressions, turning a schedule into UTC slots, and
describing it to a person. No Django, no Redis, and no clock reads except min_spacing_seconds' choice of which
28 years to check: every other function is a pure function of its arguments, so the same answers come out of
the API, the beat process and the tests.

Slots are evaluated the way cronie evaluates a crontab, including daylight saving time (DST):

* An expression whose minute or hour field begins with ``*`` runs on **elapsed time**. Its slots are the
  real instants whose local wall-clock time matches: both copies of a repeated hour run, and nothing is
  invented inside a skipped hour. (cronie: "jobs that run more frequently than once an hour are not affected
  by the change" — they simply follow the clock.)
* Every other expression names a **fixed local time**. A fixed time inside a skipped hour runs once, at the
  first instant after the gap (several skipped times collapse into that one run); a fixed time that occurs
  twice runs only at its first occurrence. Users who write ``30 2 * * *`` mean "once a day", and cronie
  keeps that promise across both transitions.

Cron matching is done here rather than by croniter. The croniter in the project's dependencies was the first
plan, but (1) one ``get_next`` costs ~55 us, so 1,000 slots of a daily expression take ~60 ms before any DST
work, and twice that when the day fields are OR-ed with ``#``/``L`` (croniter intersects those even with
``day_or=True``: ``0 0 1 * 1#2`` raises CroniterBadDateError); (2) croniter reads ``5-5`` and ``MON-MON`` as
the whole field, rejects ``5L`` (it wants ``L5``), ORs ``*/2`` in day-of-month with day-of-week unless told
``day_or=False``, accepts 7 fields, and only finds out that ``0 0 30 2 *`` never fires when asked for a
time. The grammar below is small and fully validated, and iterating over it is exact and ~20x faster. The
tests check it against an independent brute-force walk over real UTC instants and, where croniter is right
(UTC, no quirks), against croniter.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import islice, pairwise
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from schedules.vocabulary import TriggerKind

__all__ = [
    "MAX_INTERVAL_SECONDS",
    "PRESETS",
    "CronExpr",
    "FireTime",
    "Kind",
    "Preset",
    "ScheduleSpec",
    "TimingError",
    "describe",
    "get_zone",
    "jitter_offset",
    "min_spacing_seconds",
    "next_fire_times",
    "next_slot",
    "parse_cron",
    "slots_between",
    "validate_jitter",
    "validate_spec",
]

#: An interval longer than this is a typo (milliseconds for seconds), not a schedule.
MAX_INTERVAL_SECONDS = 10 * 36525 * 864  # ten Julian years: 315,576,000 s

# Walls are iterated up to the end of this year, so that converting one to UTC never leaves datetime's range.
_MAX_YEAR = 9998
_MIN_YEAR = 2
_ZERO = timedelta(0)
_MAX_TEXT = 1000  # longer cron expressions / zone names are not worth parsing

# A 28-year span of the Gregorian calendar holds every (month, leap year, weekday of the 1st) combination,
# so it is enough to find the smallest gap between matching days (the calendar repeats within 1901-2099).
_SCAN_FIRST_YEAR = 2001
_SCAN_YEARS = 29


class TimingError(ValueError):
    """A user-input problem, always tied to a field name so the API can answer 400 {field: [message]}."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, list[str]]:
        return {self.field: [self.message]}


# --------------------------------------------------------------------------------------------------------
# Cron parsing


class _Problem(Exception):
    """A syntax problem found while parsing; becomes a TimingError once the caller's field name is known."""


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    lo: int
    hi: int
    names: dict[str, int] = field(default_factory=dict)


_MONTH_NAMES = {
    n: i + 1
    for i, n in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DOW_NAMES = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_MONTH_LABELS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]

_SECOND = _FieldSpec("second", 0, 59)
_MINUTE = _FieldSpec("minute", 0, 59)
_HOUR = _FieldSpec("hour", 0, 23)
_DOM = _FieldSpec("day of month", 1, 31)
_MONTH = _FieldSpec("month", 1, 12, _MONTH_NAMES)
_DOW = _FieldSpec("day of week", 0, 7, _DOW_NAMES)  # 0 and 7 are both Sunday, as in cronie

_FIVE = (_MINUTE, _HOUR, _DOM, _MONTH, _DOW)
_SIX = (_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW)

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_NUMBER = re.compile(r"[0-9]+", re.ASCII)


@dataclass(frozen=True)
class CronExpr:
    """A parsed cron expression. ``elapsed_time`` carries cronie's DST rule, decided by syntax alone: when the
    minute or hour field begins with ``*`` the job follows the clock through both copies of a repeated hour
    and skips a missing one; otherwise it is a fixed local time that runs exactly once per matching day."""

    expression: str
    has_seconds: bool
    elapsed_time: bool
    #: The 5 or 6 field texts (macros expanded), seconds first when present.
    fields: tuple[str, ...] = field(default=(), repr=False)
    #: cronie's day rule: OR when both day fields are restricted (neither begins with ``*``), else AND.
    day_or: bool = field(default=False, repr=False)
    _seconds: tuple[int, ...] = field(default=(0,), repr=False, compare=False)
    _minutes: tuple[int, ...] = field(default=(), repr=False, compare=False)
    _hours: tuple[int, ...] = field(default=(), repr=False, compare=False)
    _months: tuple[int, ...] = field(default=(), repr=False, compare=False)
    _doms: frozenset[int] = field(default=frozenset(), repr=False, compare=False)
    _dom_last: bool = field(default=False, repr=False, compare=False)
    _dows: frozenset[int] = field(default=frozenset(), repr=False, compare=False)
    _dow_nth: frozenset[tuple[int, int]] = field(default=frozenset(), repr=False, compare=False)
    _dow_last: frozenset[int] = field(default=frozenset(), repr=False, compare=False)
    #: _patterns[days_in_month - 28][weekday of the 1st, Sunday=0] -> matching days of such a month.
    _patterns: tuple[tuple[tuple[int, ...], ...], ...] = field(default=(), repr=False, compare=False)

    def day_matches(self, day: date) -> bool:
        """Whether the day fields (day of month, month, day of week, with cronie's OR/AND rule) allow
        `day`: the one place callers outside this module may want the day rule without a time."""
        if day.month not in self._months:
            return False
        pattern = self._patterns[_days_in_month(day.year, day.month) - 28][_weekday_of_first(day)]
        return day.day in pattern


@dataclass
class _Parsed:
    values: set[int] = field(default_factory=set)
    last: bool = False  # 'L' in day of month
    nth: set[tuple[int, int]] = field(default_factory=set)  # '1#2' in day of week
    last_dow: set[int] = field(default_factory=set)  # '5L' in day of week
    star: bool = False  # the field begins with '*' (or is '?'): cronie's "unrestricted" flag


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value(token: str, spec: _FieldSpec) -> int:
    if _NUMBER.fullmatch(token):
        # Compare the digits without int() on huge strings: "99999999999" is simply out of range.
        number = int(token) if len(token) <= 6 else spec.hi + 1
        if not spec.lo <= number <= spec.hi:
            raise _Problem(f"{_short(token)} is out of range {spec.lo}-{spec.hi}")
        return number
    named = spec.names.get(token.lower())
    if named is None:
        raise _Problem(f"{_short(token)!r} is not a number or name")
    return named


def _parse_item(item: str, spec: _FieldSpec, out: _Parsed, *, whole_field: str) -> None:
    if item == "":
        raise _Problem("empty item in list")
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _NUMBER.fullmatch(step_text):
            raise _Problem(f"step {_short(step_text)!r} is not a number")
        step_max = spec.hi if spec is not _DOW else 7
        step = int(step_text) if len(step_text) <= 6 else step_max + 1
        if not 1 <= step <= step_max:
            raise _Problem(f"step {_short(step_text)} is out of range 1-{step_max}")
    upper = base.upper()
    if base == "?":
        if spec not in (_DOM, _DOW):
            raise _Problem("'?' is only allowed in the day-of-month and day-of-week fields")
        if whole_field != "?":
            raise _Problem("'?' must be the whole field")
        out.values.update(range(spec.lo, spec.hi + 1))
        return
    if base == "*":
        low, high = spec.lo, spec.hi
    elif spec is _DOM and upper == "L":
        if slash:
            raise _Problem("'L' cannot take a step")
        out.last = True
        return
    elif spec is _DOW and "#" in base:
        if slash:
            raise _Problem(f"{_short(item)!r}: '#' cannot take a step")
        day_text, _, nth_text = base.partition("#")
        weekday = _value(day_text, spec) % 7
        if not _NUMBER.fullmatch(nth_text) or not 1 <= int(nth_text[:3]) <= 5:
            raise _Problem(f"{_short(item)!r}: the occurrence after '#' must be 1-5")
        out.nth.add((weekday, int(nth_text)))
        return
    elif spec is _DOW and upper.endswith("L"):
        if slash:
            raise _Problem(f"{_short(item)!r}: 'L' cannot take a step")
        if upper == "L":
            raise _Problem("'L' needs a weekday in front of it (e.g. 5L, the last Friday)")
        out.last_dow.add(_value(base[:-1], spec) % 7)
        return
    elif "-" in base:
        low_text, _, high_text = base.partition("-")
        if not low_text or not high_text:
            raise _Problem(f"{_short(base)!r} is not a valid range")
        low, high = _value(low_text, spec), _value(high_text, spec)
        if spec is _DOW and high == 0 and low > 0:
            high = 7  # SAT-SUN, 5-0: Sunday closes the week
        if low > high:
            raise _Problem(f"range {_short(base)} is reversed (start after end)")
    else:
        low = _value(base, spec)
        # "5/15" is "5-59/15", as in croniter and Quartz (for weekdays: up to Saturday, 6)
        high = (6 if spec is _DOW else spec.hi) if slash else low
    values = range(low, high + 1, step)
    out.values.update(v % 7 if spec is _DOW else v for v in values)


def _parse_field(text: str, position: int, spec: _FieldSpec) -> _Parsed:
    out = _Parsed(star=text.startswith("*") or text == "?")
    try:
        for item in text.split(","):
            _parse_item(item, spec, out, whole_field=text)
    except _Problem as problem:
        raise _Problem(f"field {position} ({spec.name}): {problem}") from None
    return out


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _weekday_of_first(day: date) -> int:
    """Weekday of the 1st of day's month, Sunday=0 (cron numbering)."""
    return (date(day.year, day.month, 1).weekday() + 1) % 7


def _month_patterns(dom: _Parsed, dow: _Parsed, day_or: bool) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Which days of a month match depends only on its length and the weekday of its 1st: 4 x 7 patterns."""
    patterns = []
    for length in range(28, 32):
        row = []
        for first in range(7):
            days = []
            for day in range(1, length + 1):
                weekday = (first + day - 1) % 7
                dom_ok = day in dom.values or (dom.last and day == length)
                dow_ok = (
                    weekday in dow.values
                    or (weekday, (day - 1) // 7 + 1) in dow.nth
                    or (weekday in dow.last_dow and day > length - 7)
                )
                if (dom_ok or dow_ok) if day_or else (dom_ok and dow_ok):
                    days.append(day)
            row.append(tuple(days))
        patterns.append(tuple(row))
    return tuple(patterns)


def _month_lengths(month: int) -> tuple[int, ...]:
    return (28, 29) if month == 2 else ((30,) if month in (4, 6, 9, 11) else (31,))


@lru_cache(maxsize=4096)
def _parse(expression: str) -> CronExpr:
    if "\x00" in expression:
        raise _Problem("must not contain NUL characters")
    if len(expression) > _MAX_TEXT:
        raise _Problem(f"is too long (at most {_MAX_TEXT} characters)")
    normalised = " ".join(expression.split())
    if not normalised:
        raise _Problem("is empty; expected 5 or 6 fields, e.g. '0 9 * * 1-5'")
    texts = normalised.split(" ")
    if texts[0].startswith("@"):
        macro = texts[0].lower()
        if macro == "@reboot":
            raise _Problem("@reboot is not supported")
        if macro not in _MACROS:
            raise _Problem(
                f"unknown macro {_short(texts[0])!r} (use @yearly, @annually, @monthly, @weekly, "
                "@daily, @midnight or @hourly)"
            )
        if len(texts) > 1:
            raise _Problem(f"{macro} takes no other fields")
        texts = _MACROS[macro].split(" ")
    if len(texts) not in (5, 6):
        raise _Problem(f"expected 5 or 6 fields, got {len(texts)}")
    specs = _SIX if len(texts) == 6 else _FIVE
    parsed = [
        _parse_field(text, i + 1, spec) for i, (text, spec) in enumerate(zip(texts, specs, strict=True))
    ]
    seconds = parsed[0] if len(texts) == 6 else _Parsed(values={0})
    minute, hour, dom, month, dow = parsed[-5:]
    minute_text, hour_text = texts[-5], texts[-4]
    day_or = not dom.star and not dow.star
    patterns = _month_patterns(dom, dow, day_or)
    months = tuple(sorted(month.values))
    if not any(
        patterns[length - 28][first] for m in months for length in _month_lengths(m) for first in range(7)
    ):
        raise _Problem(_never_fires_message(dom, dow, months))
    return CronExpr(
        expression=normalised,
        has_seconds=len(texts) == 6,
        elapsed_time=minute_text.startswith("*") or hour_text.startswith("*"),
        fields=tuple(texts),
        day_or=day_or,
        _seconds=tuple(sorted(seconds.values)),
        _minutes=tuple(sorted(minute.values)),
        _hours=tuple(sorted(hour.values)),
        _months=months,
        _doms=frozenset(dom.values),
        _dom_last=dom.last,
        _dows=frozenset(dow.values),
        _dow_nth=frozenset(dow.nth),
        _dow_last=frozenset(dow.last_dow),
        _patterns=patterns,
    )


def _never_fires_message(dom: _Parsed, dow: _Parsed, months: tuple[int, ...]) -> str:
    if dom.values and len(dow.values) == 7 and not dom.last:
        return f"never fires (e.g. day {min(dom.values)} of {_MONTH_LABELS[months[0] - 1]})"
    return "never fires (no date matches the day-of-month, month and day-of-week fields together)"


def parse_cron(expression: str, *, field: str = "cron_expression") -> CronExpr:
    """Parse and fully validate a cron expression, including that it fires at all: croniter-style libraries
    accept ``0 0 30 2 *`` and only fail when asked for a time, which would surface as a 500 at fire time."""
    if not isinstance(expression, str):
        raise TimingError(field, "must be a string")
    try:
        return _parse(expression)
    except _Problem as problem:
        raise TimingError(field, str(problem)) from None


# --------------------------------------------------------------------------------------------------------
# Time zones

_EXCLUDED_ZONES = frozenset({"localtime", "Factory", "posixrules"})


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    """IANA names only. ``localtime`` depends on the host (so the same trigger would fire differently on two
    workers) and ``Factory`` is a placeholder; paths are never names."""
    return frozenset(
        name
        for name in available_timezones()
        if name not in _EXCLUDED_ZONES and not name.startswith(("posix/", "right/"))
    )


@lru_cache(maxsize=1)
def _zone_names_folded() -> dict[str, str]:
    return {name.casefold(): name for name in _zone_names()}


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def get_zone(name: str, *, field: str = "timezone") -> ZoneInfo:
    """The trigger's IANA zone. Anything ``zoneinfo`` would resolve but that is not a real IANA name
    (``localtime``, ``Factory``, file paths) is refused, because it would make schedules host-dependent."""
    if not isinstance(name, str):
        raise TimingError(field, "must be a string")
    if "\x00" in name:
        raise TimingError(field, "must not contain NUL characters")
    if not name:
        raise TimingError(field, "is required, e.g. 'UTC' or 'Europe/Paris'")
    if name not in _zone_names():
        message = f"unknown time zone {_short(name, 64)!r}"
        suggestion = _zone_names_folded().get(name.strip().casefold())
        if suggestion:
            message += f" (did you mean {suggestion!r}?)"
        raise TimingError(field, message)
    try:
        return _zone(name)
    except (ValueError, OSError) as exc:  # a broken tzdata file: still the user's field that cannot be used
        raise TimingError(field, f"unknown time zone {_short(name, 64)!r}") from exc


# --------------------------------------------------------------------------------------------------------
# Schedules


#: The trigger kinds (one definition, in `schedules.vocabulary`).
Kind = TriggerKind


@dataclass(frozen=True)
class ScheduleSpec:
    kind: str  # "cron" | "interval" | "once"
    cron_expression: str | None = None
    interval_seconds: int | None = None
    anchor_at: datetime | None = None
    run_at: datetime | None = None
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None
    max_runs: int | None = None


@dataclass(frozen=True)
class FireTime:
    slot: datetime  # aware, UTC, the nominal instant: the identity of the run
    local: datetime  # the same instant in the trigger's zone
    note: str | None  # a human DST note, or None


@dataclass(frozen=True)
class _Plan:
    """A spec with its types checked and its text parsed, ready to iterate."""

    kind: Kind
    zone: ZoneInfo
    cron: CronExpr | None
    interval: timedelta | None
    anchor: datetime | None
    run_at: datetime | None
    start_at: datetime | None
    end_at: datetime | None
    max_runs: int | None


def _check_text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TimingError(name, "must be a string")
    if "\x00" in value:
        raise TimingError(name, "must not contain NUL characters")
    return value


def _check_datetime(value: Any, name: str, zone: ZoneInfo | None = None) -> datetime | None:
    """The instant in UTC. With `zone`, it must also exist on that zone's wall clock: 9999-12-31T12:00Z is
    year 10000 in Kiritimati (UTC+14), which no datetime can hold, and every preview shows local time."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TimingError(name, "must be a date-time")
    if value.tzinfo is None or value.utcoffset() is None:
        raise TimingError(name, "must be timezone-aware (include an offset such as Z or +02:00)")
    try:
        utc = value.astimezone(UTC)
        if zone is not None:
            utc.astimezone(zone)
    except (OverflowError, ValueError):
        where = f" in {zone.key}" if zone is not None else ""
        raise TimingError(name, f"is out of range{where}") from None
    return utc


def _check_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TimingError(name, "must be a whole number")
    return value


def _compile(spec: ScheduleSpec) -> _Plan:
    """`_build`, memoised: the fire path asks for the same trigger's plan three times per slot (is it a slot,
    which slots were missed, what comes next), and a herd of one schedule asks for one plan thousands of
    times. The key carries each field's type, since equal is not the same here (60.0 == 60 and True == 1,
    but only the int is an interval). A spec holding something unhashable (a list where text belongs) is
    built, and refused, uncached."""
    try:
        key = (spec, *map(type, vars(spec).values()))
        hash(key)
    except TypeError:
        return _build(spec)
    return _built(key)


@lru_cache(maxsize=4096)
def _built(key: tuple[Any, ...]) -> _Plan:
    return _build(key[0])


def _build(spec: ScheduleSpec) -> _Plan:
    if not isinstance(spec, ScheduleSpec):
        raise TimingError("kind", "not a schedule")
    kind_text = _check_text(spec.kind, "kind")
    try:
        if kind_text is None:  # Kind(None) would raise the same ValueError
            raise ValueError(kind_text)
        kind = Kind(kind_text)
    except ValueError:
        raise TimingError("kind", "must be one of: cron, interval, once") from None
    zone_name = spec.timezone if spec.timezone is not None else "UTC"
    zone = get_zone(zone_name)
    start_at = _check_datetime(spec.start_at, "start_at", zone)
    end_at = _check_datetime(spec.end_at, "end_at", zone)
    max_runs = _check_int(spec.max_runs, "max_runs")
    cron = interval = anchor = run_at = None
    if kind is Kind.CRON:
        expression = _check_text(spec.cron_expression, "cron_expression")
        if not expression:
            raise TimingError("cron_expression", "is required for a cron trigger")
        cron = parse_cron(expression)
    elif kind is Kind.INTERVAL:
        seconds = _check_int(spec.interval_seconds, "interval_seconds")
        if seconds is None:
            raise TimingError("interval_seconds", "is required for an interval trigger")
        if not 1 <= seconds <= MAX_INTERVAL_SECONDS:
            raise TimingError("interval_seconds", f"must be between 1 and {MAX_INTERVAL_SECONDS} (10 years)")
        interval = timedelta(seconds=seconds)
        anchor = _check_datetime(spec.anchor_at, "anchor_at", zone) or start_at
    else:
        run_at = _check_datetime(spec.run_at, "run_at", zone)
        if run_at is None:
            raise TimingError("run_at", "is required for a one-off trigger")
    return _Plan(kind, zone, cron, interval, anchor, run_at, start_at, end_at, max_runs)


def validate_spec(spec: ScheduleSpec, *, now: datetime, min_interval_seconds: int = 1) -> None:
    """Every check a schedule must pass before it is stored, each failure tied to the field to fix. Only
    TimingError ever escapes, whatever the input: the API turns it into a 400, never a 500."""
    now_utc = _check_datetime(now, "now")
    if now_utc is None:
        raise TimingError("now", "is required")
    plan = _compile(spec)
    if plan.max_runs is not None and plan.max_runs < 1:
        raise TimingError("max_runs", "must be at least 1")
    if plan.start_at is not None and plan.end_at is not None and plan.end_at <= plan.start_at:
        raise TimingError("end_at", "must be after start_at")
    if plan.kind is Kind.INTERVAL and plan.interval is not None:
        minimum = max(1, min_interval_seconds)
        if plan.interval.total_seconds() < minimum:
            raise TimingError("interval_seconds", f"must be at least {minimum} seconds")
    if plan.kind is Kind.ONCE and plan.run_at is not None:
        if plan.run_at <= now_utc:
            raise TimingError("run_at", "is in the past; a one-off trigger must run in the future")
        if (plan.start_at is not None and plan.run_at < plan.start_at) or (
            plan.end_at is not None and plan.run_at > plan.end_at
        ):
            raise TimingError("run_at", "is outside the start_at/end_at window")
        return
    if plan.end_at is not None and plan.end_at <= now_utc:
        raise TimingError("end_at", "is in the past")
    end_at = plan.end_at
    if end_at is not None:
        lower = max(now_utc, plan.start_at) if plan.start_at is not None else now_utc
        if plan.kind is Kind.INTERVAL and plan.anchor is None:
            plan = replace(plan, anchor=lower)  # the caller will anchor it at creation, i.e. now
        try:
            first = next(_slots(plan, lower - timedelta(microseconds=1)), None)
        except OverflowError:
            first = None
        if first is None or first[0] > end_at:
            raise TimingError("end_at", "leaves no run between start_at (or now) and end_at")


# --------------------------------------------------------------------------------------------------------
# Slot iteration


def _tods(cron: CronExpr, start: tuple[int, int, int] | None) -> Iterator[tuple[int, int, int]]:
    """Times of day (h, m, s) allowed by the expression, from `start` (inclusive) or from midnight."""
    hours, minutes, seconds = cron._hours, cron._minutes, cron._seconds
    if start is None:
        for h in hours:
            for m in minutes:
                for s in seconds:
                    yield h, m, s
        return
    h0, m0, s0 = start
    for h in hours[bisect_left(hours, h0) :]:
        for m in minutes[bisect_left(minutes, m0) :] if h == h0 else minutes:
            for s in seconds[bisect_left(seconds, s0) :] if (h == h0 and m == m0) else seconds:
                yield h, m, s


def _days(cron: CronExpr, start: datetime) -> Iterator[tuple[int, int, int, tuple[int, int, int] | None]]:
    """Matching days from start's day on, each with the time of day to start from (None: midnight)."""
    year, month, first_day = start.year, start.month, start.day
    start_tod = (start.hour, start.minute, start.second)
    months = cron._months
    if month not in months:
        index = bisect_right(months, month)
        if index == len(months):
            year, month = year + 1, months[0]
        else:
            month = months[index]
        first_day, start_tod = 1, (0, 0, 0)
    first = True
    while year <= _MAX_YEAR:
        pattern = cron._patterns[_days_in_month(year, month) - 28][(date(year, month, 1).weekday() + 1) % 7]
        for day in pattern:
            if first and day < first_day:
                continue
            yield year, month, day, (start_tod if first and day == first_day else None)
        first = False
        index = bisect_right(months, month)
        if index == len(months):
            year, month = year + 1, months[0]
        else:
            month = months[index]


def _abbr(moment: datetime) -> str:
    name = moment.tzname() or ""
    if not name or name[0] in "+-":
        offset = moment.utcoffset() or timedelta(0)
        sign = "-" if offset < timedelta(0) else "+"
        minutes = abs(int(offset.total_seconds())) // 60
        return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return name


def _duration_words(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"  # pragma: no cover - every integer divides by 1


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _transition(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first UTC second in (before, after] whose offset differs from the one at `before` (naive UTC)."""
    base = before.replace(tzinfo=UTC)
    start_offset = base.astimezone(zone).utcoffset()
    low, high = 0, int((after - before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if (base + timedelta(seconds=middle)).astimezone(zone).utcoffset() == start_offset:
            low = middle
        else:
            high = middle
    return before + timedelta(seconds=high)


def _walls(cron: CronExpr, start_wall: datetime) -> Iterator[datetime]:
    """The expression's local walls from `start_wall` (inclusive) on, in wall order."""
    for year, month, day, start in _days(cron, start_wall):
        for h, m, s in _tods(cron, start):
            yield datetime(year, month, day, h, m, s)  # noqa: DTZ001 - a naive local wall clock on purpose


@dataclass(frozen=True)
class _Repeat:
    """A fall-back whose second copies a walk must interleave: walls [start_wall, end_wall) run again at
    `offset` (the offset after the transition), after every first copy."""

    start_wall: datetime
    end_wall: datetime
    offset: timedelta


def _second_copies(
    cron: CronExpr, zone: ZoneInfo, span: _Repeat, time_format: str
) -> Iterator[tuple[datetime, str | None]]:
    """The second copies of the expression's walls in the span: a lazy stream, so a per-second expression
    inside a repeated hour costs the copies taken, not the hour's 3,600."""
    for wall in _walls(cron, span.start_wall):
        if wall >= span.end_wall:
            return
        shift = _duration_words((zone.utcoffset(wall) or _ZERO) - span.offset)
        instant = wall - span.offset
        local = instant.replace(tzinfo=UTC).astimezone(zone)
        yield instant, f"repeated {shift}: second {wall.strftime(time_format)} ({_abbr(local)})"


def _repeat_of(zone: ZoneInfo, wall: datetime, before: timedelta, after: timedelta) -> _Repeat:
    """The repeated span around the repeated wall `wall` (offsets `before` > `after`): the transition T is
    the first second whose offset is `after`, the span is walls [T + after, T + before)."""
    transition = _transition(zone, wall - before, wall - after)
    return _Repeat(transition + after, transition + before, after)


def _elapsed_instants(
    cron: CronExpr, zone: ZoneInfo, start_wall: datetime, repeat: _Repeat | None = None
) -> Iterator[tuple[datetime, str | None]]:
    """Elapsed-time instants (both copies of a repeated wall, none for a gap wall) of the walls from
    `start_wall` on, in real-time order. A repeated span's second copies come from a lazy stream merged in
    as soon as the first copies pass them; `repeat` starts one already under way (a walk that begins inside
    a repeated span, or in its second copies: then `start_wall` is the span's end)."""
    time_format = "%H:%M:%S" if cron.has_seconds else "%H:%M"
    pending: Iterator[tuple[datetime, str | None]] = iter(())
    head: tuple[datetime, str | None] | None = None
    span_end: datetime | None = None
    if repeat is not None:
        pending = _second_copies(cron, zone, repeat, time_format)
        head, span_end = next(pending, None), repeat.end_wall
    walls = _walls(cron, start_wall)
    while (wall := next(walls, None)) is not None:
        # ZoneInfo always answers; `or _ZERO` only narrows the Optional (a zero offset stays zero).
        before = zone.utcoffset(wall) or _ZERO
        after = zone.utcoffset(wall.replace(fold=1)) or _ZERO
        note: str | None = None
        if before < after:  # a gap wall: none of its walls exist, go on from the gap's end
            walls = _walls(cron, _transition(zone, wall - after, wall - before) + after)
            continue
        instant = wall - before
        if before > after:
            if span_end is None or wall >= span_end:
                found = _repeat_of(zone, wall, before, after)
                fresh = _second_copies(cron, zone, found, time_format)
                if head is not None:  # two fall-backs within a span of walls: merge both streams
                    fresh = heapq.merge([head], pending, fresh, key=lambda item: item[0])
                pending = fresh
                head, span_end = next(pending, None), found.end_wall
            first_local = instant.replace(tzinfo=UTC).astimezone(zone)
            note = (
                f"repeated {_duration_words(before - after)}: first {wall.strftime(time_format)} "
                f"({_abbr(first_local)})"
            )
        while head is not None and head[0] < instant:
            yield head
            head = next(pending, None)
        yield instant, note
    while head is not None:
        yield head
        head = next(pending, None)


def _cron_instants(
    cron: CronExpr, zone: ZoneInfo, start_wall: datetime, repeat: _Repeat | None = None
) -> Iterator[tuple[datetime, str | None]]:
    """Naive-UTC instants (with DST notes) of the walls from `start_wall` on, in strictly increasing order.

    Walls are local wall-clock times; each is mapped to real instants with both PEP 495 folds. fold=0 and
    fold=1 agree except around a transition: when fold=0's offset is larger the wall is repeated (fall back),
    when smaller it lies in a gap (spring forward). Elapsed-time expressions keep both copies of a repeated
    wall and drop gap walls; fixed-time expressions keep the first copy and move gap walls to the transition.
    """
    if cron.elapsed_time:
        yield from _elapsed_instants(cron, zone, start_wall, repeat)
        return
    time_format = "%H:%M:%S" if cron.has_seconds else "%H:%M"
    gap_instant: datetime | None = None  # the transition several gap walls collapse into
    gap_walls: list[datetime] = []
    for year, month, day, start in _days(cron, start_wall):
        tods = _tods(cron, start)
        while (tod := next(tods, None)) is not None:
            h, m, s = tod
            wall = datetime(year, month, day, h, m, s)  # noqa: DTZ001 - a naive local wall clock on purpose
            # ZoneInfo always answers; `or _ZERO` only narrows the Optional (a zero offset stays zero).
            before = zone.utcoffset(wall) or _ZERO
            after = zone.utcoffset(datetime(year, month, day, h, m, s, fold=1)) or _ZERO  # noqa: DTZ001
            if before == after:
                instant, note = wall - before, None
                gap = False
            elif before > after:  # repeated wall: runs at the first copy
                instant = wall - before
                first_local = instant.replace(tzinfo=UTC).astimezone(zone)
                note = (
                    f"{wall.strftime(time_format)} occurs twice on {wall:%Y-%m-%d}; "
                    f"runs at the first ({_abbr(first_local)})"
                )
                gap = False
            else:  # wall inside a gap
                if gap_instant is not None and wall - after < gap_instant <= wall - before:
                    instant = gap_instant  # same gap as the previous wall: no need to search again
                else:
                    instant = _transition(zone, wall - after, wall - before)
                note, gap = None, True
                # A dense expression has up to 3,600 walls in a one-hour gap: jump over them after the few
                # its note names, back into the same day when the gap ends on it.
                if len(gap_walls) >= 6:
                    resume = instant + after
                    same_day = (resume.year, resume.month, resume.day) == (year, month, day)
                    tods = _tods(cron, (resume.hour, resume.minute, resume.second)) if same_day else iter(())
            if gap_instant is not None and instant != gap_instant:
                yield gap_instant, _gap_note(gap_walls, gap_instant, zone, time_format)
                gap_instant, gap_walls = None, []
            if gap:
                gap_instant = instant
                gap_walls.append(wall)
            elif gap_instant is not None:  # an existing wall right at the end of the gap: one run
                continue
            else:
                yield instant, note
    if gap_instant is not None:
        yield gap_instant, _gap_note(gap_walls, gap_instant, zone, time_format)


def _gap_note(walls: list[datetime], instant: datetime, zone: ZoneInfo, time_format: str) -> str:
    local = instant.replace(tzinfo=UTC).astimezone(zone)
    times = [w.strftime(time_format) for w in walls[:6]] + (["later times"] if len(walls) > 6 else [])
    if len(walls) == 1:
        return (
            f"{times[0]} does not exist on {walls[0]:%Y-%m-%d} (DST gap); "
            f"runs at {local.strftime(time_format)} {_abbr(local)}"
        )
    return (
        f"{_join(times)} do not exist on {walls[0]:%Y-%m-%d} (DST gap); "
        f"they run once at {local.strftime(time_format)} {_abbr(local)}"
    )


def _start_wall(zone: ZoneInfo, lower: datetime) -> datetime:
    """The earliest local wall whose instants can be at or after `lower` (aware UTC). Inside a fall-back the
    wall clock goes back, so walls a little before lower's own wall still have a second copy after it."""
    offsets = []
    for days in (0, 1, 2):
        try:
            offsets.append((lower + timedelta(days=days)).astimezone(zone).utcoffset() or timedelta(0))
        except OverflowError:
            break
    try:
        wall = lower.replace(tzinfo=None) + min(offsets, default=timedelta(0))
    except OverflowError:
        wall = datetime.min if lower.year < 5000 else datetime.max  # noqa: DTZ901
    if wall.year < _MIN_YEAR:
        return datetime(_MIN_YEAR, 1, 1)  # noqa: DTZ001
    return wall.replace(microsecond=0)


def _start(zone: ZoneInfo, lower: datetime, *, elapsed: bool) -> tuple[datetime, _Repeat | None]:
    """Where a walk for the slots at or after `lower` (aware UTC) begins: lower's own wall, so a dense
    expression walks no walls whose slots are all earlier. Inside a fall-back, an elapsed-time walk
    begins with the span's second copies already under way (from lower's wall when lower is one of them);
    a fixed-time one skips the walls whose only run is before lower. At a spring-forward, fixed-time walls
    of the gap run at the transition, so the walk begins at the gap. Near the ends of the calendar, where
    lower's wall cannot be shown, the older, wider start applies."""
    try:
        local = lower.astimezone(zone)
        wall = local.replace(tzinfo=None, microsecond=0, fold=0)
        if wall.year < _MIN_YEAR:
            return _start_wall(zone, lower), None
        first = zone.utcoffset(wall) or _ZERO
        second = zone.utcoffset(wall.replace(fold=1)) or _ZERO
        floor = lower.replace(tzinfo=None, microsecond=0)
        if first > second:  # lower's wall is repeated: find the span it lies in
            if local.fold:
                transition = _transition(zone, floor - (first - second), floor)
            else:
                transition = _transition(zone, floor, floor + (first - second))
            span = _Repeat(transition + second, transition + first, second)
            if not elapsed:
                return (span.end_wall if local.fold else wall), None
            if local.fold:
                return span.end_wall, _Repeat(wall, span.end_wall, second)
            return wall, span
        if not elapsed:
            just_before = (lower - timedelta(microseconds=1)).astimezone(zone).utcoffset() or _ZERO
            if just_before < (local.utcoffset() or _ZERO):  # lower is a spring-forward transition
                return floor + just_before, None
        return wall, None
    except OverflowError:
        return _start_wall(zone, lower), None


def _slots(plan: _Plan, after: datetime) -> Iterator[tuple[datetime, str | None]]:
    """Aware UTC slots strictly after `after`, at or after start_at, at most end_at, increasing. (max_runs is
    the caller's: it depends on how many runs already happened.)"""
    after = after.astimezone(UTC)
    if plan.start_at is not None and plan.start_at > after:
        lower, inclusive = plan.start_at, True
    else:
        lower, inclusive = after, False
    end = plan.end_at
    if plan.kind is Kind.ONCE:
        run_at = plan.run_at
        if run_at is None:
            return
        if (run_at > lower or (inclusive and run_at == lower)) and (end is None or run_at <= end):
            yield run_at, None
        return
    if plan.kind is Kind.INTERVAL:
        if plan.anchor is None:
            raise TimingError("anchor_at", "an interval trigger needs anchor_at (or start_at)")
        if plan.interval is not None:
            yield from _interval_slots(plan.anchor, plan.interval, lower, inclusive, end)
        return
    if plan.cron is None:
        return
    lower_naive = lower.replace(tzinfo=None)
    end_naive = end.replace(tzinfo=None) if end is not None else None
    start_wall, repeat = _start(plan.zone, lower, elapsed=plan.cron.elapsed_time)
    for instant, note in _cron_instants(plan.cron, plan.zone, start_wall, repeat):
        if instant < lower_naive or (instant == lower_naive and not inclusive):
            continue
        if end_naive is not None and instant > end_naive:
            return
        yield instant.replace(tzinfo=UTC), note


def _interval_slots(
    anchor: datetime, interval: timedelta, lower: datetime, inclusive: bool, end: datetime | None
) -> Iterator[tuple[datetime, str | None]]:
    """anchor + k*interval in exact microseconds, so slots never drift and DST never moves them."""
    k = 0
    if lower >= anchor:
        k = (lower - anchor) // interval
        if anchor + k * interval < lower or (anchor + k * interval == lower and not inclusive):
            k += 1
    while True:
        try:
            slot = anchor + k * interval
        except OverflowError:
            return
        if end is not None and slot > end:
            return
        yield slot, None
        k += 1


def _require_after(after: Any) -> datetime:
    checked = _check_datetime(after, "after")
    if checked is None:
        raise TimingError("after", "is required")
    return checked


def _remaining(plan: _Plan, runs_so_far: int) -> int | None:
    if plan.kind is Kind.ONCE:
        return max(0, 1 - runs_so_far)
    if plan.max_runs is None:
        return None
    return max(0, plan.max_runs - runs_so_far)


def next_fire_times(
    spec: ScheduleSpec, after: datetime, count: int, *, runs_so_far: int = 0
) -> list[FireTime]:
    """The next `count` slots strictly after `after`, with local times and DST notes for a preview."""
    plan = _compile(spec)
    after_utc = _require_after(after)
    remaining = _remaining(plan, runs_so_far)
    limit = max(0, count if remaining is None else min(count, remaining))
    zone = plan.zone
    fire_times = []
    for slot, note in islice(_slots(plan, after_utc), limit):
        try:
            local = slot.astimezone(zone)
        except OverflowError:  # past year 9999 on this zone's clock: the schedule ends there
            break
        fire_times.append(FireTime(slot=slot, local=local, note=note))
    return fire_times


def next_slot(spec: ScheduleSpec, after: datetime, *, runs_so_far: int = 0) -> datetime | None:
    """The next slot strictly after `after`, or None when the schedule has ended (end_at, max_runs, a
    one-off that ran). A pure function of its arguments, so callers may memoise it."""
    plan = _compile(spec)
    after_utc = _require_after(after)
    remaining = _remaining(plan, runs_so_far)
    if remaining == 0:
        return None
    found = next(_slots(plan, after_utc), None)
    return None if found is None else found[0]


def slots_between(
    spec: ScheduleSpec, after: datetime, until: datetime, *, limit: int, runs_so_far: int = 0
) -> list[datetime]:
    """Slots in (after, until], oldest first, at most `limit`: what a beat that was down has missed."""
    plan = _compile(spec)
    after_utc = _require_after(after)
    until_utc = _check_datetime(until, "until")
    if until_utc is None:
        raise TimingError("until", "is required")
    remaining = _remaining(plan, runs_so_far)
    cap = max(0, limit if remaining is None else min(limit, remaining))
    result: list[datetime] = []
    if cap == 0 or until_utc <= after_utc:
        return result
    for slot, _note in _slots(plan, after_utc):
        if slot > until_utc:
            break
        result.append(slot)
        if len(result) >= cap:
            break
    return result


# --------------------------------------------------------------------------------------------------------
# Spacing and jitter


def _min_diff(values: tuple[int, ...]) -> int | None:
    if len(values) < 2:
        return None
    return min(b - a for a, b in pairwise(values))


@lru_cache(maxsize=1024)
def _day_gap(cron: CronExpr) -> int | None:
    """The smallest number of days between two consecutive matching days (None if there is at most one).
    28 years hold every month shape, so they give the exact answer; only an expression that fires less
    than twice in them (the 5th Monday of February: 2016, 2044, 2072, 2112) needs the 400-year cycle."""
    previous: int | None = None
    best: int | None = None
    for year in range(_SCAN_FIRST_YEAR, _SCAN_FIRST_YEAR + 400):
        if best is not None and year >= _SCAN_FIRST_YEAR + _SCAN_YEARS:
            break
        for month in cron._months:
            base = date(year, month, 1)
            pattern = cron._patterns[_days_in_month(year, month) - 28][(base.weekday() + 1) % 7]
            for day in pattern:
                ordinal = base.toordinal() + day - 1
                if previous is not None:
                    gap = ordinal - previous
                    best = gap if best is None else min(best, gap)
                    if best == 1:
                        return 1
                previous = ordinal
    return best


def _wall_spacing(cron: CronExpr) -> float:
    """The smallest gap between consecutive local wall times of the expression, ignoring DST."""
    hours, minutes, seconds = cron._hours, cron._minutes, cron._seconds
    candidates: list[int] = []
    if (gap := _min_diff(seconds)) is not None:
        candidates.append(gap)
    if (gap := _min_diff(minutes)) is not None:
        candidates.append(60 * gap - (seconds[-1] - seconds[0]))
    if (gap := _min_diff(hours)) is not None:
        candidates.append(3600 * gap - 60 * (minutes[-1] - minutes[0]) - (seconds[-1] - seconds[0]))
    days = _day_gap(cron)
    if days is not None:
        first = 3600 * hours[0] + 60 * minutes[0] + seconds[0]
        last = 3600 * hours[-1] + 60 * minutes[-1] + seconds[-1]
        candidates.append(86400 * days + first - last)
    return float(min(candidates)) if candidates else float("inf")


@lru_cache(maxsize=256)
def _transitions(zone_key: str, first_year: int, last_year: int) -> tuple[tuple[datetime, timedelta], ...]:
    """(instant, offset just before) of each UTC-offset change of the zone in [first_year, last_year),
    found by sampling every 2 days and bisecting to the second."""
    zone = _zone(zone_key)
    found: list[tuple[datetime, timedelta]] = []
    moment = datetime(first_year, 1, 1, tzinfo=UTC)
    stop = datetime(last_year, 1, 1, tzinfo=UTC)
    step = timedelta(days=2)
    offset = moment.astimezone(zone).utcoffset()
    while moment < stop:
        following = moment + step
        next_offset = following.astimezone(zone).utcoffset()
        if next_offset != offset:
            naive = moment.replace(tzinfo=None)
            found.append((_transition(zone, naive, naive + step), offset or _ZERO))
        moment, offset = following, next_offset
    return tuple(found)


def _last_tod_before(cron: CronExpr, tod: tuple[int, int, int]) -> tuple[int, int, int] | None:
    """The latest allowed time of day strictly before `tod`, or None."""
    hours, minutes, seconds = cron._hours, cron._minutes, cron._seconds
    h0, m0, s0 = tod
    for h in reversed(hours[: bisect_right(hours, h0)]):
        if h < h0:
            return h, minutes[-1], seconds[-1]
        for m in reversed(minutes[: bisect_right(minutes, m0)]):
            if m < m0:
                return h, m, seconds[-1]
            index = bisect_left(seconds, s0) - 1
            if index >= 0:
                return h, m, seconds[index]
    return None


def _prev_wall(cron: CronExpr, before: datetime) -> datetime | None:
    """The last wall of the expression strictly before the naive wall `before` (scanning back ~30 years)."""
    year, month = before.year, before.month
    limit = max(year - _SCAN_YEARS - 1, _MIN_YEAR)
    first = True
    while year > limit:
        if month in cron._months:
            pattern = cron._patterns[_days_in_month(year, month) - 28][
                (date(year, month, 1).weekday() + 1) % 7
            ]
            for day in reversed(pattern):
                if first and day > before.day:
                    continue
                if first and day == before.day:
                    tod = _last_tod_before(cron, (before.hour, before.minute, before.second))
                    if tod is None:
                        continue
                    return datetime(year, month, day, *tod)  # noqa: DTZ001 - a naive local wall
                return datetime(  # noqa: DTZ001
                    year, month, day, cron._hours[-1], cron._minutes[-1], cron._seconds[-1]
                )
        first = False
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return None


@lru_cache(maxsize=1024)
def _cron_spacing(cron: CronExpr, zone_key: str, first_year: int, last_year: int) -> float:
    """Wall spacing, then each DST transition's straddling pair of slots: a transition can bring two runs
    closer than any two wall times are (``59 1,2 * * *`` across a spring gap runs at 01:59 and 03:00, one
    minute apart; ``30 * * * *`` on Lord Howe's half-hour fall-back runs 30 minutes apart)."""
    wall_spacing = spacing = _wall_spacing(cron)
    zone = _zone(zone_key)
    for instant, offset_before in _transitions(zone_key, first_year, last_year):
        if spacing <= 1:
            break  # slots are whole seconds: nothing comes closer
        # Walk the real slots from the last wall before the shifted span to past its far edge: a fall-back
        # repeats the walls between (transition, in the new offset) and (transition, in the old one), and
        # an elapsed-time expression runs their second copies too — `*/31 2 * * *` in Sydney runs 02:31
        # AEDT, then 02:00 AEST 29 minutes later. Starting at the transition's wall would miss them.
        after = instant.replace(tzinfo=UTC).astimezone(zone).utcoffset() or _ZERO
        shift = abs(after - offset_before)
        wall = _prev_wall(cron, instant + min(offset_before, after))
        if wall is None:
            continue
        reach = instant + shift + timedelta(seconds=min(2 * wall_spacing, 2 * 86400))
        previous: datetime | None = None
        for count, (slot, _note) in enumerate(_cron_instants(cron, zone, wall)):
            if previous is not None:
                spacing = min(spacing, (slot - previous).total_seconds())
            if (slot > reach and count >= 2) or count > 20_000:
                break
            previous = slot
    return spacing


def min_spacing_seconds(spec: ScheduleSpec) -> float | None:
    """The smallest gap between two consecutive slots (None for a one-off). For cron, the wall-clock
    structure gives the answer away from DST; the zone's transitions over the next 28 years (one full
    calendar cycle) are then checked one by one for runs DST pushes closer together."""
    plan = _compile(spec)
    if plan.kind is Kind.ONCE:
        return None
    if plan.kind is Kind.INTERVAL or plan.cron is None:
        return plan.interval.total_seconds() if plan.interval is not None else None
    first_year = datetime.now(UTC).year
    if plan.start_at is not None:
        first_year = max(first_year, plan.start_at.year)
    first_year = min(first_year, _MAX_YEAR - _SCAN_YEARS)
    last_year = first_year + _SCAN_YEARS - 1
    if plan.end_at is not None:
        last_year = max(first_year + 1, min(last_year, plan.end_at.year + 1))
    return _cron_spacing(plan.cron, plan.zone.key, first_year, last_year)


def validate_jitter(spec: ScheduleSpec, jitter_seconds: int) -> None:
    """Jitter must stay below the smallest gap between slots: then slot + jitter is still before the next
    slot, so jitter can never reorder runs (or make two runs of one trigger overlap on the clock)."""
    if isinstance(jitter_seconds, bool) or not isinstance(jitter_seconds, int):
        raise TimingError("jitter_seconds", "must be a whole number of seconds")
    if jitter_seconds < 0:
        raise TimingError("jitter_seconds", "must be 0 or more")
    if jitter_seconds == 0:
        return
    spacing = min_spacing_seconds(spec)
    if spacing is not None and jitter_seconds >= spacing:
        shown = f"{spacing:g}"
        raise TimingError(
            "jitter_seconds",
            f"must be less than the smallest gap between runs ({shown} seconds), so runs never swap order",
        )


def jitter_offset(trigger_id: str, slot: datetime, jitter_seconds: int) -> timedelta:
    """A stable offset in [0, jitter_seconds] for this run. Derived from sha-256 of (trigger, slot) rather
    than Python's ``hash`` (salted per process), so every worker and every restart agrees on it."""
    if jitter_seconds <= 0:
        return timedelta(0)
    slot_utc = _check_datetime(slot, "slot")
    if slot_utc is None:
        raise TimingError("slot", "is required")
    digest = hashlib.sha256(f"{trigger_id}|{slot_utc.isoformat()}".encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % (jitter_seconds + 1))


# --------------------------------------------------------------------------------------------------------
# Descriptions and presets


@lru_cache(maxsize=4096)
def _describe_cron(cron: CronExpr) -> str:
    """cron-descriptor's text (memoised: it reloads its gettext catalogue on every call, ~0.25 ms, which a
    list of 50 triggers paid 50 times), with two corrections: a 6-field expression is handed over with an
    explicit year field (on its own, cron-descriptor reads a 6-field expression with '?' as minutes-first +
    year), and the day fields say "and" where cronie's rule is an AND (a day field that begins with '*')."""
    from cron_descriptor import CasingTypeEnum, ExpressionDescriptor, Options

    text = " ".join((*cron.fields, "*")) if cron.has_seconds else " ".join(cron.fields)
    options = Options(CasingTypeEnum.Sentence, locale_code="en_US", use_24hour_time_format=True)
    try:
        description = ExpressionDescriptor(text, options).get_description()
    except Exception:  # a description must never break an API response
        return f"cron {cron.expression}"
    dom_text, dow_text = cron.fields[-3], cron.fields[-1]
    both_written = dom_text not in ("*", "?") and dow_text not in ("*", "?")
    if both_written and not cron.day_or:
        description = description.replace(", or on ", ", and only on ").replace(", or ", ", and ")
    return description


def _format_local(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second or moment.microsecond else "%Y-%m-%d %H:%M")


def describe(spec: ScheduleSpec) -> str:
    """A sentence for people, always naming the zone the schedule is read in."""
    plan = _compile(spec)
    zone = plan.zone
    if plan.cron is not None:
        text = f"{_describe_cron(plan.cron)} ({zone.key})"
    elif plan.interval is not None:
        text = f"Every {_duration_words(plan.interval)}"
        text += (
            f" from {_format_local(plan.anchor.astimezone(zone))} {zone.key}"
            if plan.anchor
            else f" ({zone.key})"
        )
    elif plan.run_at is not None:
        return f"Once at {_format_local(plan.run_at.astimezone(zone))} ({zone.key})"
    else:  # pragma: no cover - _compile guarantees one of the three
        text = zone.key
    if plan.start_at is not None:
        text += f", starting {_format_local(plan.start_at.astimezone(zone))}"
    if plan.end_at is not None:
        text += f", until {_format_local(plan.end_at.astimezone(zone))}"
    if plan.max_runs is not None:
        text += f", at most {plan.max_runs} run{'s' if plan.max_runs != 1 else ''}"
    return text


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    expression: str
    description: str


def _preset(key: str, label: str, expression: str) -> Preset:
    return Preset(key, label, expression, _describe_cron(_parse(expression)))


PRESETS: tuple[Preset, ...] = (
    _preset("every-minute", "Every minute", "* * * * *"),
    _preset("every-5-minutes", "Every 5 minutes", "*/5 * * * *"),
    _preset("every-15-minutes", "Every 15 minutes", "*/15 * * * *"),
    _preset("every-30-minutes", "Every 30 minutes", "*/30 * * * *"),
    _preset("hourly", "Hourly", "0 * * * *"),
    _preset("daily-0900", "Daily at 09:00", "0 9 * * *"),
    _preset("weekdays-0900", "Weekdays at 09:00", "0 9 * * 1-5"),
    _preset("weekly-monday-0900", "Weekly on Monday at 09:00", "0 9 * * 1"),
    _preset("monthly-1st-0000", "Monthly on the 1st at 00:00", "0 0 1 * *"),
)
