"""Where a calendar's dates come from: a list, an ICS file (`icalendar`), or a country's public holidays (the
`holidays` package). Pure (no Django, Redis or Celery): each reader returns sorted dates or raises
`CalendarError` naming the field the user got wrong, which the service turns into a 400.

An ICS event excludes every date it covers, as written (its own wall dates; an all-day event's DTEND is
exclusive, as RFC 5545 says); a recurring one (RRULE, with EXDATE) is expanded with dateutil — as far as its
UNTIL or COUNT, and never more than :data:`MAX_DATES` dates or past :data:`ICS_HORIZON_YEARS` years after it
starts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

__all__ = ["MAX_DATES", "CalendarError", "dates_from_holidays", "dates_from_ics", "dates_from_list"]

MAX_DATES = 10_000
MAX_YEARS = 30
ICS_HORIZON_YEARS = 10
ICS_LIMIT_BYTES = 2 * 1024 * 1024


class CalendarError(ValueError):
    """`field`: what the user sent that is wrong; `message`: what is wrong with it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _finish(field: str, dates: Iterable[date]) -> list[date]:
    unique = sorted(set(dates))
    if len(unique) > MAX_DATES:
        raise CalendarError(field, f"at most {MAX_DATES} dates per calendar")
    return unique


def dates_from_list(values: Any) -> list[date]:
    """``["2026-12-25", …]`` → dates."""
    if not isinstance(values, list):
        raise CalendarError("dates", "must be a list of dates like 2026-12-25")
    result = []
    for value in values:
        if not isinstance(value, str):
            raise CalendarError("dates", f"{value!r} is not a date YYYY-MM-DD")
        try:
            result.append(date.fromisoformat(value.strip()))
        except ValueError:
            raise CalendarError("dates", f"{value!r} is not a date YYYY-MM-DD") from None
    return _finish("dates", result)


def _years(years: Any) -> list[int]:
    if not isinstance(years, list) or not years:
        raise CalendarError("years", "must be a non-empty list of years like [2026, 2027]")
    if any(isinstance(y, bool) or not isinstance(y, int) or not 1900 <= y <= 2200 for y in years):
        raise CalendarError("years", "each year must be an integer between 1900 and 2200")
    if len(set(years)) > MAX_YEARS:
        raise CalendarError("years", f"at most {MAX_YEARS} years")
    return sorted(set(years))


def dates_from_holidays(*, country: Any, subdivision: Any = "", years: Any) -> list[date]:
    """The public holidays of `country` (ISO 3166 code, e.g. ``DE``), optionally of one `subdivision` (e.g.
    ``BY``), in `years`."""
    import holidays  # a large package: loaded when a calendar is made, not by every process

    if not isinstance(country, str) or not country.strip():
        raise CalendarError("country", "must be an ISO 3166 country code like DE or US")
    if subdivision is None:
        subdivision = ""
    if not isinstance(subdivision, str):
        raise CalendarError("subdivision", "must be a subdivision code like BY or CA, or empty")
    wanted = _years(years)
    code, subdiv = country.strip().upper(), subdivision.strip().upper() or None
    if code not in holidays.list_supported_countries():
        raise CalendarError("country", f"{country!r} is not a country the holidays package knows")
    try:
        found = holidays.country_holidays(code, subdiv=subdiv, years=wanted)
    except NotImplementedError:
        raise CalendarError("subdivision", f"{code} has no subdivision {subdivision!r}") from None
    return _finish("years", found.keys())


def _as_date(value: Any) -> date:
    return value.date() if isinstance(value, datetime) else value


def _event_dates(start: date | datetime, end: date | datetime | None) -> list[date]:
    """The dates an event covers: an all-day event up to (excluding) its end date, a timed one up to the date
    of its end (excluding a date it only touches at midnight)."""
    first = _as_date(start)
    if end is None:
        return [first]
    if isinstance(end, datetime):
        last = end.date() if end.time() != datetime.min.time() else end.date() - timedelta(days=1)
    else:
        last = end - timedelta(days=1)
    last = max(first, last)
    if (last - first).days > 366 * ICS_HORIZON_YEARS:
        raise CalendarError("ics", f"an event from {first} to {last} is too long")
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _occurrences(event: Any, start: date | datetime) -> Sequence[date | datetime]:
    """DTSTART and, for a recurring event, its RRULE occurrences less its EXDATEs."""
    rule = event.get("RRULE")
    if rule is None:
        return [start]
    from dateutil.rrule import rrulestr

    text = rule.to_ical().decode()
    naive = (
        start.replace(tzinfo=None)
        if isinstance(start, datetime)
        else datetime(start.year, start.month, start.day)  # noqa: DTZ001 - naive wall
    )
    try:
        recurrence = rrulestr(text, dtstart=naive, ignoretz=True)
    except (ValueError, TypeError) as exc:
        raise CalendarError("ics", f"a recurrence rule {text!r} cannot be read ({exc})") from None
    horizon = naive.replace(year=min(naive.year + ICS_HORIZON_YEARS, 9999))
    excluded: set[date] = set()
    exdates = event.get("EXDATE")
    for group in exdates if isinstance(exdates, list) else [exdates] if exdates is not None else []:
        excluded.update(_as_date(d.dt) for d in group.dts)
    result: list[date | datetime] = []
    for moment in recurrence.xafter(naive - timedelta(seconds=1), count=MAX_DATES + 1, inc=True):
        if moment > horizon:
            break
        if moment.date() not in excluded:
            result.append(moment if isinstance(start, datetime) else moment.date())
    return result


def _dates_of_event(event: Any) -> list[date]:
    start_prop = event.get("DTSTART")
    if start_prop is None:
        return []
    start = start_prop.dt
    end_prop = event.get("DTEND")
    end = end_prop.dt if end_prop is not None else None
    if end is None and event.get("DURATION") is not None:
        end = start + event.get("DURATION").dt
    span = (end - start) if end is not None else None
    dates: list[date] = []
    for occurrence in _occurrences(event, start):
        dates.extend(_event_dates(occurrence, occurrence + span if span is not None else None))
    return dates


def dates_from_ics(text: Any) -> list[date]:
    """Every date an ICS file's events (VEVENT) cover."""
    import icalendar

    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str) or not text.strip():
        raise CalendarError("ics", "must be the text of an ICS file (BEGIN:VCALENDAR …)")
    if len(text.encode()) > ICS_LIMIT_BYTES:
        raise CalendarError("ics", f"must be at most {ICS_LIMIT_BYTES // (1024 * 1024)} MiB")
    try:
        parsed = icalendar.Calendar.from_ical(text)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise CalendarError("ics", f"is not an ICS file ({str(exc)[:100]})") from None
    dates: list[date] = []
    for number, event in enumerate(parsed.walk("VEVENT"), 1):
        try:
            dates.extend(_dates_of_event(event))
        except CalendarError:
            raise
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
            summary = str(event.get("SUMMARY", ""))[:60]
            raise CalendarError(
                "ics", f"event {number} ({summary!r}) cannot be read ({str(exc)[:100]})"
            ) from None
        if len(dates) > MAX_DATES * 4:
            raise CalendarError("ics", f"at most {MAX_DATES} dates per calendar")
    if not dates:
        raise CalendarError("ics", "has no events with a start date")
    return _finish("ics", dates)
