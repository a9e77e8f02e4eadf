"""schedules.calendars: dates from a list, an ICS file (icalendar; all-day, timed, multi-day and recurring
events) and a country's public holidays (the holidays package). No Django."""

from __future__ import annotations

from datetime import date

import pytest

from schedules.calendars import CalendarError, dates_from_holidays, dates_from_ics, dates_from_list

ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:1
DTSTART;VALUE=DATE:20261224
DTEND;VALUE=DATE:20261227
SUMMARY:Christmas break
END:VEVENT
BEGIN:VEVENT
UID:2
DTSTART:20260501T090000Z
DTEND:20260501T170000Z
SUMMARY:Labour day
END:VEVENT
BEGIN:VEVENT
UID:3
DTSTART;VALUE=DATE:20260101
RRULE:FREQ=YEARLY;COUNT=3
EXDATE;VALUE=DATE:20270101
SUMMARY:New year
END:VEVENT
BEGIN:VEVENT
UID:4
DTSTART;TZID=Europe/Berlin:20260815T230000
DTEND;TZID=Europe/Berlin:20260816T000000
SUMMARY:Ends at midnight
END:VEVENT
END:VCALENDAR
"""


def test_an_ics_file_excludes_every_date_its_events_cover() -> None:
    assert dates_from_ics(ICS) == [
        date(2026, 1, 1),
        date(2026, 5, 1),
        date(2026, 8, 15),  # a timed event that ends at midnight does not take the next day
        date(2026, 12, 24),
        date(2026, 12, 25),
        date(2026, 12, 26),  # DTEND of an all-day event is exclusive
        date(2028, 1, 1),  # 2027 was an EXDATE
    ]
    assert dates_from_ics(ICS.encode()) == dates_from_ics(ICS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "must be the text of an ICS file", id="empty"),
        pytest.param("hello", "is not an ICS file", id="garbage"),
        pytest.param("BEGIN:VCALENDAR\nVERSION:2.0\nEND:VCALENDAR\n", "has no events", id="no-events"),
        pytest.param(42, "must be the text", id="not-text"),
        pytest.param(
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:mixed\nDTSTART;VALUE=DATE:20260101\nDTEND:20260102T100000Z\n"
            "END:VEVENT\nEND:VCALENDAR\n",
            "event 1 \\('mixed'\\) cannot be read",
            id="date-start-timed-end",
        ),
    ],
)
def test_a_bad_ics_file_is_refused_naming_the_field(text, message) -> None:
    with pytest.raises(CalendarError, match=message) as caught:
        dates_from_ics(text)
    assert caught.value.field == "ics"


def test_public_holidays_of_a_country_and_subdivision() -> None:
    bavaria = dates_from_holidays(country="de", subdivision="BY", years=[2026])
    berlin = dates_from_holidays(country="DE", subdivision="BE", years=[2026])
    assert date(2026, 1, 6) in bavaria, "Epiphany is a holiday in Bavaria"
    assert date(2026, 1, 6) not in berlin
    assert date(2026, 12, 25) in bavaria
    assert date(2026, 12, 25) in berlin
    us = dates_from_holidays(country="US", years=[2026, 2027])
    assert date(2026, 7, 4) in us
    assert date(2027, 7, 5) in us


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"country": "XX", "years": [2026]}, "country", id="unknown-country"),
        pytest.param({"country": "", "years": [2026]}, "country", id="empty-country"),
        pytest.param(
            {"country": "DE", "subdivision": "ZZ", "years": [2026]}, "subdivision", id="subdivision"
        ),
        pytest.param({"country": "DE", "years": []}, "years", id="no-years"),
        pytest.param({"country": "DE", "years": ["2026"]}, "years", id="text-year"),
        pytest.param({"country": "DE", "years": [1200]}, "years", id="ancient"),
    ],
)
def test_bad_holiday_requests_name_the_field(kwargs, field) -> None:
    with pytest.raises(CalendarError) as caught:
        dates_from_holidays(**kwargs)
    assert caught.value.field == field


def test_a_list_of_dates() -> None:
    assert dates_from_list(["2026-12-25", " 2026-01-01", "2026-12-25"]) == [
        date(2026, 1, 1),
        date(2026, 12, 25),
    ]
    for bad in (["2026-13-01"], [20261225], "2026-12-25"):
        with pytest.raises(CalendarError) as caught:
            dates_from_list(bad)
        assert caught.value.field == "dates"
