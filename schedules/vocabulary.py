"""The words a trigger is configured in — kind, status, overlap, catch-up, priority — defined once, pure.

The models store these values, the validation accepts them, the pure policies decide by them and the beat
maps priorities to broker levels; every one of them imports this module, so there is nothing to keep in
step. No Django, no Redis (see `toolkit.enums` for why a `Choices` instead of `TextChoices`)."""

from __future__ import annotations

from toolkit.enums import Choices


class TriggerKind(Choices):
    """How a trigger's slots are computed."""

    CRON = "cron", "Cron expression"
    INTERVAL = "interval", "Fixed interval"
    ONCE = "once", "Once"


class TriggerStatus(Choices):
    ACTIVE = "active", "Active — fires on schedule"
    PAUSED = "paused", "Paused — no runs until resumed"
    COMPLETED = "completed", "Completed — schedule ended"


class OverlapPolicy(Choices):
    """What to do when a slot comes due while an earlier run of the same trigger is still running."""

    ALLOW = "allow", "Allow — start even while an earlier run is running"
    SKIP = "skip", "Skip — record the slot skipped while an earlier run is running"
    QUEUE = "queue", "Queue — start after the earlier run ends, in slot order"
    BUFFER_ONE = "buffer_one", "Buffer one — keep at most one waiting, skip the rest"
    REPLACE = "replace", "Replace — cancel the running one and start the new one"


class CatchupPolicy(Choices):
    """What to do with slots that were missed while the fleet was down."""

    NONE = "none", "None — record missed slots skipped"
    LATEST = "latest", "Latest — run the most recent missed slot once"
    FIRE_IMMEDIATELY = "fire_immediately", "Fire immediately — run every missed slot, oldest first"
    SPREAD = "spread", "Spread — run every missed slot, spaced over the catch-up window"


class Priority(Choices):
    """User-facing priority names; mapped to broker priorities by :data:`PRIORITY_VALUES`."""

    URGENT = "urgent", "Urgent"
    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"


# The Redis transport emulates priorities with one list per step and serves the LOWEST number first, so urgent
# must be 0. The gaps of 3 leave room for in-between levels without renumbering existing messages.
PRIORITY_VALUES: dict[Priority, int] = {
    Priority.URGENT: 0,
    Priority.HIGH: 3,
    Priority.MEDIUM: 6,
    Priority.LOW: 9,
}

_DEFAULT_PRIORITY = PRIORITY_VALUES[Priority.MEDIUM]


def priority_value(name: str) -> int:
    """Broker priority for a priority name; unknown or empty names get medium (6).

    Why lenient: the value comes from user-edited trigger rows and API payloads; a typo should launch the
    job at normal priority, not crash the fire path. Case and surrounding whitespace are ignored likewise.
    """
    if not isinstance(name, str):
        return _DEFAULT_PRIORITY
    try:
        return PRIORITY_VALUES[Priority(name.strip().lower())]
    except ValueError:
        return _DEFAULT_PRIORITY


class WindowAction(Choices):
    """What a trigger does with a slot outside its execution windows or inside a blackout."""

    SKIP = "skip", "Skip — record the slot skipped, with the rule as its reason"
    DEFER = "defer", "Defer — run it when the window opens (or the blackout ends)"


class CalendarSource(Choices):
    """Where a calendar's dates came from."""

    MANUAL = "manual", "Listed by hand"
    ICS = "ics", "Imported from an ICS file"
    HOLIDAYS = "holidays", "A country's public holidays (the holidays package)"


#: What a trigger's counters and its success rate count, said wherever they are shown (the admin's help texts
#: and badge, the API's schema, the CLI): `run_count` follows the schedule (it is what `max_runs` limits), so
#: a manual run is not in it, while the success rate and the failure counters are read from every run's end.
COUNTER_HELP = {
    "run_count": "Scheduled runs started (or held back to run later); skipped slots and manual runs are not "
    "counted, although a manual run's outcome counts in the success rate and the failure counters.",
    "failure_count": "Runs that ended in failure, manual runs included.",
    "consecutive_failures": "Runs that failed in a row up to now, manual runs included.",
    "success_rate": "Of the runs that ended succeeded, failed or timed out, scheduled and manual alike, the "
    "share that succeeded; skipped and cancelled runs are left out.",
}
