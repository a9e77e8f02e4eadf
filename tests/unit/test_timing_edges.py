"""Only TimingError leaves the time engine, whatever the input: instants at the ends of the calendar, zones
far from UTC, intervals that run off the end of time. A preview of a stored trigger must never be a 500."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules.timing import (
    ScheduleSpec,
    TimingError,
    describe,
    min_spacing_seconds,
    next_fire_times,
    next_slot,
    slots_between,
    validate_spec,
)

EDGE_ZONES = [
    "Pacific/Kiritimati", "Etc/GMT-14", "Etc/GMT+12", "Pacific/Pago_Pago", "UTC", "Australia/Lord_Howe",
]  # fmt: skip
#: 9999-12-31T12:00Z is already year 10000 on these clocks (UTC+14); Lord Howe (+11 in December) still fits.
PAST_THE_END = {"Pacific/Kiritimati", "Etc/GMT-14"}
NOW = datetime(2026, 12, 3, tzinfo=UTC)
LAST = datetime.max.replace(tzinfo=UTC)


def utc_between(low: datetime, high: datetime) -> st.SearchStrategy[datetime]:
    """Aware UTC instants in [low, high] (hypothesis takes naive bounds)."""
    return st.datetimes(
        min_value=low.replace(tzinfo=None), max_value=high.replace(tzinfo=None), timezones=st.just(UTC)
    )


instants = st.one_of(
    utc_between(datetime(1, 1, 1, tzinfo=UTC), datetime(1, 1, 3, tzinfo=UTC)),
    utc_between(datetime(9999, 12, 29, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC)),
    utc_between(datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)),
)


def calls(spec: ScheduleSpec, after: datetime):
    yield lambda: validate_spec(spec, now=NOW)
    yield lambda: next_fire_times(spec, after, 5)
    yield lambda: next_slot(spec, after)
    until = after + min(timedelta(days=400), LAST - after)
    yield lambda: slots_between(spec, after, until, limit=5)
    yield lambda: describe(spec)
    yield lambda: min_spacing_seconds(spec)


def only_timing_errors(spec: ScheduleSpec, after: datetime) -> None:
    for call in calls(spec, after):
        with contextlib.suppress(TimingError):
            call()


@pytest.mark.parametrize("zone", EDGE_ZONES)
def test_a_one_off_at_the_end_of_time_is_refused_where_its_wall_clock_cannot_show_it(zone: str) -> None:
    spec = ScheduleSpec(kind="once", run_at=datetime(9999, 12, 31, 12, 0, tzinfo=UTC), timezone=zone)
    if zone not in PAST_THE_END:
        validate_spec(spec, now=NOW)
        assert [f.slot for f in next_fire_times(spec, NOW, 3)] == [spec.run_at]
    else:
        with pytest.raises(TimingError) as excinfo:
            validate_spec(spec, now=NOW)
        assert excinfo.value.field == "run_at"
        assert zone in str(excinfo.value)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["once", "interval", "cron"]),
    at=instants,
    after=instants,
    zone=st.sampled_from(EDGE_ZONES),
    seconds=st.sampled_from([1, 59, 3600, 86400 * 365, 315_360_000]),
    expression=st.sampled_from(["* * * * *", "0 0 31 12 *", "59 23 31 12 *", "*/7 * * * * *", "0 0 29 2 *"]),
)
def test_only_timing_errors_escape(kind, at, after, zone, seconds, expression) -> None:
    if kind == "once":
        spec = ScheduleSpec(kind="once", run_at=at, timezone=zone)
    elif kind == "interval":
        spec = ScheduleSpec(kind="interval", interval_seconds=seconds, anchor_at=at, timezone=zone)
    else:
        spec = ScheduleSpec(kind="cron", cron_expression=expression, timezone=zone, start_at=at)
    only_timing_errors(spec, after)
