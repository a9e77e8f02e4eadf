"""Example-based tests of schedules.timing: the contract's tables, DST in both hemispheres, bounds, jitter,
descriptions and a long table of bad input. Property tests against the brute-force reference live in
test_timing_properties.py. No Django: run with ``-p no:django``."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from schedules import timing
from schedules.timing import (
    PRESETS,
    FireTime,
    Kind,
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
from tests.unit.timing_reference import reference_slots

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def utc(text: str) -> datetime:
    """'2026-03-08T07:00' (or with seconds) as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def cron(expression: str, zone: str = "UTC", **bounds: object) -> ScheduleSpec:
    return ScheduleSpec(kind="cron", cron_expression=expression, timezone=zone, **bounds)  # type: ignore[arg-type]


def local(text: str, zone: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def slots(spec: ScheduleSpec, after: datetime, count: int = 4, **kwargs: int) -> list[datetime]:
    return [f.slot for f in next_fire_times(spec, after, count, **kwargs)]


# ------------------------------------------------------------------------------------------------------------
# Cron slots: the contract's table, then DST around the world


CRON_CASES = [
    # The design doc's table (UTC results, the start instant excluded).
    pytest.param(
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T00:00",
        ["2026-03-07T07:30", "2026-03-08T07:00", "2026-03-09T06:30", "2026-03-10T06:30"],
        id="ny-spring-gap-0230-runs-at-0300",
    ),
    pytest.param(
        "30 1 * * *",
        "America/New_York",
        "2026-10-31T00:00",
        ["2026-10-31T05:30", "2026-11-01T05:30", "2026-11-02T06:30", "2026-11-03T06:30"],
        id="ny-fall-fold-0130-first-copy-only",
    ),
    pytest.param(
        "0 * * * *",
        "America/New_York",
        "2026-11-01T00:30",
        ["2026-11-01T05:00", "2026-11-01T06:00", "2026-11-01T07:00", "2026-11-01T08:00"],
        id="ny-fall-hourly-both-copies",
    ),
    pytest.param(
        "0 0 29 2 *",
        "UTC",
        "2026-01-01T00:00",
        ["2028-02-29T00:00", "2032-02-29T00:00", "2036-02-29T00:00", "2040-02-29T00:00"],
        id="leap-day",
    ),
    pytest.param(
        "0 12 1 * 1",
        "UTC",
        "2026-01-01T00:00",
        ["2026-01-01T12:00", "2026-01-05T12:00", "2026-01-12T12:00", "2026-01-19T12:00"],
        id="dom-or-dow-both-restricted",
    ),
    pytest.param(
        "*/10 * * * * *",
        "UTC",
        "2026-01-01T00:00:05",
        ["2026-01-01T00:00:10", "2026-01-01T00:00:20", "2026-01-01T00:00:30", "2026-01-01T00:00:40"],
        id="seconds-first-six-fields",
    ),
    # North America, more.
    pytest.param(
        "0 * * * *",
        "America/New_York",
        "2026-03-08T00:30",
        ["2026-03-08T06:00", "2026-03-08T07:00", "2026-03-08T08:00", "2026-03-08T09:00"],
        id="ny-spring-hourly-no-invented-0200",
    ),
    pytest.param(
        "0,15,30,45 2 * * *",
        "America/New_York",
        "2026-03-07T12:00",
        ["2026-03-08T07:00", "2026-03-09T06:00", "2026-03-09T06:15", "2026-03-09T06:30"],
        id="ny-spring-four-skipped-times-collapse-to-one-run",
    ),
    pytest.param(
        "*/15 * * * *",
        "America/New_York",
        "2026-11-01T00:50",
        [
            "2026-11-01T05:00",
            "2026-11-01T05:15",
            "2026-11-01T05:30",
            "2026-11-01T05:45",
            "2026-11-01T06:00",
            "2026-11-01T06:15",
            "2026-11-01T06:30",
            "2026-11-01T06:45",
            "2026-11-01T07:00",
        ],
        id="ny-fall-every-15-min-both-copies-in-real-order",
    ),
    pytest.param(
        "* 2 * * *",
        "America/New_York",
        "2026-03-07T23:00",
        ["2026-03-09T06:00", "2026-03-09T06:01", "2026-03-09T06:02"],
        id="ny-spring-minute-star-is-elapsed-none-in-gap",
    ),
    pytest.param(
        "* 0-59 2 * * *",
        "America/New_York",
        "2026-03-08T01:59:58",
        ["2026-03-08T07:00:00", "2026-03-09T06:00:00", "2026-03-09T06:00:01"],
        id="ny-spring-3600-fixed-seconds-collapse-to-one-run",
    ),
    pytest.param(
        "* * 2 * * *",
        "America/New_York",
        "2026-03-08T01:59:58",
        ["2026-03-09T06:00:00", "2026-03-09T06:00:01"],
        id="ny-spring-3600-elapsed-seconds-all-skipped",
    ),
    # Southern hemisphere.
    pytest.param(
        "30 2 * * *",
        "Australia/Sydney",
        "2026-10-03T00:00",
        ["2026-10-02T16:30", "2026-10-03T16:00", "2026-10-04T15:30", "2026-10-05T15:30"],
        id="sydney-spring-gap-0230",
    ),
    pytest.param(
        "30 2 * * *",
        "Australia/Sydney",
        "2026-04-04T00:00",
        ["2026-04-03T15:30", "2026-04-04T15:30", "2026-04-05T16:30", "2026-04-06T16:30"],
        id="sydney-autumn-fold-0230-first-copy",
    ),
    pytest.param(
        "*/30 2 * * *",
        "Australia/Sydney",
        "2026-04-05T00:00",
        ["2026-04-04T15:00", "2026-04-04T15:30", "2026-04-04T16:00", "2026-04-04T16:30", "2026-04-05T16:00"],
        id="sydney-autumn-fold-elapsed-both-copies",
    ),
    pytest.param(
        "0 0 * * *",
        "America/Santiago",
        "2026-09-04T12:00",
        ["2026-09-05T04:00", "2026-09-06T04:00", "2026-09-07T03:00", "2026-09-08T03:00"],
        id="santiago-midnight-gap-runs-at-0100",
    ),
    pytest.param(
        "30 23 * * *",
        "America/Santiago",
        "2026-04-03T12:00",
        ["2026-04-04T02:30", "2026-04-05T02:30", "2026-04-06T03:30", "2026-04-07T03:30"],
        id="santiago-fold-2330-first-copy",
    ),
    pytest.param(
        "30 * * * *",
        "America/Santiago",
        "2026-04-04T22:00",
        ["2026-04-05T01:30", "2026-04-05T02:30", "2026-04-05T03:30", "2026-04-05T04:30"],
        id="santiago-fold-hourly-both-copies",
    ),
    pytest.param(
        "* 0-59 0 * * *",
        "America/Santiago",
        "2026-09-05T23:59:58",
        ["2026-09-06T04:00:00", "2026-09-07T03:00:00", "2026-09-07T03:00:01"],
        id="santiago-midnight-gap-fixed-seconds-collapse",
    ),
    # Lord Howe: a 30-minute shift.
    pytest.param(
        "15 2 * * *",
        "Australia/Lord_Howe",
        "2026-10-03T00:00",
        ["2026-10-02T15:45", "2026-10-03T15:30", "2026-10-04T15:15", "2026-10-05T15:15"],
        id="lord-howe-half-hour-gap",
    ),
    pytest.param(
        "45 1 * * *",
        "Australia/Lord_Howe",
        "2026-04-04T00:00",
        ["2026-04-03T14:45", "2026-04-04T14:45", "2026-04-05T15:15", "2026-04-06T15:15"],
        id="lord-howe-half-hour-fold-first-copy",
    ),
    pytest.param(
        "*/20 * * * *",
        "Australia/Lord_Howe",
        "2026-04-05T01:10",
        ["2026-04-04T14:20", "2026-04-04T14:40", "2026-04-04T15:10", "2026-04-04T15:30", "2026-04-04T15:50"],
        id="lord-howe-half-hour-fold-elapsed",
    ),
    # Europe.
    pytest.param(
        "30 1 * * *",
        "Europe/London",
        "2026-03-28T00:00",
        ["2026-03-28T01:30", "2026-03-29T01:00", "2026-03-30T00:30", "2026-03-31T00:30"],
        id="london-spring-gap-0130",
    ),
    pytest.param(
        "30 1 * * *",
        "Europe/London",
        "2026-10-24T00:00",
        ["2026-10-24T00:30", "2026-10-25T00:30", "2026-10-26T01:30", "2026-10-27T01:30"],
        id="london-autumn-fold-0130",
    ),
    pytest.param(
        "0 2 * * *",
        "Europe/Berlin",
        "2026-03-28T00:00",
        ["2026-03-28T01:00", "2026-03-29T01:00", "2026-03-30T00:00", "2026-03-31T00:00"],
        id="berlin-spring-gap-0200",
    ),
    pytest.param(
        "*/30 2 * * *",
        "Europe/Berlin",
        "2026-10-25T01:50",
        ["2026-10-25T00:00", "2026-10-25T00:30", "2026-10-25T01:00", "2026-10-25T01:30", "2026-10-26T01:00"],
        id="berlin-autumn-fold-minute-step-is-elapsed",
    ),
    pytest.param(
        "0 2 * * *",
        "Europe/Berlin",
        "2026-10-24T12:00",
        ["2026-10-25T00:00", "2026-10-26T01:00"],
        id="berlin-autumn-fold-fixed-first-copy",
    ),
    # Calendar.
    pytest.param(
        "0 0 29 2 *",
        "UTC",
        "2096-03-01T00:00",
        ["2104-02-29T00:00", "2108-02-29T00:00"],
        id="leap-day-skips-2100",
    ),
    pytest.param(
        "0 0 * 2 1#5",
        "UTC",
        "2026-01-01T00:00",
        ["2044-02-29T00:00", "2072-02-29T00:00", "2112-02-29T00:00"],
        id="fifth-monday-of-february-is-feb-29-on-a-monday",
    ),
    pytest.param(
        "0 0 31 * *",
        "UTC",
        "2026-01-01T00:00",
        ["2026-01-31T00:00", "2026-03-31T00:00", "2026-05-31T00:00", "2026-07-31T00:00"],
        id="31st-skips-short-months",
    ),
    pytest.param(
        "0 0 L * *",
        "UTC",
        "2028-01-01T00:00",
        ["2028-01-31T00:00", "2028-02-29T00:00", "2028-03-31T00:00", "2028-04-30T00:00"],
        id="L-last-day-of-month",
    ),
    pytest.param(
        "0 0 1,L * *",
        "UTC",
        "2026-01-15T00:00",
        ["2026-01-31T00:00", "2026-02-01T00:00", "2026-02-28T00:00", "2026-03-01T00:00"],
        id="L-in-a-list",
    ),
    pytest.param(
        "0 0 * * 5L",
        "UTC",
        "2026-01-01T00:00",
        ["2026-01-30T00:00", "2026-02-27T00:00", "2026-03-27T00:00", "2026-04-24T00:00"],
        id="5L-last-friday",
    ),
    pytest.param(
        "0 0 * * FRIL",
        "UTC",
        "2026-01-01T00:00",
        ["2026-01-30T00:00", "2026-02-27T00:00", "2026-03-27T00:00", "2026-04-24T00:00"],
        id="FRIL-last-friday-by-name",
    ),
    pytest.param(
        "0 0 * * 1#2",
        "UTC",
        "2026-01-01T00:00",
        ["2026-01-12T00:00", "2026-02-09T00:00", "2026-03-09T00:00", "2026-04-13T00:00"],
        id="1#2-second-monday",
    ),
    pytest.param(
        "0 9 * JAN,jul MON-fri",
        "UTC",
        "2026-01-01T00:00",
        ["2026-01-01T09:00", "2026-01-02T09:00", "2026-01-05T09:00", "2026-01-06T09:00"],
        id="names-case-insensitive",
    ),
    pytest.param(
        "0 0 */2 * 1",
        "UTC",
        "2026-01-01T00:00",
        ["2026-01-05T00:00", "2026-01-19T00:00", "2026-02-09T00:00", "2026-02-23T00:00"],
        id="and-rule-odd-days-that-are-mondays",
    ),
    pytest.param(
        "0 0 1,15 * 1",
        "UTC",
        "2025-12-31T00:00",
        ["2026-01-01T00:00", "2026-01-05T00:00", "2026-01-12T00:00", "2026-01-15T00:00", "2026-01-19T00:00"],
        id="or-rule-1st-15th-or-mondays",
    ),
    pytest.param(
        "0 0 * * SAT-SUN",
        "UTC",
        "2026-01-01T00:00",
        ["2026-01-03T00:00", "2026-01-04T00:00", "2026-01-10T00:00", "2026-01-11T00:00"],
        id="sat-sun-range-wraps-to-sunday",
    ),
    pytest.param(
        "0 0 5-5 * *",
        "UTC",
        "2026-01-01T00:00",
        ["2026-01-05T00:00", "2026-02-05T00:00"],
        id="equal-range-is-one-value-not-the-whole-field",
    ),
    pytest.param(
        "58/1 23 31 12 *",
        "UTC",
        "2026-06-01T00:00",
        ["2026-12-31T23:58", "2026-12-31T23:59", "2027-12-31T23:58"],
        id="start-slash-step-runs-to-field-end-then-new-year",
    ),
]


@pytest.mark.parametrize(("expression", "zone", "start", "expected"), CRON_CASES)
def test_cron_slots(expression: str, zone: str, start: str, expected: list[str]) -> None:
    got = slots(cron(expression, zone), local(start, zone), len(expected))
    assert got == [utc(e) for e in expected]
    # The independent reference agrees on every case of the table too.
    assert reference_slots(expression, zone, local(start, zone), got[-1]) == got


@pytest.mark.parametrize(
    ("expression", "equivalent"),
    [
        pytest.param("0 0 ? * MON", "0 0 * * 1", id="question-mark-dow"),
        pytest.param("0 0 1 * ?", "0 0 1 * *", id="question-mark-dom"),
        pytest.param("0 0 * * 7", "0 0 * * 0", id="dow-7-is-sunday"),
        pytest.param("0 0 * * sun", "0 0 * * 0", id="dow-name"),
        pytest.param("0 0 1 jan *", "0 0 1 1 *", id="month-name"),
        pytest.param("@yearly", "0 0 1 1 *", id="macro-yearly"),
        pytest.param("@annually", "0 0 1 1 *", id="macro-annually"),
        pytest.param("@monthly", "0 0 1 * *", id="macro-monthly"),
        pytest.param("@weekly", "0 0 * * 0", id="macro-weekly"),
        pytest.param("@daily", "0 0 * * *", id="macro-daily"),
        pytest.param("@MIDNIGHT", "0 0 * * *", id="macro-midnight-any-case"),
        pytest.param("@hourly", "0 * * * *", id="macro-hourly"),
        pytest.param("0 0 0 * * *", "0 0 * * *", id="six-fields-second-zero"),
        pytest.param("  0   9 *\t* 1-5 ", "0 9 * * 1-5", id="whitespace"),
        pytest.param("5/20 * * * *", "5,25,45 * * * *", id="start-slash-step"),
        pytest.param("0 0 * * 1-5/2", "0 0 * * 1,3,5", id="range-step"),
        pytest.param("0 0 * * */3", "0 0 * * 0,3,6", id="dow-star-step"),
    ],
)
def test_equivalent_expressions(expression: str, equivalent: str) -> None:
    for zone in ("UTC", "America/New_York"):
        assert slots(cron(expression, zone), NOW, 12) == slots(cron(equivalent, zone), NOW, 12)


@pytest.mark.parametrize(
    ("expression", "has_seconds", "elapsed"),
    [
        pytest.param("* * * * *", False, True, id="every-minute"),
        pytest.param("*/5 * * * *", False, True, id="minute-step"),
        pytest.param("0 * * * *", False, True, id="hour-star"),
        pytest.param("0 */2 * * *", False, True, id="hour-step"),
        pytest.param("* 2 * * *", False, True, id="minute-star-fixed-hour"),
        pytest.param("30 2 * * *", False, False, id="fixed"),
        pytest.param("0-59 0-23 * * *", False, False, id="full-ranges-are-fixed-by-syntax"),
        pytest.param("@hourly", False, True, id="hourly-macro"),
        pytest.param("@daily", False, False, id="daily-macro"),
        pytest.param("*/10 * * * * *", True, True, id="six-field-minute-star"),
        pytest.param("* 0 2 * * *", True, False, id="six-field-seconds-star-only"),
        pytest.param("0 0 */2 * * *", True, True, id="six-field-hour-step"),
    ],
)
def test_elapsed_time_flag_is_decided_by_syntax(expression: str, has_seconds: bool, elapsed: bool) -> None:
    parsed = parse_cron(expression)
    assert parsed.has_seconds is has_seconds
    assert parsed.elapsed_time is elapsed


def test_parse_keeps_expression_normalised_and_day_rule() -> None:
    parsed = parse_cron("  0  0 */2 *   1 ")
    assert parsed.expression == "0 0 */2 * 1"
    assert parsed.day_or is False
    assert parse_cron("0 0 1,15 * 1").day_or is True
    assert parse_cron("@daily").expression == "@daily"
    assert parse_cron("0 0 1 * *") == parse_cron("0  0 1 * *")


def test_six_field_gap_collapses_to_the_transition_second() -> None:
    got = next_fire_times(
        cron("*/20 0 2 * * *", "America/New_York"), local("2026-03-08T00:00", "America/New_York"), 2
    )
    assert [f.slot for f in got] == [utc("2026-03-08T07:00:00"), utc("2026-03-09T06:00:00")]
    assert got[0].note is not None
    assert got[0].note.startswith("02:00:00, 02:00:20 and 02:00:40 do not exist on 2026-03-08")


# ------------------------------------------------------------------------------------------------------------
# DST notes and local times


def test_notes_for_gap_and_fold() -> None:
    ny = "America/New_York"
    gap = next_fire_times(cron("30 2 * * *", ny), local("2026-03-08T00:00", ny), 2)
    assert gap[0].note == "02:30 does not exist on 2026-03-08 (DST gap); runs at 03:00 EDT"
    assert gap[0].local == datetime(2026, 3, 8, 3, 0, tzinfo=ZoneInfo(ny))
    assert gap[1].note is None
    fold = next_fire_times(cron("30 1 * * *", ny), local("2026-11-01T00:00", ny), 1)
    assert fold[0].note == "01:30 occurs twice on 2026-11-01; runs at the first (EDT)"
    both = next_fire_times(cron("30 * * * *", ny), local("2026-11-01T01:00", ny), 2)
    assert [f.note for f in both] == ["repeated hour: first 01:30 (EDT)", "repeated hour: second 01:30 (EST)"]
    collapsed = next_fire_times(cron("0,15,30,45 2 * * *", ny), local("2026-03-08T00:00", ny), 1)
    assert collapsed[0].note == (
        "02:00, 02:15, 02:30 and 02:45 do not exist on 2026-03-08 (DST gap); they run once at 03:00 EDT"
    )
    lord_howe = next_fire_times(cron("45 1 * * *", "Australia/Lord_Howe"), utc("2026-04-04T00:00"), 1)
    assert lord_howe[0].note == "01:45 occurs twice on 2026-04-05; runs at the first (UTC+11:00)"


def test_walks_that_begin_inside_a_repeated_hour() -> None:
    """A walk from inside NY's repeated 01:00-02:00 starts at its own wall, so the copies it still owes must
    come from the span's start: the second 01:00 of an hourly job is due after a first-copy 01:30."""
    ny = "America/New_York"
    hourly = next_fire_times(cron("0 * * * *", ny), utc("2026-11-01T05:30"), 2)  # 01:30 EDT
    assert [f.slot for f in hourly] == [utc("2026-11-01T06:00"), utc("2026-11-01T07:00")]
    assert hourly[0].note == "repeated hour: second 01:00 (EST)"
    every_second = cron("* * * * * *", ny)
    in_second_copy = next_fire_times(every_second, utc("2026-11-01T06:30"), 2)  # 01:30:00 EST
    assert [f.slot for f in in_second_copy] == [utc("2026-11-01T06:30:01"), utc("2026-11-01T06:30:02")]
    assert in_second_copy[0].note == "repeated hour: second 01:30:01 (EST)"
    across = next_fire_times(every_second, utc("2026-11-01T05:59:59"), 2)  # the last first-copy second
    assert [f.slot for f in across] == [utc("2026-11-01T06:00:00"), utc("2026-11-01T06:00:01")]
    assert across[0].note == "repeated hour: second 01:00:00 (EST)"
    leaving = next_fire_times(every_second, utc("2026-11-01T06:59:59"), 1)  # the last second copy
    assert [(f.slot, f.note) for f in leaving] == [(utc("2026-11-01T07:00:00"), None)]
    fixed = cron("0-59 0-59 1 * * *", ny)  # fixed time: the repeated hour runs once, at its first copy
    assert next_slot(fixed, utc("2026-11-01T06:30")) == utc("2026-11-02T06:00")
    assert next_slot(fixed, utc("2026-11-01T05:30")) == utc("2026-11-01T05:30:01")


def test_a_fixed_time_walk_from_a_spring_forward_runs_the_gap_at_it() -> None:
    ny = "America/New_York"
    spec = cron("30 2 * * *", ny, start_at=utc("2026-03-08T07:00"))  # 03:00 EDT, the transition
    got = next_fire_times(spec, utc("2026-03-01T00:00"), 2)
    assert [f.slot for f in got] == [utc("2026-03-08T07:00"), utc("2026-03-09T06:30")]
    assert got[0].note == "02:30 does not exist on 2026-03-08 (DST gap); runs at 03:00 EDT"


def test_local_is_the_slot_in_the_trigger_zone() -> None:
    for fire in next_fire_times(cron("*/30 * * * *", "Asia/Kolkata"), NOW, 5):
        assert isinstance(fire, FireTime)
        assert fire.slot.tzinfo is UTC
        assert fire.local == fire.slot
        assert fire.local.utcoffset() == timedelta(hours=5, minutes=30)
        assert fire.local.minute in (0, 30)


def test_after_may_be_in_any_zone_and_is_excluded() -> None:
    after = local("2026-01-01T09:00", "Europe/Paris")  # 08:00 UTC, itself a slot
    assert slots(cron("0 * * * *"), after, 2) == [utc("2026-01-01T09:00"), utc("2026-01-01T10:00")]


def test_after_inside_a_fold_keeps_the_second_copies_still_to_come() -> None:
    ny = "America/New_York"
    spec = cron("*/20 * * * *", ny)
    # 05:50 UTC is 01:50 EDT, the first pass through 01:xx; the EST copies 01:00-01:40 are still ahead.
    got = slots(spec, utc("2026-11-01T05:50"), 4)
    assert got == [
        utc("2026-11-01T06:00"),
        utc("2026-11-01T06:20"),
        utc("2026-11-01T06:40"),
        utc("2026-11-01T07:00"),
    ]
    # A fixed time never runs its second copy, whatever `after` is.
    assert slots(cron("30 1 * * *", ny), utc("2026-11-01T05:40"), 1) == [utc("2026-11-02T06:30")]


# ------------------------------------------------------------------------------------------------------------
# Intervals, one-offs, bounds


def test_interval_is_elapsed_time_across_dst() -> None:
    anchor = utc("2026-03-08T05:17:30")
    spec = ScheduleSpec(kind="interval", interval_seconds=3600, anchor_at=anchor, timezone="America/New_York")
    got = next_fire_times(spec, utc("2026-03-08T05:00"), 6)
    assert [f.slot for f in got] == [anchor + timedelta(hours=k) for k in range(6)]
    assert all(f.note is None for f in got)
    # 01:17 EST, then 03:17 EDT: an hour apart in real time, two on the wall clock.
    assert [f.local.hour for f in got[:3]] == [0, 1, 3]


@pytest.mark.parametrize(
    ("after", "expected_first"),
    [
        pytest.param("2026-01-01T00:00", "2026-01-01T00:10:07", id="before-anchor-gives-anchor"),
        pytest.param("2026-01-01T00:10:07", "2026-01-01T00:17:07", id="on-a-slot-is-excluded"),
        pytest.param("2026-01-01T00:17:06", "2026-01-01T00:17:07", id="just-before-a-slot"),
        pytest.param("2026-07-01T12:34:56", "2026-07-01T12:37:07", id="far-later-no-drift"),
    ],
)
def test_interval_anchoring(after: str, expected_first: str) -> None:
    anchor = utc("2026-01-01T00:10:07")
    spec = ScheduleSpec(kind="interval", interval_seconds=420, anchor_at=anchor)
    got = slots(spec, utc(after), 3)
    assert got[0] == utc(expected_first)
    for slot in got:
        assert (slot - anchor) % timedelta(seconds=420) == timedelta(0)
    assert got == sorted(got)


def test_interval_without_anchor_uses_start_at_or_asks_for_anchor() -> None:
    start = utc("2026-02-01T00:00")
    spec = ScheduleSpec(kind="interval", interval_seconds=60, start_at=start)
    assert slots(spec, NOW, 2) == [start, start + timedelta(seconds=60)]
    with pytest.raises(TimingError) as info:
        next_slot(ScheduleSpec(kind="interval", interval_seconds=60), NOW)
    assert info.value.field == "anchor_at"


def test_once_fires_once_then_completes() -> None:
    run_at = utc("2026-12-01T08:00")
    spec = ScheduleSpec(kind="once", run_at=run_at, timezone="Europe/Paris")
    got = next_fire_times(spec, NOW, 5)
    assert [f.slot for f in got] == [run_at]
    assert got[0].local.hour == 9
    assert next_slot(spec, NOW) == run_at
    assert next_slot(spec, NOW, runs_so_far=1) is None
    assert next_slot(spec, run_at) is None
    assert slots_between(spec, NOW, run_at, limit=10) == [run_at]
    validate_spec(spec, now=NOW)
    with pytest.raises(TimingError) as info:
        validate_spec(spec, now=run_at)
    assert info.value.field == "run_at"


def test_start_and_end_are_inclusive_bounds() -> None:
    spec = cron("0 * * * *", start_at=utc("2026-01-01T05:00"), end_at=utc("2026-01-01T08:00"))
    assert slots(spec, NOW, 10) == [utc(f"2026-01-01T0{h}:00") for h in (5, 6, 7, 8)]
    assert slots(spec, utc("2026-01-01T06:30"), 10) == [utc("2026-01-01T07:00"), utc("2026-01-01T08:00")]
    assert next_slot(spec, utc("2026-01-01T08:00")) is None
    interval = ScheduleSpec(
        kind="interval",
        interval_seconds=1800,
        anchor_at=utc("2026-01-01T00:00"),
        start_at=utc("2026-01-01T01:00"),
        end_at=utc("2026-01-01T02:00"),
    )
    assert slots(interval, NOW, 10) == [
        utc("2026-01-01T01:00"),
        utc("2026-01-01T01:30"),
        utc("2026-01-01T02:00"),
    ]


def test_max_runs_counts_runs_so_far() -> None:
    spec = cron("*/5 * * * *", max_runs=3)
    assert len(slots(spec, NOW, 10)) == 3
    assert len(slots(spec, NOW, 10, runs_so_far=2)) == 1
    assert slots(spec, NOW, 10, runs_so_far=3) == []
    assert next_slot(spec, NOW, runs_so_far=2) == utc("2026-01-01T00:05")
    assert next_slot(spec, NOW, runs_so_far=3) is None
    assert slots_between(spec, NOW, utc("2026-01-02T00:00"), limit=100) == slots(spec, NOW, 10)
    assert len(slots_between(spec, NOW, utc("2026-01-02T00:00"), limit=100, runs_so_far=1)) == 2


def test_slots_between_is_half_open_and_limited() -> None:
    spec = cron("*/15 * * * *")
    got = slots_between(spec, utc("2026-01-01T00:00"), utc("2026-01-01T01:00"), limit=10)
    assert got == [
        utc("2026-01-01T00:15"),
        utc("2026-01-01T00:30"),
        utc("2026-01-01T00:45"),
        utc("2026-01-01T01:00"),
    ]
    assert slots_between(spec, utc("2026-01-01T00:00"), utc("2026-01-01T01:00"), limit=2) == got[:2]
    assert slots_between(spec, utc("2026-01-01T01:00"), utc("2026-01-01T00:00"), limit=10) == []
    assert slots_between(spec, utc("2026-01-01T00:00"), utc("2026-01-01T01:00"), limit=0) == []


def test_next_slot_matches_first_fire_time_and_slot_identity() -> None:
    spec = cron("0 9 * * 1-5", "America/Los_Angeles")
    first = next_fire_times(spec, NOW, 1)[0].slot
    assert next_slot(spec, NOW) == first
    # The check executions use to recognise one of the schedule's own slots.
    tiny = timedelta(microseconds=1)
    assert next_slot(spec, first - tiny) == first
    assert next_slot(spec, first + timedelta(minutes=1) - tiny) != first + timedelta(minutes=1)


def test_count_zero_and_far_future() -> None:
    assert next_fire_times(cron("* * * * *"), NOW, 0) == []
    far = datetime(9998, 12, 31, 23, 0, tzinfo=UTC)
    got = slots(cron("0 0 29 2 *"), far, 3)
    assert got == []
    assert next_slot(cron("0 0 * * *", "Pacific/Kiritimati"), datetime(9999, 12, 31, tzinfo=UTC)) is None
    year_one = datetime(1, 1, 1, tzinfo=UTC)
    assert next_slot(cron("0 0 * * *", "Pacific/Kiritimati"), year_one) is not None


# ------------------------------------------------------------------------------------------------------------
# Spacing and jitter


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(cron("0 9 * * 1-5"), 86400, id="weekdays"),
        pytest.param(cron("0 9 * * 1"), 7 * 86400, id="weekly"),
        pytest.param(cron("*/10 * * * * *"), 10, id="every-10-seconds"),
        pytest.param(cron("0,1 * * * *"), 60, id="two-adjacent-minutes"),
        pytest.param(cron("0 8,20 * * *"), 12 * 3600, id="twice-a-day"),
        pytest.param(cron("0 22 * * *", "America/New_York"), 23 * 3600, id="daily-ny-short-day"),
        pytest.param(cron("30 2 * * *", "America/New_York"), 23.5 * 3600, id="gap-moves-0230-to-0300"),
        pytest.param(cron("59 1,2 * * *", "America/New_York"), 60, id="gap-brings-0159-and-0300-together"),
        pytest.param(cron("30 * * * *", "Australia/Lord_Howe"), 1800, id="lord-howe-half-hour-fold"),
        pytest.param(cron("0 0 29 2 *"), 1461 * 86400, id="leap-day"),
        pytest.param(cron("0 0 * 2 1#5"), 10227 * 86400, id="fifth-monday-february-28-years"),
        pytest.param(ScheduleSpec(kind="interval", interval_seconds=90, anchor_at=NOW), 90, id="interval"),
        pytest.param(ScheduleSpec(kind="once", run_at=utc("2026-06-01T00:00")), None, id="once"),
    ],
)
def test_min_spacing(spec: ScheduleSpec, expected: float | None) -> None:
    assert min_spacing_seconds(spec) == expected


