"""schedules.rules (windows, blackouts, excluded dates) and executions.policies.apply_rules, pure: fixed
clocks at the 2026 transitions of Europe/Berlin and America/New_York, and a hypothesis property against a
brute-force reference that walks the wall clock minute by minute (no fold, no bisection, no zone maths
beyond `astimezone`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executions import policies
from schedules import rules
from schedules.rules import SlotRules, decide, parse_blackouts, parse_windows, resolve_wall

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def windows(*specs: tuple[str, str, str]) -> tuple[rules.Window, ...]:
    return parse_windows([{"days": d, "start": s, "end": e} for d, s, e in specs])


# --- Reading --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("x", "must be a list", id="not-a-list"),
        pytest.param([1], "window 1: must be an object", id="not-an-object"),
        pytest.param([{"start": "9:00", "end": "17:00"}], "window 1 start: '9:00' is not a time", id="h"),
        pytest.param([{"start": "09:00", "end": "25:00"}], "window 1 end: '25:00'", id="end-25"),
        pytest.param([{"start": "24:00", "end": "01:00"}], "24:00 is only an end", id="start-24"),
        pytest.param([{"start": "09:00", "end": "09:00"}], "start and end are equal", id="empty"),
        pytest.param(
            [{"days": "mon-fry", "start": "09:00", "end": "17:00"}], "'mon-fry' is not a day", id="d"
        ),
        pytest.param([{"days": [], "start": "09:00", "end": "17:00"}], "at least one day", id="no-days"),
        pytest.param([{"start": "09:00", "end": "17:00", "tz": "UTC"}], "'tz' is not a key", id="key"),
        pytest.param([{"start": "00:00", "end": "01:00"}] * 51, "at most 50 windows", id="too-many"),
    ],
)
def test_bad_windows_name_the_item(value, message) -> None:
    with pytest.raises(rules.RuleError, match=message.replace("(", r"\(")):
        parse_windows(value)


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        pytest.param("mon-fri", {0, 1, 2, 3, 4}, id="range"),
        pytest.param("fri-mon", {4, 5, 6, 0}, id="wrapping-range"),
        pytest.param(["SAT", "sun"], {5, 6}, id="list-any-case"),
        pytest.param("mon,wed , fri", {0, 2, 4}, id="commas"),
    ],
)
def test_days(days, expected) -> None:
    (window,) = parse_windows([{"days": days, "start": "09:00", "end": "17:00"}])
    assert window.days == frozenset(expected)


def test_windows_and_blackouts_come_back_in_one_spelling() -> None:
    (window,) = parse_windows([{"days": "fri-mon", "start": "22:00", "end": "24:00"}])
    assert window.as_json() == {"days": ["mon", "fri", "sat", "sun"], "start": "22:00", "end": "24:00"}
    (blackout,) = parse_blackouts([{"start": "2026-05-01T23:00:00+01:00", "end": "2026-05-02T01:00:00Z"}])
    assert blackout.as_json() == {"start": "2026-05-01T22:00:00Z", "end": "2026-05-02T01:00:00Z", "note": ""}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param([{"start": "2026-05-01T00:00:00", "end": "2026-05-02T00:00:00Z"}], "offset", id="naive"),
        pytest.param([{"start": "yesterday", "end": "2026-05-02T00:00:00Z"}], "not an ISO", id="text"),
        pytest.param(
            [{"start": "2026-05-02T00:00:00Z", "end": "2026-05-01T00:00:00Z"}], "after", id="reversed"
        ),
        pytest.param([{"start": "2026-05-01T00:00:00Z"}], "blackout 1 end", id="no-end"),
    ],
)
def test_bad_blackouts_name_the_item(value, message) -> None:
    with pytest.raises(rules.RuleError, match=message):
        parse_blackouts(value)


# --- Daylight saving: where a window's boundaries fall --------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "at", "expected"),
    [
        pytest.param(BERLIN, date(2026, 3, 29), time(2, 30), utc(2026, 3, 29, 1, 0), id="berlin-gap-0230"),
        pytest.param(BERLIN, date(2026, 3, 29), time(3, 0), utc(2026, 3, 29, 1, 0), id="berlin-gap-end"),
        pytest.param(BERLIN, date(2026, 10, 25), time(2, 30), utc(2026, 10, 25, 0, 30), id="berlin-repeat"),
        pytest.param(BERLIN, date(2026, 10, 25), time(3, 0), utc(2026, 10, 25, 2, 0), id="berlin-after"),
        pytest.param(NEW_YORK, date(2026, 3, 8), time(2, 15), utc(2026, 3, 8, 7, 0), id="ny-gap-0215"),
        pytest.param(NEW_YORK, date(2026, 11, 1), time(1, 30), utc(2026, 11, 1, 5, 30), id="ny-repeat"),
        pytest.param(NEW_YORK, date(2026, 7, 1), time(9, 0), utc(2026, 7, 1, 13, 0), id="ny-summer"),
    ],
)
def test_a_boundary_is_the_first_instant_whose_wall_clock_reaches_it(zone, day, at, expected) -> None:
    assert resolve_wall(day, at, zone) == expected


@pytest.mark.parametrize(
    ("zone", "spec", "slot", "inside"),
    [
        # Berlin, spring forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC).
        pytest.param(
            BERLIN, ("sun", "00:00", "02:30"), utc(2026, 3, 29, 0, 59), True, id="berlin-spring-before"
        ),
        pytest.param(
            BERLIN, ("sun", "00:00", "02:30"), utc(2026, 3, 29, 1, 0), False, id="berlin-spring-closed"
        ),
        pytest.param(
            BERLIN, ("sun", "02:30", "05:00"), utc(2026, 3, 29, 1, 0), True, id="berlin-spring-opens"
        ),
        pytest.param(
            BERLIN, ("sun", "02:30", "05:00"), utc(2026, 3, 29, 0, 59), False, id="berlin-spring-shut"
        ),
        # Berlin, fall back 2026-10-25 03:00 CEST -> 02:00 CET (01:00 UTC): 02:00-03:00 twice.
        pytest.param(BERLIN, ("sun", "00:00", "02:30"), utc(2026, 10, 25, 0, 15), True, id="berlin-fall-1st"),
        pytest.param(
            BERLIN, ("sun", "00:00", "02:30"), utc(2026, 10, 25, 1, 15), False, id="berlin-fall-2nd"
        ),
        pytest.param(
            BERLIN, ("sun", "02:30", "06:00"), utc(2026, 10, 25, 1, 10), True, id="berlin-fall-open"
        ),
        pytest.param(
            BERLIN, ("sun", "02:30", "06:00"), utc(2026, 10, 25, 0, 29), False, id="berlin-fall-pre"
        ),
        # New York, spring forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC).
        pytest.param(NEW_YORK, ("sun", "02:15", "04:00"), utc(2026, 3, 8, 7, 0), True, id="ny-spring-opens"),
        pytest.param(NEW_YORK, ("sun", "02:15", "04:00"), utc(2026, 3, 8, 6, 59), False, id="ny-spring-shut"),
        # New York, fall back 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC): 01:00-02:00 twice.
        pytest.param(NEW_YORK, ("sun", "00:00", "01:30"), utc(2026, 11, 1, 5, 15), True, id="ny-fall-1st"),
        pytest.param(NEW_YORK, ("sun", "00:00", "01:30"), utc(2026, 11, 1, 6, 15), False, id="ny-fall-2nd"),
        pytest.param(NEW_YORK, ("sat", "22:00", "06:00"), utc(2026, 11, 1, 6, 30), True, id="ny-overnight"),
        pytest.param(
            NEW_YORK, ("sat", "22:00", "06:00"), utc(2026, 11, 1, 11, 0), False, id="ny-overnight-end"
        ),
        pytest.param(
            NEW_YORK, ("mon-fri", "09:00", "17:00"), utc(2026, 3, 9, 13, 0), True, id="ny-weekday-edt"
        ),
        pytest.param(
            NEW_YORK, ("mon-fri", "09:00", "17:00"), utc(2026, 3, 6, 13, 59), False, id="ny-weekday-est"
        ),
    ],
)
def test_window_membership_across_transitions(zone, spec, slot, inside) -> None:
    verdict = decide(SlotRules(zone=zone, windows=windows(spec)), slot)
    assert verdict.run is inside
    assert verdict.reason == (None if inside else rules.OUTSIDE_WINDOW)


@pytest.mark.parametrize(
    ("zone", "spec", "slot", "deferred_to"),
    [
        pytest.param(
            BERLIN,
            ("sun", "02:30", "05:00"),
            utc(2026, 3, 29, 0, 45),
            utc(2026, 3, 29, 1, 0),
            id="berlin-gap",
        ),
        pytest.param(
            BERLIN,
            ("sun", "02:30", "06:00"),
            utc(2026, 10, 24, 23, 0),
            utc(2026, 10, 25, 0, 30),
            id="berlin-rep",
        ),
        pytest.param(
            NEW_YORK,
            ("mon-fri", "09:00", "17:00"),
            utc(2026, 3, 8, 14, 0),
            utc(2026, 3, 9, 13, 0),
            id="ny-wkend",
        ),
        pytest.param(
            NEW_YORK, ("sun", "02:15", "04:00"), utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 0), id="ny-gap"
        ),
        pytest.param(
            NEW_YORK,
            ("mon-sun", "00:00", "01:30"),
            utc(2026, 11, 1, 6, 15),
            utc(2026, 11, 2, 5, 0),
            id="ny-rep",
        ),
    ],
)
def test_deferral_goes_to_the_next_opening(zone, spec, slot, deferred_to) -> None:
    verdict = decide(SlotRules(zone=zone, windows=windows(spec), defer=True), slot)
    assert (verdict.run, verdict.reason, verdict.not_before) == (True, None, deferred_to)
    assert "deferred to" in verdict.detail


# --- Blackouts, calendars and precedence ----------------------------------------------------------

MAINTENANCE = parse_blackouts(
    [{"start": "2026-05-04T06:00:00Z", "end": "2026-05-04T10:00:00Z", "note": "db"}]
)
WEEKDAYS = windows(("mon-fri", "09:00", "17:00"))


@pytest.mark.parametrize(
    ("fields", "slot", "expected"),
    [
        pytest.param({}, utc(2026, 5, 2, 3), (True, None, None), id="no-rules"),
        pytest.param(
            {"blackouts": MAINTENANCE}, utc(2026, 5, 4, 6), (False, "blackout", None), id="blackout-start"
        ),
        pytest.param(
            {"blackouts": MAINTENANCE}, utc(2026, 5, 4, 10), (True, None, None), id="blackout-end-open"
        ),
        pytest.param(
            {"blackouts": MAINTENANCE, "defer": True},
            utc(2026, 5, 4, 7),
            (True, None, utc(2026, 5, 4, 10)),
            id="bo",
        ),
        pytest.param(
            {"blackouts": MAINTENANCE, "windows": WEEKDAYS, "defer": True},
            utc(2026, 5, 4, 7),
            (True, None, utc(2026, 5, 4, 10)),  # 12:00 in Berlin: the window is open
            id="blackout-then-window",
        ),
        pytest.param(
            {"excluded_dates": frozenset({date(2026, 5, 4)}), "defer": True},
            utc(2026, 5, 4, 7),
            (False, "calendar", None),
            id="calendar-never-defers",
        ),
        pytest.param(
            {"excluded_dates": frozenset({date(2026, 5, 4)})},
            utc(2026, 5, 3, 22, 30),  # 00:30 on 4 May in Berlin
            (False, "calendar", None),
            id="calendar-local-date",
        ),
        pytest.param(
            {"excluded_dates": frozenset({date(2026, 5, 4)}), "blackouts": MAINTENANCE, "windows": WEEKDAYS},
            utc(2026, 5, 4, 7),
            (False, "calendar", None),
            id="calendar-first",
        ),
        pytest.param(
            {"blackouts": MAINTENANCE, "windows": windows(("sat", "09:00", "17:00"))},
            utc(2026, 5, 4, 7),
            (False, "blackout", None),
            id="blackout-before-window",
        ),
        pytest.param(
            {"excluded_dates": frozenset({date(2026, 5, 4)}), "windows": WEEKDAYS, "defer": True},
            utc(2026, 5, 3, 12),  # Sunday; Monday excluded: Tuesday's opening
            (True, None, utc(2026, 5, 5, 7)),
            id="defer-skips-excluded-day",
        ),
        pytest.param(
            {
                "blackouts": parse_blackouts(
                    [{"start": "2026-01-01T00:00:00Z", "end": "2028-01-01T00:00:00Z"}]
                ),
                "defer": True,
            },
            utc(2026, 5, 4, 7),
            (False, "blackout", None),
            id="beyond-the-horizon",
        ),
    ],
)
def test_precedence_and_deferral(fields, slot, expected) -> None:
    verdict = decide(SlotRules(zone=BERLIN, **fields), slot)
    assert (verdict.run, verdict.reason, verdict.not_before) == expected


def test_a_naive_slot_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide(SlotRules(zone=BERLIN, windows=WEEKDAYS), datetime(2026, 5, 4, 7))  # noqa: DTZ001


# --- The policy: plans in, plans out --------------------------------------------------------------


def plan(slot: datetime, **fields) -> policies.SlotPlan:
    values = {"run": True, "reason": None, "not_before": None, "catchup": False, **fields}
    return policies.SlotPlan(slot=slot, **values)


def test_apply_rules_skips_defers_and_keeps_earlier_decisions() -> None:
    rules_ = SlotRules(zone=BERLIN, windows=WEEKDAYS, defer=True)
    saturday, monday = utc(2026, 5, 2, 10), utc(2026, 5, 4, 10)
    spread_to = utc(2026, 5, 4, 8)  # a catch-up spread put it later than the opening
    plans = [
        plan(monday),
        plan(saturday),
        plan(saturday - timedelta(hours=1), run=False, reason=policies.SkipReason.CATCHUP_NONE),
        plan(saturday + timedelta(hours=1), not_before=spread_to, catchup=True),
    ]
    decided = policies.apply_rules(plans, rules_)
    assert [(p.slot, p.run, p.reason, p.not_before, p.deferred) for p in decided] == [
        (saturday - timedelta(hours=1), False, policies.SkipReason.CATCHUP_NONE, None, False),
        (saturday, True, None, utc(2026, 5, 4, 7), True),
        (saturday + timedelta(hours=1), True, None, spread_to, True),
        (monday, True, None, None, False),
    ]
    skipping = policies.apply_rules(plans, SlotRules(zone=BERLIN, windows=WEEKDAYS))
    assert [p.reason for p in skipping][1:3] == [policies.SkipReason.OUTSIDE_WINDOW] * 2
    assert policies.apply_rules(plans, None) == sorted(plans, key=lambda p: p.slot)


def test_skip_reasons_are_the_rules_words() -> None:
    assert {policies.SkipReason(r) for r in (rules.OUTSIDE_WINDOW, rules.BLACKOUT, rules.CALENDAR)} == {
        policies.SkipReason.OUTSIDE_WINDOW,
        policies.SkipReason.BLACKOUT,
        policies.SkipReason.CALENDAR,
    }


# --- Property: the verdict against a minute-by-minute walk of the wall clock ----------------------


class Walk:
    """Every minute of [base, base + days) with its local wall clock; a window's span is found by scanning
    for the first minute whose wall reaches its start and its end, in real-time order."""

    def __init__(self, zone: ZoneInfo, base: datetime, days: int) -> None:
        self.zone, self.base = zone, base
        self.walls = [
            (base + timedelta(minutes=k)).astimezone(zone).replace(tzinfo=None) for k in range(days * 1440)
        ]

    def first_reaching(self, wall: datetime) -> int | None:
        start = max(
            0, int((wall - timedelta(hours=15) - self.base.replace(tzinfo=None)).total_seconds()) // 60
        )
        for k in range(start, len(self.walls)):
            if self.walls[k] >= wall:
                return k
        return None

    def allowed(self, rules_: SlotRules) -> list[bool]:
        inside = [not rules_.windows] * len(self.walls)
        first_day = self.walls[0].date() - timedelta(days=1)
        for offset in range((self.walls[-1].date() - first_day).days + 1):
            day = first_day + timedelta(days=offset)
            for w in rules_.windows:
                if day.weekday() not in w.days:
                    continue
                opens = self.first_reaching(datetime.combine(day, w.start))
                close_day = day + timedelta(days=1) if w.overnight else day
                closes = self.first_reaching(datetime.combine(close_day, w.end))
                for k in range(opens or 0, len(self.walls) if closes is None else closes):
                    if opens is not None:
                        inside[k] = True
        result = []
        for k, ok in enumerate(inside):
            moment = self.base + timedelta(minutes=k)
            blacked = any(b.start <= moment < b.end for b in rules_.blackouts)
            result.append(ok and not blacked and self.walls[k].date() not in rules_.excluded_dates)
        return result


TRANSITIONS = [
    (BERLIN, utc(2026, 3, 29, 1)),
    (BERLIN, utc(2026, 10, 25, 1)),
    (NEW_YORK, utc(2026, 3, 8, 7)),
    (NEW_YORK, utc(2026, 11, 1, 6)),
]
# Boundaries near the transitions (01:00-03:00) half the time, so gaps and repeats are hit often.
half_hours = st.one_of(st.integers(0, 47), st.integers(1, 6)).map(
    lambda n: f"{n // 2:02d}:{30 * (n % 2):02d}"
)
window_items = st.fixed_dictionaries(
    {
        # Every transition here is on a Sunday: most windows open on it, or on the Saturday before.
        "days": st.lists(st.sampled_from(rules.DAY_NAMES), min_size=1, max_size=7, unique=True).map(
            lambda days: days if len(days) > 2 else [*days, "sat", "sun"]
        ),
        "start": half_hours,
        "end": st.one_of(half_hours, st.just("24:00")),
    }
).filter(lambda w: w["start"] != w["end"])


@settings(max_examples=60, deadline=None)
@given(
    transition=st.sampled_from(TRANSITIONS),
    # On a half hour or a minute either side: where window boundaries and transitions fall.
    offset_minutes=st.tuples(st.integers(-24, 24), st.sampled_from([0, -1, 1])).map(
        lambda t: 30 * t[0] + t[1]
    ),
    window_list=st.lists(window_items, max_size=3),
    blackout=st.one_of(st.none(), st.tuples(st.integers(-48, 48), st.integers(1, 8))),
    excluded=st.lists(st.integers(-2, 2), max_size=2),
    defer=st.booleans(),
)
def test_a_slot_runs_iff_inside_a_window_outside_blackouts_and_not_excluded(
    transition, offset_minutes, window_list, blackout, excluded, defer
) -> None:
    zone, moment = transition
    slot = moment + timedelta(minutes=offset_minutes)
    blackouts = ()
    if blackout is not None:
        start = moment + timedelta(hours=blackout[0])
        blackouts = (rules.Blackout(start, start + timedelta(hours=blackout[1])),)
    local_day = moment.astimezone(zone).date()
    rules_ = SlotRules(
        zone=zone,
        windows=parse_windows(window_list),
        blackouts=blackouts,
        excluded_dates=frozenset(local_day + timedelta(days=d) for d in excluded),
        defer=defer,
    )
    base = slot - timedelta(days=2)
    walk = Walk(zone, base, 14)
    allowed = walk.allowed(rules_)
    k = 2 * 1440
    verdict = decide(rules_, slot)
    excluded_now = slot.astimezone(zone).date() in rules_.excluded_dates
    if allowed[k]:
        assert verdict == rules.RUN
    elif not defer or excluded_now:
        assert not verdict.run
        assert verdict.reason == (rules.CALENDAR if excluded_now else verdict.reason)
    else:
        expected = next((j for j in range(k, len(allowed)) if allowed[j]), None)
        if expected is None:  # beyond the walk: the deferral (if any) is later than it reaches
            assert verdict.not_before is None or verdict.not_before >= base + timedelta(minutes=len(allowed))
        else:
            assert verdict.run
            assert verdict.not_before == base + timedelta(minutes=expected)
