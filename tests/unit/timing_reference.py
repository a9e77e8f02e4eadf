"""A brute-force reference for ``schedules.timing``, written without croniter and without timing's code.

It answers "which real instants in (after, until] should a cron trigger fire at?" the slow, obvious way:

* its own tiny field matcher over the supported syntax (no validation: callers pass valid expressions);
* its own DST handling that never asks zoneinfo to turn a local time into UTC. It walks real UTC instants
  minute by minute and asks only "what does the wall clock show now?". A repeated wall time is simply seen
  twice; a skipped one is seen as the clock jumping forward between two consecutive minutes.

The cronie rules are then applied to what the walk saw:

* elapsed-time expressions (minute or hour field begins with ``*``): every instant whose wall time matches;
* fixed-time expressions: an instant whose wall time matches and was never shown before (first copy only),
  plus, for every forward jump of the clock that skipped a matching wall time, the instant right after it.

To stay bounded it walks days first (only local dates the day fields allow, plus their real-time margins),
then minutes, and seconds only inside matching minutes of a 6-field expression.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MINUTE = timedelta(minutes=1)


@dataclass
class RefCron:
    seconds: set[int]
    minutes: set[int]
    hours: set[int]
    doms: set[int]
    months: set[int]
    dows: set[int]
    dom_last: bool = False
    dow_nth: set[tuple[int, int]] = field(default_factory=set)
    dow_last: set[int] = field(default_factory=set)
    dom_star: bool = True
    dow_star: bool = True
    elapsed: bool = False
    has_seconds: bool = False


def _number(text: str, names: list[str], offset: int) -> int:
    if text.isdigit():
        return int(text)
    return names.index(text.lower()) + offset


def _expand(text: str, low: int, high: int, names: list[str] | None = None, offset: int = 0) -> set[int]:
    """Plain items only: '*', '?', 'a', 'a-b', with an optional '/step'; 'a/step' runs to the field end."""
    result: set[int] = set()
    for item in text.split(","):
        body, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if body in ("*", "?"):
            first, last = low, high
        elif "-" in body:
            a, b = body.split("-")
            first, last = _number(a, names or [], offset), _number(b, names or [], offset)
        else:
            first = _number(body, names or [], offset)
            last = high if step_text else first
        value = first
        while value <= last:
            result.add(value)
            value += step
    return result


def ref_parse(expression: str) -> RefCron:
    text = expression.strip()
    if text.lower() in MACROS:
        text = MACROS[text.lower()]
    parts = text.split()
    has_seconds = len(parts) == 6
    if not has_seconds:
        parts = ["0", *parts]
    second, minute, hour, dom, month, dow = parts
    cron = RefCron(
        seconds=_expand(second, 0, 59),
        minutes=_expand(minute, 0, 59),
        hours=_expand(hour, 0, 23),
        doms=set(),
        months=_expand(month, 1, 12, MONTHS, 1),
        dows=set(),
        dom_star=dom[0] in "*?",
        dow_star=dow[0] in "*?",
        elapsed=minute.startswith("*") or hour.startswith("*"),
        has_seconds=has_seconds,
    )
    for item in dom.split(","):
        if item.upper() == "L":
            cron.dom_last = True
        else:
            cron.doms |= _expand(item, 1, 31)
    for item in dow.split(","):
        if "#" in item:
            day, nth = item.split("#")
            cron.dow_nth.add((_number(day, WEEKDAYS, 0) % 7, int(nth)))
        elif item.upper().endswith("L"):
            cron.dow_last.add(_number(item[:-1], WEEKDAYS, 0) % 7)
        else:
            body, _, step = item.partition("/")
            if body not in ("*", "?") and "-" not in body and step:
                body = f"{body}-6"  # 'a/step' in the weekday field runs to Saturday
            elif "-" in body:
                start, end = (_number(x, WEEKDAYS, 0) for x in body.split("-"))
                if end == 0 and start > 0:
                    body = f"{start}-7"  # 'SAT-SUN': Sunday closes the week
            cron.dows |= {d % 7 for d in _expand(body + (f"/{step}" if step else ""), 0, 7, WEEKDAYS, 0)}
    return cron


def date_matches(cron: RefCron, day: date) -> bool:
    if day.month not in cron.months:
        return False
    last = calendar.monthrange(day.year, day.month)[1]
    weekday = day.isoweekday() % 7
    dom_ok = day.day in cron.doms or (cron.dom_last and day.day == last)
    dow_ok = (
        weekday in cron.dows
        or (weekday, (day.day + 6) // 7) in cron.dow_nth
        or (weekday in cron.dow_last and day.day + 7 > last)
    )
    if cron.dom_star or cron.dow_star:
        return dom_ok and dow_ok
    return dom_ok or dow_ok


def minute_matches(cron: RefCron, wall: datetime) -> bool:
    """Date, hour and minute match (any second of the minute may then match)."""
    return wall.hour in cron.hours and wall.minute in cron.minutes and date_matches(cron, wall.date())


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)


def _offsets_near(zone: ZoneInfo, day: date) -> list[timedelta]:
    noon = datetime(day.year, day.month, day.day, 12)  # noqa: DTZ001 - naive UTC
    return [
        (noon + timedelta(hours=h)).replace(tzinfo=UTC).astimezone(zone).utcoffset() or timedelta(0)
        for h in range(-36, 61, 6)
    ]


def reference_slots(expression: str, zone_name: str, after: datetime, until: datetime) -> list[datetime]:
    """All slots in (after, until] as aware UTC datetimes, oldest first."""
    cron = ref_parse(expression)
    zone = ZoneInfo(zone_name)
    after_utc = after.astimezone(UTC).replace(tzinfo=None)
    until_utc = until.astimezone(UTC).replace(tzinfo=None)

    # 1. The real-time windows to walk: every instant whose local date is a matching date (with margins).
    windows: list[tuple[datetime, datetime]] = []
    day = (after_utc - timedelta(days=2)).date()
    last_day = (until_utc + timedelta(days=2)).date()
    while day <= last_day:
        if date_matches(cron, day):
            offsets = _offsets_near(zone, day)
            midnight = datetime(day.year, day.month, day.day)  # noqa: DTZ001
            start = midnight - max(offsets) - timedelta(hours=1)
            stop = midnight + timedelta(days=1) - min(offsets) + timedelta(hours=1)
            if windows and start <= windows[-1][1]:
                windows[-1] = (windows[-1][0], max(stop, windows[-1][1]))
            else:
                windows.append((start, stop))
        day += timedelta(days=1)

    # 2. Walk them minute by minute, noting every wall seen, matching walls, and jumps over matching walls.
    #    Only (after, until] matters, plus a few hours before it: a repeated wall's first copy comes at most
    #    one DST shift (<= 2 h anywhere) before its second.
    first_seen: dict[datetime, datetime] = {}
    candidates: list[tuple[datetime, datetime]] = []  # (instant, wall)
    after_gaps: set[datetime] = set()
    seconds = sorted(cron.seconds)
    walk_from = after_utc - timedelta(hours=6)
    walk_to = until_utc + timedelta(minutes=2)
    for window_start, window_stop in windows:
        start, stop = max(window_start, walk_from), min(window_stop, walk_to)
        instant = start.replace(second=0, microsecond=0)
        previous_wall: datetime | None = None
        while instant <= stop:
            wall = _wall(instant, zone)
            if wall not in first_seen or instant < first_seen[wall]:
                first_seen[wall] = instant
            if instant >= after_utc - MINUTE and minute_matches(cron, wall):
                candidates.extend(
                    (instant + timedelta(seconds=s), wall + timedelta(seconds=s)) for s in seconds
                )
            if previous_wall is not None and wall - previous_wall > MINUTE and not cron.elapsed:
                skipped = previous_wall + MINUTE
                while skipped < wall:
                    if minute_matches(cron, skipped):
                        after_gaps.add(instant)
                        break
                    skipped += MINUTE
            previous_wall = wall
            instant += MINUTE

    # 3. Apply the rules.
    found: set[datetime] = set()
    for instant, wall in candidates:
        minute_wall = wall.replace(second=0)
        if cron.elapsed or first_seen[minute_wall] == instant.replace(second=0):
            found.add(instant)
    found |= after_gaps
    return [t.replace(tzinfo=UTC) for t in sorted(found) if after_utc < t <= until_utc]


def utc_transitions(zone_name: str, first_year: int, last_year: int) -> list[datetime]:
    """Instants (aware UTC, to the minute) where the zone's offset changes, by an hourly scan + refinement."""
    zone = ZoneInfo(zone_name)
    result = []
    moment = datetime(first_year, 1, 1, tzinfo=UTC)
    stop = datetime(last_year + 1, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(zone).utcoffset()
    step = timedelta(hours=6)
    while moment < stop:
        following = moment + step
        following_offset = following.astimezone(zone).utcoffset()
        if following_offset != offset:
            probe = moment
            while probe.astimezone(zone).utcoffset() == offset:
                probe += MINUTE
            result.append(probe)
        moment, offset = following, following_offset
    return result