def test_min_spacing_is_fast() -> None:
    import time

    start = time.perf_counter()
    min_spacing_seconds(cron("7 */3 * * 1-5", "Europe/Dublin"))
    assert time.perf_counter() - start < 0.5  # ~15 ms; generous for a loaded CI machine


def test_jitter_offset_is_deterministic_and_bounded() -> None:
    slot = utc("2026-01-01T09:00")
    offsets = {jitter_offset("trigger-a", slot + timedelta(minutes=k), 30) for k in range(300)}
    assert offsets <= {timedelta(seconds=s) for s in range(31)}
    assert len(offsets) > 20  # spread over the range
    assert jitter_offset("trigger-a", slot, 30) == jitter_offset("trigger-a", slot, 30)
    # The same instant in another zone is the same slot.
    assert jitter_offset("trigger-a", slot, 30) == jitter_offset(
        "trigger-a", slot.astimezone(ZoneInfo("Asia/Tokyo")), 30
    )
    assert jitter_offset("t", slot, 0) == timedelta(0)
    # A known value pins the hash: sha256("trigger-a|2026-01-01T09:00:00+00:00"), first 8 bytes, mod 3601.
    assert jitter_offset("trigger-a", slot, 3600) == timedelta(seconds=1422)
    different = [jitter_offset(f"trigger-{i}", slot, 3600) for i in range(20)]
    assert len(set(different)) > 10


