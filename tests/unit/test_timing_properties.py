"""Property tests of schedules.timing: random cron expressions from a grammar, in ~20 zones, started around
real DST transitions of 2020-2035, checked against the independent brute-force reference in
timing_reference.py; plus fuzzing that only TimingError ever escapes. No Django."""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from schedules.timing import (
    ScheduleSpec,
    TimingError,
    describe,
    get_zone,
    jitter_offset,
    min_spacing_seconds,
    next_fire_times,
    next_slot,
    parse_cron,
    slots_between,
    validate_jitter,
    validate_spec,
)
from tests.unit.timing_reference import date_matches, ref_parse, reference_slots, utc_transitions

ZONES = [
    "UTC",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",  # -03:30, DST
    "America/Havana",  # transitions at midnight
    "America/Santiago",  # southern, transitions at 24:00
    "America/Asuncion",
    "America/Sao_Paulo",  # no DST any more
    "Europe/London",
    "Europe/Berlin",
    "Europe/Dublin",  # "negative" DST in tzdata
    "Africa/Casablanca",  # Ramadan DST, two transitions a month apart
    "Asia/Kolkata",  # +05:30, no DST
    "Asia/Kathmandu",  # +05:45
    "Asia/Tehran",  # had DST until 2022
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute DST
    "Pacific/Chatham",  # +12:45/+13:45, transitions at 02:45
    "Pacific/Auckland",
    "Antarctica/Troll",  # a two-hour DST shift
]
FIRST_YEAR, LAST_YEAR = 2020, 2035
T = TypeVar("T")
COUNT = 10


