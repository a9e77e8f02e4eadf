"""Validation of trigger fields, shared by the services, the API and the admin so all three give the same
message for the same mistake. Every problem is a `ValidationError` keyed by the field it concerns — never
another exception type, whatever the input (NUL characters, absurd numbers, wrong types)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from schedules import rules, timing
from schedules.models import Calendar, CatchupPolicy, OverlapPolicy, Priority, TriggerKind, WindowAction
from toolkit import jsonshape

#: Fields a user may set. The rest of a trigger (owner, status, counters, next run) belongs to services.
WRITABLE_FIELDS = (
    "name", "description", "workflow_id", "target", "input", "metadata", "kind", "cron_expression",
    "interval_seconds", "anchor_at", "run_at", "timezone", "start_at", "end_at", "max_runs", "jitter_seconds",
    "overlap_policy", "catchup_policy", "catchup_window_seconds", "misfire_grace_seconds", "max_attempts",
    "backoff_seconds", "timeout_seconds", "priority", "max_concurrent", "auto_pause_after_failures",
    "keep_succeeded", "keep_failed", "windows", "blackouts", "window_action", "excluded_calendar",
)  # fmt: skip

#: Changing any of these changes which slots exist, so catch-up must not replay the old schedule's slots.
SCHEDULE_FIELDS = (
    "kind", "cron_expression", "interval_seconds", "anchor_at", "run_at", "timezone", "start_at", "end_at",
    "max_runs",
)  # fmt: skip

TEXT_LIMITS = {"name": 200, "description": 10_000, "workflow_id": 200, "target": 100, "cron_expression": 200}
REQUIRED_TEXT = ("name", "workflow_id")
DAY = 86_400
# (minimum, maximum) for each integer field; the maxima keep every product and timedelta far from overflow.
INT_LIMITS: dict[str, tuple[int, int]] = {
    "interval_seconds": (1, 10 * 366 * DAY),
    "max_runs": (1, 1_000_000_000),
    "jitter_seconds": (0, DAY),
    "catchup_window_seconds": (0, 30 * DAY),
    "misfire_grace_seconds": (0, DAY),
    "max_attempts": (1, 20),
    "backoff_seconds": (0, 3600),
    "timeout_seconds": (1, 7 * DAY),
    "auto_pause_after_failures": (1, 10_000),
    "max_concurrent": (1, 1000),
    "keep_succeeded": (1, 1_000_000),
    "keep_failed": (1, 1_000_000),
}
#: Integer fields where null means "no limit" (or, for an interval, "not this kind").
NULLABLE_INTS = frozenset(
    {"interval_seconds", "max_runs", "auto_pause_after_failures", "keep_succeeded", "keep_failed"}
)
DATETIME_FIELDS = ("anchor_at", "run_at", "start_at", "end_at")
CHOICES = {
    "kind": TriggerKind,
    "overlap_policy": OverlapPolicy,
    "catchup_policy": CatchupPolicy,
    "priority": Priority,
    "window_action": WindowAction,
}
JSON_LIMIT_BYTES = 64 * 1024


def check_json_shape(field: str, value: Any) -> None:
    """Depth and NUL characters, before anything that recurses over the value (`toolkit.jsonshape`)."""
    wrong = jsonshape.problem(value)
    if wrong:
        raise ValidationError({field: [wrong]})


def _check_text(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError({field: ["must be a string"]})
    if "\x00" in value:
        raise ValidationError({field: ["must not contain NUL characters"]})
    value = value.strip() if field != "description" else value
    if len(value) > TEXT_LIMITS[field]:
        raise ValidationError({field: [f"must be at most {TEXT_LIMITS[field]} characters"]})
    if field in REQUIRED_TEXT and not value:
        raise ValidationError({field: ["must not be empty"]})
    return value


def _check_json(field: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError({field: ["must be a JSON object"]})
    check_json_shape(field, value)
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError({field: [f"must be JSON-serialisable ({exc})"]}) from None
    if len(encoded.encode()) > JSON_LIMIT_BYTES:
        raise ValidationError({field: [f"must be at most {JSON_LIMIT_BYTES // 1024} KiB of JSON"]})
    return value


def _check_int(field: str, value: Any) -> int | None:
    if value is None:
        if field in NULLABLE_INTS:
            return None
        raise ValidationError({field: ["must not be null"]})
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError({field: ["must be an integer"]})
    low, high = INT_LIMITS[field]
    if not low <= value <= high:
        raise ValidationError({field: [f"must be between {low} and {high}"]})
    return value


def _check_datetime(field: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValidationError({field: ["must be an ISO 8601 date-time"]})
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError({field: ["must include a time zone offset (e.g. 2026-01-01T09:00:00Z)"]})
    return value


def _check_choice(field: str, value: Any) -> str:
    choices = CHOICES[field]
    if not isinstance(value, str) or value not in choices.values:
        allowed = ", ".join(choices.values)
        raise ValidationError({field: [f"{value!r} is not one of: {allowed}"]})
    return value


def _check_rules(field: str, value: Any) -> list[dict[str, Any]]:
    """Windows or blackouts, read by `schedules.rules` and stored in its normal form (day names, HH:MM,
    UTC instants), so every reader of the row meets one spelling."""
    check_json_shape(field, value)
    parse = rules.parse_windows if field == "windows" else rules.parse_blackouts
    try:
        return [item.as_json() for item in parse(value)]
    except rules.RuleError as exc:
        raise ValidationError({field: [exc.message]}) from None


def _check_calendar(field: str, value: Any) -> Calendar | None:
    """A calendar by id (or the row itself). Whether the trigger's owner may use it is the service's check
    (`calendar_usable_by`): here only that it exists."""
    if value is None or isinstance(value, Calendar):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError({field: ["must be a calendar id (an integer) or null"]})
    found = Calendar.objects.filter(pk=value).first() if 0 < value < 2**63 else None
    if found is None:
        raise ValidationError({field: [f"no calendar with id {value}"]})
    return found


def calendar_usable_by(owner: Any, calendar: Calendar | None) -> None:
    """A trigger may exclude its owner's calendars and shared ones (staff: any). Another user's private
    calendar gets the message an unknown id gets, so ids reveal nothing."""
    if calendar is None or calendar.shared or calendar.owner_id == owner.pk or owner.is_staff:
        return
    raise ValidationError({"excluded_calendar": [f"no calendar with id {calendar.pk}"]})


def clean_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """Type, range and syntax checks of each given field on its own; every problem at once."""
    cleaned, errors = clean_fields_partly(data)
    if errors:
        raise ValidationError(errors)
    return cleaned


def clean_fields_partly(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(the fields that passed, {field: messages} of those that did not): a form or an agent fixing its
    input sees every problem in one answer, not one per round trip."""
    errors: dict[str, list[str]] = {}
    for field in sorted(set(data) - set(WRITABLE_FIELDS)):
        errors[field] = ["is not a field that can be set"]
    cleaned: dict[str, Any] = {}
    for field, value in data.items():
        if field in errors:
            continue
        try:
            if field in TEXT_LIMITS:
                cleaned[field] = _check_text(field, value)
            elif field in ("input", "metadata"):
                cleaned[field] = _check_json(field, value)
            elif field in INT_LIMITS:
                cleaned[field] = _check_int(field, value)
            elif field in DATETIME_FIELDS:
                cleaned[field] = _check_datetime(field, value)
            elif field in CHOICES:
                cleaned[field] = _check_choice(field, value)
            elif field in ("windows", "blackouts"):
                cleaned[field] = _check_rules(field, value)
            elif field == "excluded_calendar":
                cleaned[field] = _check_calendar(field, value)
            elif field == "timezone":
                if not isinstance(value, str):
                    raise ValidationError({field: ["must be a string"]})
                # Blank means "no zone given", which is UTC: stored as what it means, so the row, the API
                # and the admin never show an empty zone that every reader must remember to read as UTC.
                cleaned[field] = value.strip() or "UTC"
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                errors.setdefault(name, []).extend(messages)
    if "target" in cleaned and cleaned["target"] not in settings.SCHEDULER_TARGETS:
        allowed = ", ".join(sorted(settings.SCHEDULER_TARGETS)) or "none configured"
        errors["target"] = [f"unknown target {cleaned.pop('target')!r}; allowed: {allowed}"]
    return cleaned, errors