def test_jitter_offset_is_stable_across_processes() -> None:
    code = (
        "from datetime import datetime, UTC; from schedules.timing import jitter_offset; "
        "print(jitter_offset('abc', datetime(2026, 1, 1, tzinfo=UTC), 1000).total_seconds())"
    )
    runs = {
        subprocess.run(  # noqa: S603, RUF100 - our own interpreter, a constant script
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)},
            cwd=REPO,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1
    assert runs.pop().strip() == str(
        jitter_offset("abc", datetime(2026, 1, 1, tzinfo=UTC), 1000).total_seconds()
    )


@pytest.mark.parametrize(
    ("spec", "jitter", "ok"),
    [
        pytest.param(cron("*/5 * * * *"), 0, True, id="zero"),
        pytest.param(cron("*/5 * * * *"), 299, True, id="just-below-spacing"),
        pytest.param(cron("*/5 * * * *"), 300, False, id="equal-to-spacing"),
        pytest.param(cron("0,1 * * * *"), 60, False, id="uneven-cron-smallest-gap"),
        pytest.param(cron("59 1,2 * * *", "America/New_York"), 120, False, id="dst-shrunk-gap"),
        pytest.param(
            ScheduleSpec(kind="interval", interval_seconds=60, anchor_at=NOW), 59, True, id="interval-ok"
        ),
        pytest.param(
            ScheduleSpec(kind="interval", interval_seconds=60, anchor_at=NOW), 60, False, id="interval-bad"
        ),
        pytest.param(ScheduleSpec(kind="once", run_at=utc("2026-06-01T00:00")), 86400, True, id="once-any"),
        pytest.param(cron("* * * * *"), -1, False, id="negative"),
    ],
)
def test_validate_jitter(spec: ScheduleSpec, jitter: int, ok: bool) -> None:
    if ok:
        validate_jitter(spec, jitter)
    else:
        with pytest.raises(TimingError) as info:
            validate_jitter(spec, jitter)
        assert info.value.field == "jitter_seconds"