def sized(examples: int) -> settings:
    """Explicit sizes (whatever profile is loaded), so the whole timing suite stays well under a minute."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # "explain" re-runs for minutes
    )


@cache
def transitions(zone: str) -> tuple[datetime, ...]:
    return tuple(utc_transitions(zone, FIRST_YEAR, LAST_YEAR))


# ------------------------------------------------------------------------------------------------------------
# The grammar


def _values(low: int, high: int, hot: list[int], names: list[str] | None = None) -> st.SearchStrategy[str]:
    number = st.one_of(st.sampled_from(hot), st.integers(low, high))
    if not names:
        return number.map(str)

    def render(value: int, as_name: bool, upper: bool) -> str:
        if not as_name or not 0 <= value - low < len(names):
            return str(value)
        name = names[value - low]
        return name.upper() if upper else name

    return st.builds(render, number, st.booleans(), st.booleans())


def _plain_item(
    low: int, high: int, hot: list[int], names: list[str] | None = None
) -> st.SearchStrategy[str]:
    value = _values(low, high, hot, names)
    number = st.integers(low, high)
    step = st.one_of(
        st.sampled_from([s for s in (2, 3, 5, 10, 15, 20, 30) if s <= high]), st.integers(1, high)
    )

    def ordered(a: int, b: int) -> str:
        return f"{min(a, b)}-{max(a, b)}"

    return st.one_of(
        value,
        st.builds(ordered, number, number),
        st.builds(lambda s: f"*/{s}", step),
        st.builds(lambda a, b, s: f"{ordered(a, b)}/{s}", number, number, step),
        st.builds(lambda a, s: f"{a}/{s}", number, step),
    )


def _field(item: st.SearchStrategy[str], star_weight: int = 3) -> st.SearchStrategy[str]:
    listed = st.lists(item, min_size=2, max_size=3).map(",".join)
    return st.one_of(*([st.just("*")] * star_weight), item, listed)


SECOND = _field(_plain_item(0, 59, [0, 30, 59]))
MINUTE = _field(_plain_item(0, 59, [0, 15, 30, 45, 59]))
HOUR = _field(_plain_item(0, 23, [0, 1, 2, 3, 22, 23]))
MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MONTH_RANGE = st.builds(
    lambda a, b: f"{MONTH_NAMES[min(a, b)]}-{MONTH_NAMES[max(a, b)].upper()}",
    st.integers(0, 11),
    st.integers(0, 11),
)
MONTH = _field(st.one_of(_plain_item(1, 12, [2, 3, 4, 9, 10, 11], MONTH_NAMES), MONTH_RANGE), star_weight=4)
DOM_ITEM = st.one_of(_plain_item(1, 31, [1, 8, 15, 28, 29, 30, 31]), st.just("L"))
DOM = st.one_of(st.just("?"), _field(DOM_ITEM, star_weight=5))
DOW_SPECIAL = st.one_of(
    st.builds(lambda d, n: f"{d}#{n}", _values(0, 7, [0, 1, 5, 6], DAY_NAMES), st.integers(1, 5)),
    st.builds(lambda d: f"{d}L", _values(0, 7, [0, 5, 6], DAY_NAMES)),
)
DOW_RANGE = st.one_of(
    st.builds(lambda a: f"{a}-0", st.integers(1, 6)),  # ends on Sunday: wraps to 7
    st.builds(lambda a: f"{DAY_NAMES[a].upper()}-SUN", st.integers(1, 6)),
    st.builds(
        lambda a, b: f"{DAY_NAMES[min(a, b)]}-{DAY_NAMES[max(a, b)]}", st.integers(0, 6), st.integers(0, 6)
    ),
    st.builds(lambda a: f"{a}-7", st.integers(0, 7)),
)
DOW_ITEM = st.one_of(_plain_item(0, 6, [0, 1, 5, 6, 7], DAY_NAMES), DOW_SPECIAL, DOW_RANGE)
DOW = st.one_of(st.just("?"), _field(DOW_ITEM, star_weight=5))


@st.composite
def expressions(draw: st.DrawFn) -> str:
    fields = [draw(MINUTE), draw(HOUR), draw(DOM), draw(MONTH), draw(DOW)]
    if draw(st.integers(0, 4)) == 0:
        fields.insert(0, draw(SECOND))
    expression = " ".join(fields)
    try:
        parse_cron(expression)
    except TimingError:
        assume(False)
    return expression


@st.composite
def starts(draw: st.DrawFn, zone: str, first_year: int = FIRST_YEAR) -> datetime:
    """An instant near a real DST transition of the zone (or anywhere in first_year-2035)."""
    near = [t for t in transitions(zone) if t.year >= first_year]
    if near and draw(st.integers(0, 5)) > 0:
        base = draw(st.sampled_from(near))
        return base + timedelta(seconds=draw(st.integers(-3 * 86400, 3 * 86400)))
    stamp = draw(
        st.integers(
            int(datetime(first_year, 1, 1, tzinfo=UTC).timestamp()),
            int(datetime(LAST_YEAR, 12, 1, tzinfo=UTC).timestamp()),
        )
    )
    return datetime.fromtimestamp(stamp, UTC)


# ------------------------------------------------------------------------------------------------------------
# Against the reference


@sized(150)
@given(data=st.data(), expression=expressions(), zone=st.sampled_from(ZONES))
def test_cron_matches_brute_force_reference(data: st.DataObject, expression: str, zone: str) -> None:
    after = data.draw(starts(zone))
    spec = ScheduleSpec(kind="cron", cron_expression=expression, timezone=zone)
    fires = next_fire_times(spec, after, COUNT)
    got = [f.slot for f in fires]
    assert len(got) == COUNT
    # Strictly increasing, all after `after`, local is the same instant.
    assert all(a < b for a, b in pairwise(got))
    assert got[0] > after
    for fire in fires:
        # Not `fire.local == fire.slot`: PEP 495 makes inter-zone == False for a fold=1 local time.
        assert fire.local.astimezone(UTC) == fire.slot
        assert fire.local.tzinfo == ZoneInfo(zone)
    # Exactly the instants the reference enumerates: nothing missing between results, nothing extra.
    assert reference_slots(expression, zone, after, got[-1]) == got
    # Each one allowed: its local wall matches, or it is the first instant after a gap (with a note).
    cron = ref_parse(expression)
    for fire in fires:
        wall = fire.local
        matches = (
            wall.second in cron.seconds
            and wall.minute in cron.minutes
            and wall.hour in cron.hours
            and date_matches(cron, wall.date())
        )
        assert matches or (fire.note is not None and "DST gap" in fire.note)
    # The other entry points agree.
    assert next_slot(spec, after) == got[0]
    assert slots_between(spec, after, got[-1], limit=COUNT + 5) == got
    assert [f.slot for f in next_fire_times(spec, got[2], 3)] == got[3:6]


@sized(60)
@given(data=st.data(), expression=expressions(), zone=st.sampled_from(ZONES))
def test_min_spacing_is_a_lower_bound(data: st.DataObject, expression: str, zone: str) -> None:
    spec = ScheduleSpec(kind="cron", cron_expression=expression, timezone=zone)
    spacing = min_spacing_seconds(spec)
    assert spacing is not None
    assert spacing > 0
    # The spacing is about runs still to come: DST rules a zone dropped before this year do not count.
    after = data.draw(starts(zone, first_year=datetime.now(UTC).year + 1))
    got = [f.slot for f in next_fire_times(spec, after, 30)]
    for a, b in pairwise(got):
        assert (b - a).total_seconds() >= spacing
    # And jitter just below it never reorders runs.
    if spacing < 10**9:
        jitter = max(0, int(spacing) - 1 if spacing == int(spacing) else int(spacing))
        validate_jitter(spec, jitter)
        fired = [s + jitter_offset("t", s, jitter) for s in got]
        assert all(a < b for a, b in pairwise(fired))


@sized(100)
@given(
    interval=st.integers(1, 10 * 86400),
    anchor=st.integers(0, 16 * 365 * 86400),
    delta=st.integers(-5 * 86400, 40 * 86400),
    micro=st.integers(0, 999_999),
    zone=st.sampled_from(ZONES),
)
def test_interval_slots_are_exact_multiples(
    interval: int, anchor: int, delta: int, micro: int, zone: str
) -> None:
    anchor_at = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=anchor, microseconds=micro)
    after = anchor_at + timedelta(seconds=delta, microseconds=micro // 3)
    spec = ScheduleSpec(kind="interval", interval_seconds=interval, anchor_at=anchor_at, timezone=zone)
    got = [f.slot for f in next_fire_times(spec, after, 5)]
    step = timedelta(seconds=interval)
    assert got[0] > after
    assert got[0] - step <= after or got[0] == anchor_at
    for k, slot in enumerate(got):
        assert (slot - anchor_at) % step == timedelta(0)
        assert slot >= anchor_at
        assert slot == got[0] + k * step


@sized(100)
@given(trigger=st.text(max_size=40), seconds=st.integers(0, 10**9), jitter=st.integers(0, 86400))
def test_jitter_offset_in_range_and_deterministic(trigger: str, seconds: int, jitter: int) -> None:
    slot = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    offset = jitter_offset(trigger, slot, jitter)
    assert timedelta(0) <= offset <= timedelta(seconds=jitter)
    assert offset == jitter_offset(trigger, slot.astimezone(ZoneInfo("Asia/Kolkata")), jitter)
    assert offset.microseconds == 0


# ------------------------------------------------------------------------------------------------------------
# Fuzzing: only TimingError escapes


def attempt(
    function: Callable[..., T], *args: object, **kwargs: object
) -> tuple[T | None, TimingError | None]:
    """Call, keeping a TimingError as a value; any other exception type fails the test by propagating."""
    try:
        return function(*args, **kwargs), None
    except TimingError as error:
        return None, error


CRON_ALPHABET = string.digits + " */,-#?LlWw@" + "MONJANfri" + "\x00\t\n" + "\u0663\uff10"


@sized(300)
@given(text=st.one_of(st.text(max_size=40), st.text(alphabet=CRON_ALPHABET, max_size=40), expressions()))
def test_parse_cron_raises_only_timing_error(text: str) -> None:
    parsed, error = attempt(parse_cron, text)
    if error is not None:
        assert error.field == "cron_expression"
        assert error.message
        return
    assert parsed is not None
    assert parsed.has_seconds == (len(parsed.fields) == 6)
    describe(ScheduleSpec(kind="cron", cron_expression=text))


ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=5),
    st.datetimes(),  # naive
    st.datetimes(timezones=st.sampled_from([UTC, ZoneInfo("Pacific/Kiritimati"), ZoneInfo("America/Adak")])),
    st.lists(st.integers(), max_size=2),
)
KIND = st.one_of(st.sampled_from(["cron", "interval", "once"]), ANYTHING)
CRON_TEXT = st.one_of(expressions(), st.text(alphabet=CRON_ALPHABET, max_size=30), ANYTHING)
ZONE = st.one_of(
    st.sampled_from([*ZONES, "localtime", "Factory", "/etc/localtime", "", "Mars/Base"]), ANYTHING
)
AWARE = st.datetimes(
    min_value=datetime(1, 1, 2),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, ZoneInfo("Pacific/Kiritimati"), ZoneInfo("America/New_York")]),
)
MOMENT = st.one_of(AWARE, AWARE, ANYTHING)
INTERVAL = st.one_of(st.integers(-10, 10**10), st.sampled_from([1, 60, 3600, 86400]), ANYTHING)
MAX_RUNS = st.one_of(st.integers(-2, 10**20), ANYTHING)


@sized(300)
@given(
    kind=KIND,
    expression=CRON_TEXT,
    interval=INTERVAL,
    anchor=MOMENT,
    run_at=MOMENT,
    zone=ZONE,
    start_at=st.one_of(st.none(), MOMENT),
    end_at=st.one_of(st.none(), MOMENT),
    max_runs=st.one_of(st.none(), MAX_RUNS),
    now=st.one_of(AWARE, st.just(datetime(2026, 1, 1, tzinfo=UTC))),
)
def test_validate_spec_raises_only_timing_error(
    kind: object,
    expression: object,
    interval: object,
    anchor: object,
    run_at: object,
    zone: object,
    start_at: object,
    end_at: object,
    max_runs: object,
    now: datetime,
) -> None:
    spec = ScheduleSpec(
        kind=kind,  # type: ignore[arg-type]
        cron_expression=expression,  # type: ignore[arg-type]
        interval_seconds=interval,  # type: ignore[arg-type]
        anchor_at=anchor,  # type: ignore[arg-type]
        run_at=run_at,  # type: ignore[arg-type]
        timezone=zone,  # type: ignore[arg-type]
        start_at=start_at,  # type: ignore[arg-type]
        end_at=end_at,  # type: ignore[arg-type]
        max_runs=max_runs,  # type: ignore[arg-type]
    )
    _, error = attempt(validate_spec, spec, now=now, min_interval_seconds=1)
    if error is not None:
        assert error.field in {
            "kind",
            "cron_expression",
            "interval_seconds",
            "anchor_at",
            "run_at",
            "timezone",
            "start_at",
            "end_at",
            "max_runs",
            "now",
        }
        return
    # A valid spec can be used by everything else without surprises, once it is anchored as registration
    # anchors an interval that names no anchor (`validation.normalise_schedule`: its start, or now).
    if spec.kind == "interval" and spec.anchor_at is None:
        spec = dataclasses.replace(spec, anchor_at=spec.start_at or now.replace(microsecond=0))
    fires = next_fire_times(spec, now, 5)
    assert all(a.slot < b.slot for a, b in pairwise(fires))
    describe(spec)
    min_spacing_seconds(spec)
    if fires:
        assert next_slot(spec, now) == fires[0].slot
        assert slots_between(spec, now, fires[-1].slot, limit=10) == [f.slot for f in fires]


@sized(100)
@given(name=st.one_of(st.text(max_size=30), st.sampled_from(ZONES)))
def test_get_zone_raises_only_timing_error(name: str) -> None:
    zone, error = attempt(get_zone, name)
    if error is not None:
        assert error.field == "timezone"
        return
    assert zone is not None
    assert zone.key == name


@pytest.mark.parametrize("zone", ZONES)
def test_sampled_zones_exist_and_have_transitions_where_expected(zone: str) -> None:
    get_zone(zone)
    if zone in ("UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/Sao_Paulo"):
        assert transitions(zone) == ()
    elif zone in ("Asia/Tehran", "America/Asuncion"):  # DST abolished in 2022 / 2024
        assert len(transitions(zone)) >= 2
    else:
        assert len(transitions(zone)) >= 2 * (LAST_YEAR - FIRST_YEAR)