def spec_from(values: Mapping[str, Any]) -> timing.ScheduleSpec:
    return timing.ScheduleSpec(
        kind=values["kind"],
        cron_expression=values.get("cron_expression") or None,
        interval_seconds=values.get("interval_seconds"),
        anchor_at=values.get("anchor_at"),
        run_at=values.get("run_at"),
        timezone=values.get("timezone") or "UTC",
        start_at=values.get("start_at"),
        end_at=values.get("end_at"),
        max_runs=values.get("max_runs"),
    )


def spec_of(trigger: Any) -> timing.ScheduleSpec:
    """The schedule a saved trigger (or anything with its schedule fields) describes."""
    return spec_from({f: getattr(trigger, f) for f in SCHEDULE_FIELDS})


def normalise_schedule(values: dict[str, Any], *, now: datetime) -> None:
    """Clear the fields another kind uses, so a row never carries a stale cron expression or interval; and
    give an interval an anchor (its start, or now) so its slots are fixed from the moment it is registered."""
    kind = values.get("kind")
    if kind != TriggerKind.CRON:
        values["cron_expression"] = ""
    if kind != TriggerKind.INTERVAL:
        values["interval_seconds"] = None
        values["anchor_at"] = None
    elif values.get("anchor_at") is None:
        values["anchor_at"] = values.get("start_at") or now.replace(microsecond=0)
    if kind != TriggerKind.ONCE:
        values["run_at"] = None