@pytest.mark.parametrize("bad", [1.5, "10", True, None])
def test_validate_jitter_types(bad: object) -> None:
    with pytest.raises(TimingError) as info:
        validate_jitter(cron("* * * * *"), bad)  # type: ignore[arg-type]
    assert info.value.field == "jitter_seconds"


def test_jitter_below_spacing_never_reorders() -> None:
    spec = cron("59 1,2 * * *", "America/New_York")
    spacing = min_spacing_seconds(spec)
    assert spacing is not None
    jitter = int(spacing) - 1
    validate_jitter(spec, jitter)
    got = slots(spec, utc("2026-03-01T00:00"), 40)
    fired = [s + jitter_offset("x", s, jitter) for s in got]
    assert fired == sorted(fired)
    assert len(set(fired)) == len(fired)


# ------------------------------------------------------------------------------------------------------------
# Descriptions and presets


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            cron("0 9 * * 1-5", "America/Los_Angeles"),
            "At 09:00, Monday through Friday (America/Los_Angeles)",
            id="weekdays",
        ),
        pytest.param(cron("*/10 * * * * *"), "Every 10 seconds (UTC)", id="seconds-first"),
        pytest.param(cron("5 0 2 * * *"), "At 02:00:05 (UTC)", id="seconds-first-fixed"),
        pytest.param(
            cron("0 0 12 ? * MON"), "At 12:00, only on Monday (UTC)", id="six-fields-with-question-mark"
        ),
        pytest.param(cron("0 0 */2 * 1"), "At 00:00, every 2 days, and only on Monday (UTC)", id="and-rule"),
        pytest.param(
            cron("0 0 1,15 * 1"), "At 00:00, on day 1 and 15 of the month, or on Monday (UTC)", id="or-rule"
        ),
        pytest.param(cron("@hourly", "Europe/Berlin"), "Every hour (Europe/Berlin)", id="macro"),
        pytest.param(cron("30 17 * * *", "UTC", max_runs=3), "At 17:30 (UTC), at most 3 runs", id="max-runs"),
        pytest.param(
            ScheduleSpec(kind="interval", interval_seconds=900, anchor_at=NOW),
            "Every 15 minutes from 2026-01-01 00:00 UTC",
            id="interval",
        ),
        pytest.param(
            ScheduleSpec(kind="interval", interval_seconds=7200, anchor_at=NOW, timezone="Asia/Tokyo"),
            "Every 2 hours from 2026-01-01 09:00 Asia/Tokyo",
            id="interval-zone",
        ),
        pytest.param(
            ScheduleSpec(kind="interval", interval_seconds=90), "Every 90 seconds (UTC)", id="no-anchor"
        ),
        pytest.param(
            ScheduleSpec(
                kind="interval", interval_seconds=86400, anchor_at=NOW, end_at=utc("2026-02-01T00:00")
            ),
            "Every day from 2026-01-01 00:00 UTC, until 2026-02-01 00:00",
            id="interval-end",
        ),
        pytest.param(
            ScheduleSpec(kind="once", run_at=utc("2026-12-01T08:00"), timezone="Europe/Paris"),
            "Once at 2026-12-01 09:00 (Europe/Paris)",
            id="once",
        ),
    ],
)
def test_describe(spec: ScheduleSpec, expected: str) -> None:
    assert describe(spec) == expected


def test_presets_parse_and_describe() -> None:
    keys = [p.key for p in PRESETS]
    assert len(keys) == len(set(keys)) == 9
    expressions = {p.expression for p in PRESETS}
    assert expressions == {
        "* * * * *",
        "*/5 * * * *",
        "*/15 * * * *",
        "*/30 * * * *",
        "0 * * * *",
        "0 9 * * *",
        "0 9 * * 1-5",
        "0 9 * * 1",
        "0 0 1 * *",
    }
    for preset in PRESETS:
        parse_cron(preset.expression)
        assert preset.label
        assert preset.description
        assert describe(cron(preset.expression)) == f"{preset.description} (UTC)"


def test_kind_enum() -> None:
    assert [k.value for k in Kind] == ["cron", "interval", "once"]
    spec = ScheduleSpec(kind=Kind.CRON, cron_expression="0 0 * * *")
    validate_spec(spec, now=NOW)


# ------------------------------------------------------------------------------------------------------------
# Bad input: always a TimingError naming the field


BAD_CRON = [
    pytest.param("", "is empty", id="empty"),
    pytest.param("   ", "is empty", id="blank"),
    pytest.param("* * * *", "expected 5 or 6 fields, got 4", id="four-fields"),
    pytest.param("* * * * * * *", "expected 5 or 6 fields, got 7", id="seven-fields"),
    pytest.param("0 0 1 1 * 2026 x", "expected 5 or 6 fields, got 7", id="seven-with-year"),
    pytest.param("@reboot", "@reboot is not supported", id="reboot"),
    pytest.param("@every 5m", "unknown macro '@every'", id="unknown-macro"),
    pytest.param("@daily 5", "@daily takes no other fields", id="macro-with-fields"),
    pytest.param("x * * * *", "field 1 (minute): 'x' is not a number or name", id="word-minute"),
    pytest.param("60 * * * *", "field 1 (minute): 60 is out of range 0-59", id="minute-60"),
    pytest.param("0 25 * * *", "field 2 (hour): 25 is out of range 0-23", id="hour-25"),
    pytest.param("0 0 0 * *", "field 3 (day of month): 0 is out of range 1-31", id="dom-0"),
    pytest.param("0 0 32 * *", "field 3 (day of month): 32 is out of range 1-31", id="dom-32"),
    pytest.param("0 0 * 13 *", "field 4 (month): 13 is out of range 1-12", id="month-13"),
    pytest.param("0 0 * 0 *", "field 4 (month): 0 is out of range 1-12", id="month-0"),
    pytest.param("0 0 * * 8", "field 5 (day of week): 8 is out of range 0-7", id="dow-8"),
    pytest.param("60 * * * * *", "field 1 (second): 60 is out of range 0-59", id="six-field-second"),
    pytest.param("0 60 * * * *", "field 2 (minute): 60 is out of range 0-59", id="six-field-minute"),
    pytest.param("0 0 24 * * *", "field 3 (hour): 24 is out of range 0-23", id="six-field-hour"),
    pytest.param(
        "99999999999 * * * *", "field 1 (minute): 99999999999 is out of range 0-59", id="huge-number"
    ),
    pytest.param("1" * 900 + " * * * *", "is out of range 0-59", id="enormous-number"),
    pytest.param("*/0 * * * *", "field 1 (minute): step 0 is out of range 1-59", id="step-0"),
    pytest.param("*/60 * * * *", "field 1 (minute): step 60 is out of range 1-59", id="step-60"),
    pytest.param("*/x * * * *", "field 1 (minute): step 'x' is not a number", id="step-word"),
    pytest.param("*/ * * * *", "field 1 (minute): step '' is not a number", id="step-empty"),
    pytest.param("5-1 * * * *", "field 1 (minute): range 5-1 is reversed", id="reversed-range"),
    pytest.param("-5 * * * *", "field 1 (minute): '-5' is not a valid range", id="negative"),
    pytest.param("1- * * * *", "field 1 (minute): '1-' is not a valid range", id="open-range"),
    pytest.param("1-2-3 * * * *", "field 1 (minute): '2-3' is not a number or name", id="double-range"),
    pytest.param("1,,2 * * * *", "field 1 (minute): empty item in list", id="empty-list-item"),
    pytest.param("1,* * * *", "expected 5 or 6 fields, got 4", id="comma-joined-fields"),
    pytest.param("1, * * * *", "field 1 (minute): empty item in list", id="trailing-comma"),
    pytest.param("? * * * *", "field 1 (minute): '?' is only allowed", id="question-in-minute"),
    pytest.param("0 0 ?,1 * *", "field 3 (day of month): '?' must be the whole field", id="question-in-list"),
    pytest.param("0 0 * MON *", "field 4 (month): 'MON' is not a number or name", id="weekday-name-in-month"),
    pytest.param(
        "0 0 * * JAN", "field 5 (day of week): 'JAN' is not a number or name", id="month-name-in-dow"
    ),
    pytest.param("0 0 * * MONDAY", "field 5 (day of week): 'MONDAY' is not a number or name", id="long-name"),
    pytest.param("0 0 L * * *", "field 3 (hour): 'L' is not a number or name", id="L-in-hour"),
    pytest.param("0 0 L/2 * *", "field 3 (day of month): 'L' cannot take a step", id="L-step"),
    pytest.param("0 0 LW * *", "field 3 (day of month): 'LW' is not a number or name", id="LW-unsupported"),
    pytest.param("0 0 15W * *", "field 3 (day of month): '15W' is not a number or name", id="W-unsupported"),
    pytest.param("0 0 * * L", "field 5 (day of week): 'L' needs a weekday", id="L-alone-in-dow"),
    pytest.param(
        "0 0 * * 1#6", "field 5 (day of week): '1#6': the occurrence after '#' must be 1-5", id="hash-6"
    ),
    pytest.param("0 0 * * 1#0", "must be 1-5", id="hash-0"),
    pytest.param("0 0 * * 1#", "must be 1-5", id="hash-empty"),
    pytest.param("0 0 * * 8#1", "field 5 (day of week): 8 is out of range 0-7", id="hash-bad-day"),
    pytest.param("0 0 * * 1#2/2", "'#' cannot take a step", id="hash-step"),
    pytest.param("0 0 * * 1-5#2", "is not a number or name", id="hash-range"),
    pytest.param("0 0 * * 9L", "field 5 (day of week): 9 is out of range 0-7", id="L-bad-day"),
    pytest.param("0 0 30 2 *", "never fires (e.g. day 30 of February)", id="feb-30"),
    pytest.param("0 0 31 4,6,9,11 *", "never fires (e.g. day 31 of April)", id="31-in-30-day-months"),
    pytest.param("0 0 0 30 2 *", "never fires (e.g. day 30 of February)", id="six-field-feb-30"),
    pytest.param("0 0 */30 2 1#5", "never fires (no date matches", id="and-rule-never"),
    pytest.param("0 0 * * *\x00", "must not contain NUL characters", id="nul"),
    pytest.param("\uff10 \uff10 * * *", "field 1 (minute): '\uff10' is not a number", id="fullwidth-digits"),
    pytest.param("٣ * * * *", "field 1 (minute): '٣' is not a number or name", id="arabic-indic-digit"),
    pytest.param("* * * * * " * 300, "is too long", id="too-long"),
]