def validate_schedule(
    values: Mapping[str, Any], *, now: datetime, check_schedule: bool, check_jitter: bool
) -> None:
    """Whole-trigger checks: the schedule can fire, and jitter stays below the gap between slots. A bad
    zone and a bad expression are both reported; the checks that need both valid come after."""
    spec = spec_from(values)
    errors: dict[str, list[str]] = {}
    try:
        timing.get_zone(spec.timezone)
    except timing.TimingError as exc:
        errors[exc.field] = [exc.message]
    if check_schedule and spec.kind == TriggerKind.CRON and spec.cron_expression:
        try:
            timing.parse_cron(spec.cron_expression)
        except timing.TimingError as exc:
            errors.setdefault(exc.field, []).append(exc.message)
    if not errors:
        try:
            if check_schedule:
                minimum = settings.SCHEDULER_MIN_INTERVAL_SECONDS
                timing.validate_spec(spec, now=now, min_interval_seconds=minimum)
            if check_jitter and values.get("jitter_seconds"):
                timing.validate_jitter(spec, values["jitter_seconds"])
        except timing.TimingError as exc:
            errors[exc.field] = [exc.message]
    if errors:
        raise ValidationError(errors)


def add_schedule_errors(
    errors: dict[str, list[str]],
    values: Mapping[str, Any],
    *,
    now: datetime,
    check_schedule: bool,
    check_jitter: bool,
) -> None:
    """`validate_schedule`'s problems added to `errors` (from `clean_fields_partly`), when the schedule's
    own fields passed: every answer lists every problem it can see, never a schedule check of half-valid
    fields."""
    if errors.keys() & {*SCHEDULE_FIELDS, "jitter_seconds"}:
        return
    try:
        validate_schedule(values, now=now, check_schedule=check_schedule, check_jitter=check_jitter)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.setdefault(name, []).extend(messages)


def delay_to_run_at(delay_ms: Any, *, now: datetime) -> datetime:
    """The API may give a one-off as a delay in milliseconds instead of an instant."""
    if isinstance(delay_ms, bool) or not isinstance(delay_ms, int):
        raise ValidationError({"delay_ms": ["must be an integer number of milliseconds"]})
    if not 1 <= delay_ms <= 10 * 366 * DAY * 1000:
        raise ValidationError({"delay_ms": ["must be between 1 ms and 10 years"]})
    return now + timedelta(milliseconds=delay_ms)