@pytest.mark.parametrize(("expression", "message"), BAD_CRON)
def test_bad_cron(expression: str, message: str) -> None:
    with pytest.raises(TimingError) as info:
        parse_cron(expression)
    assert info.value.field == "cron_expression"
    assert message in info.value.message
    assert str(info.value) == info.value.message
    with pytest.raises(TimingError) as via_spec:
        validate_spec(cron(expression), now=NOW)
    assert via_spec.value.field == "cron_expression"


def test_parse_cron_field_name_and_types() -> None:
    with pytest.raises(TimingError) as info:
        parse_cron("bad", field="expression")
    assert info.value.field == "expression"
    assert info.value.as_dict() == {"expression": ["expected 5 or 6 fields, got 1"]}
    for value in (None, 5, b"* * * * *", ["*"] * 5):
        with pytest.raises(TimingError) as info:
            parse_cron(value)  # type: ignore[arg-type]
        assert info.value.message == "must be a string"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("Mars/Base", "unknown time zone 'Mars/Base'", id="unknown"),
        pytest.param("localtime", "unknown time zone 'localtime'", id="localtime"),
        pytest.param("Factory", "unknown time zone 'Factory'", id="factory"),
        pytest.param("/etc/localtime", "unknown time zone '/etc/localtime'", id="absolute-path"),
        pytest.param("../../etc/passwd", "unknown time zone", id="relative-path"),
        pytest.param("posix/Europe/Paris", "unknown time zone", id="posix-dir"),
        pytest.param("right/UTC", "unknown time zone", id="right-dir"),
        pytest.param("utc", "unknown time zone 'utc' (did you mean 'UTC'?)", id="wrong-case"),
        pytest.param("europe/paris", "(did you mean 'Europe/Paris'?)", id="wrong-case-suggests"),
        pytest.param("", "is required", id="empty"),
        pytest.param("Europe/Paris\x00", "must not contain NUL characters", id="nul"),
        pytest.param("x" * 5000, "unknown time zone", id="long"),
        pytest.param(None, "must be a string", id="none"),
        pytest.param(0, "must be a string", id="int"),
    ],
)
def test_bad_zone(name: object, message: str) -> None:
    with pytest.raises(TimingError) as info:
        get_zone(name)  # type: ignore[arg-type]
    assert info.value.field == "timezone"
    assert message in info.value.message


def test_good_zones() -> None:
    assert get_zone("UTC") == ZoneInfo("UTC")
    assert get_zone("Asia/Kolkata").key == "Asia/Kolkata"
    assert get_zone("US/Eastern").key == "US/Eastern"  # a backward-compatible IANA link is still IANA
    assert get_zone("Europe/Paris", field="tz") is get_zone("Europe/Paris")


LATER = utc("2026-06-01T00:00")
NAIVE = datetime(2026, 6, 1)  # noqa: DTZ001 - deliberately naive


BAD_SPECS = [
    pytest.param(ScheduleSpec(kind="weekly"), "kind", id="unknown-kind"),
    pytest.param(ScheduleSpec(kind=""), "kind", id="empty-kind"),
    pytest.param(ScheduleSpec(kind=None), "kind", id="none-kind"),  # type: ignore[arg-type]
    pytest.param(ScheduleSpec(kind="cron\x00"), "kind", id="nul-kind"),
    pytest.param(ScheduleSpec(kind="cron"), "cron_expression", id="cron-missing-expression"),
    pytest.param(
        ScheduleSpec(kind="cron", cron_expression=""), "cron_expression", id="cron-empty-expression"
    ),
    pytest.param(ScheduleSpec(kind="cron", cron_expression=5), "cron_expression", id="cron-int"),  # type: ignore[arg-type]
    pytest.param(cron("* * * * *", "Mars/Base"), "timezone", id="bad-zone"),
    pytest.param(cron("* * * * *", 5), "timezone", id="int-zone"),  # type: ignore[arg-type]
    pytest.param(cron("* * * * *", start_at=NAIVE), "start_at", id="naive-start"),
    pytest.param(cron("* * * * *", end_at=NAIVE), "end_at", id="naive-end"),
    pytest.param(cron("* * * * *", start_at="2026-06-01"), "start_at", id="string-start"),
    pytest.param(cron("* * * * *", start_at=LATER, end_at=LATER), "end_at", id="end-equals-start"),
    pytest.param(
        cron("* * * * *", start_at=LATER, end_at=NOW + timedelta(days=1)), "end_at", id="end-before-start"
    ),
    pytest.param(cron("* * * * *", end_at=NOW), "end_at", id="end-is-now"),
    pytest.param(cron("* * * * *", end_at=NOW - timedelta(days=1)), "end_at", id="end-in-past"),
    pytest.param(cron("0 0 1 7 *", end_at=utc("2026-06-30T23:59")), "end_at", id="window-without-slot"),
    pytest.param(
        cron("0 0 1 1 *", start_at=utc("2026-03-01T00:00"), end_at=utc("2026-12-31T23:59")),
        "end_at",
        id="start-end-window-without-slot",
    ),
    pytest.param(cron("* * * * *", max_runs=0), "max_runs", id="max-runs-0"),
    pytest.param(cron("* * * * *", max_runs=-3), "max_runs", id="max-runs-negative"),
    pytest.param(cron("* * * * *", max_runs=True), "max_runs", id="max-runs-bool"),
    pytest.param(cron("* * * * *", max_runs=2.5), "max_runs", id="max-runs-float"),
    pytest.param(ScheduleSpec(kind="interval"), "interval_seconds", id="interval-missing"),
    pytest.param(ScheduleSpec(kind="interval", interval_seconds=0), "interval_seconds", id="interval-0"),
    pytest.param(
        ScheduleSpec(kind="interval", interval_seconds=-60), "interval_seconds", id="interval-negative"
    ),
    pytest.param(
        ScheduleSpec(kind="interval", interval_seconds=10**12), "interval_seconds", id="interval-huge"
    ),
    pytest.param(
        ScheduleSpec(kind="interval", interval_seconds=timing.MAX_INTERVAL_SECONDS + 1),
        "interval_seconds",
        id="interval-just-over-10-years",
    ),
    pytest.param(
        ScheduleSpec(kind="interval", interval_seconds=60.0), "interval_seconds", id="interval-float"
    ),
    pytest.param(ScheduleSpec(kind="interval", interval_seconds="60"), "interval_seconds", id="interval-str"),
    pytest.param(
        ScheduleSpec(kind="interval", interval_seconds=True), "interval_seconds", id="interval-bool"
    ),
    pytest.param(
        ScheduleSpec(kind="interval", interval_seconds=30), "interval_seconds", id="interval-below-min"
    ),
    pytest.param(
        ScheduleSpec(kind="interval", interval_seconds=60, anchor_at=NAIVE), "anchor_at", id="naive-anchor"
    ),
    pytest.param(
        ScheduleSpec(
            kind="interval",
            interval_seconds=86400,
            anchor_at=utc("2026-01-01T12:00"),
            start_at=utc("2026-03-01T13:00"),
            end_at=utc("2026-03-02T11:00"),
        ),
        "end_at",
        id="interval-window-without-slot",
    ),
    pytest.param(ScheduleSpec(kind="once"), "run_at", id="once-missing"),
    pytest.param(ScheduleSpec(kind="once", run_at=NOW - timedelta(seconds=1)), "run_at", id="once-in-past"),
    pytest.param(ScheduleSpec(kind="once", run_at=NOW), "run_at", id="once-now"),
    pytest.param(ScheduleSpec(kind="once", run_at=NAIVE), "run_at", id="once-naive"),
    pytest.param(
        ScheduleSpec(kind="once", run_at=LATER, end_at=LATER - timedelta(days=1)),
        "run_at",
        id="once-after-end",
    ),
    pytest.param(
        ScheduleSpec(kind="once", run_at=LATER, start_at=LATER + timedelta(days=1)),
        "run_at",
        id="once-before-start",
    ),
]


@pytest.mark.parametrize(("spec", "field"), BAD_SPECS)
def test_bad_spec(spec: ScheduleSpec, field: str) -> None:
    with pytest.raises(TimingError) as info:
        validate_spec(spec, now=NOW, min_interval_seconds=60)
    assert info.value.field == field
    assert info.value.message


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(cron("0 0 29 2 1"), id="feb-29-or-monday"),
        pytest.param(cron("0 0 * 2 MON#5"), id="feb-29-on-a-monday-every-28-years"),
        pytest.param(
            cron(
                "0 9 * * 1-5",
                "America/New_York",
                start_at=LATER,
                end_at=LATER + timedelta(days=7),
                max_runs=3,
            ),
            id="bounded-cron",
        ),
        pytest.param(cron("0 0 1 1 *", end_at=utc("2027-01-01T00:00")), id="end-exactly-on-slot"),
        pytest.param(ScheduleSpec(kind="interval", interval_seconds=60), id="interval-no-anchor"),
        pytest.param(
            ScheduleSpec(kind="interval", interval_seconds=timing.MAX_INTERVAL_SECONDS, anchor_at=NOW),
            id="interval-10-years",
        ),
        pytest.param(
            ScheduleSpec(
                kind="interval",
                interval_seconds=3600,
                anchor_at=NOW - timedelta(days=400),
                end_at=NOW + timedelta(hours=1),
            ),
            id="interval-old-anchor",
        ),
        pytest.param(ScheduleSpec(kind="once", run_at=LATER, timezone="Asia/Kolkata"), id="once"),
        pytest.param(
            ScheduleSpec(kind="cron", cron_expression="* * * * *", timezone=None), id="none-zone-is-utc"
        ),  # type: ignore[arg-type]
    ],
)
def test_good_spec(spec: ScheduleSpec) -> None:
    validate_spec(spec, now=NOW, min_interval_seconds=60)


def test_validate_spec_now_must_be_aware() -> None:
    with pytest.raises(TimingError) as info:
        validate_spec(cron("* * * * *"), now=NAIVE)
    assert info.value.field == "now"
    with pytest.raises(TimingError):
        validate_spec("cron", now=NOW)  # type: ignore[arg-type]


def test_naive_after_is_refused() -> None:
    with pytest.raises(TimingError) as info:
        next_fire_times(cron("* * * * *"), NAIVE, 1)
    assert info.value.field == "after"
    with pytest.raises(TimingError):
        jitter_offset("x", NAIVE, 10)


# ------------------------------------------------------------------------------------------------------------
# Dependencies and croniter cross-check


def test_timing_imports_neither_django_nor_redis() -> None:
    code = (
        "import sys; import schedules.timing; "
        "banned = ('django', 'redis', 'celery', 'redbeat'); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in banned); "
        "print(bad)"
    )
    out = subprocess.run(  # noqa: S603, RUF100 - our own interpreter, a constant script
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("ours", "croniters", "day_or"),
    [
        pytest.param("*/15 * * * *", "*/15 * * * *", True, id="every-15"),
        pytest.param("0 9 * * 1-5", "0 9 * * 1-5", True, id="weekdays"),
        pytest.param("0 0 29 2 *", "0 0 29 2 *", True, id="leap"),
        pytest.param("0 12 1 * 1", "0 12 1 * 1", True, id="or-rule"),
        pytest.param("0 0 */2 * 1", "0 0 */2 * 1", False, id="and-rule-needs-day-or-false"),
        pytest.param("*/10 * * * * *", "*/10 * * * * *", True, id="seconds-first"),
        pytest.param("0 0 L * *", "0 0 L * *", True, id="last-day"),
        pytest.param("0 0 * * 1#2", "0 0 * * 1#2", True, id="nth-weekday"),
        pytest.param("0 0 * * 5L", "0 0 * * L5", True, id="last-friday-croniter-spells-L5"),
        pytest.param("0 0 5-5 * *", "0 0 5 * *", True, id="croniter-reads-5-5-as-whole-field"),
        pytest.param("15 10 1-7 * MON", "15 10 1-7 * MON", True, id="names"),
    ],
)
def test_croniter_agrees_in_utc(ours: str, croniters: str, day_or: bool) -> None:
    import croniter as croniter_module  # a dev dependency: the cross-check runs wherever the tests run

    parsed = parse_cron(ours)
    assert parsed.day_or is day_or or not (parsed.fields[-3] != "*" and parsed.fields[-1] != "*")
    start = datetime(2026, 1, 1)  # noqa: DTZ001 - croniter on naive wall clocks
    it = croniter_module.croniter(
        croniters, start, ret_type=datetime, day_or=day_or, second_at_beginning=parsed.has_seconds
    )
    theirs = [it.get_next().replace(tzinfo=UTC) for _ in range(25)]
    assert slots(cron(ours), NOW, 25) == theirs
