"""Reads of triggers for the operators' surfaces (the CLI). Services change triggers; these only read."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping
from datetime import date

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from schedules import rules, timing
from schedules.models import Calendar, OwnerLimits, Trigger, TriggerStatus, WindowAction


@dataclasses.dataclass(frozen=True)
class Limits:
    """One owner's caps as they apply: the operator's per-user values, the environment's where unset.
    Concurrency caps of 0 mean unlimited (as in the environment)."""

    max_triggers: int
    max_concurrent_runs: int
    max_concurrent_per_workflow: int
    custom: bool  # whether an operator set any of them for this user

    def as_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def default_limits() -> Limits:
    return Limits(
        max_triggers=settings.SCHEDULER_MAX_TRIGGERS_PER_OWNER,
        max_concurrent_runs=settings.SCHEDULER_MAX_CONCURRENT_PER_OWNER,
        max_concurrent_per_workflow=settings.SCHEDULER_MAX_CONCURRENT_PER_WORKFLOW,
        custom=False,
    )


def limits_of(owner_ids: Iterable[int]) -> dict[int, Limits]:
    """Each owner's limits, in one query (the fire path reads a whole batch's owners at once)."""
    owners = set(owner_ids)
    base = default_limits()
    found = {row.owner_id: row for row in OwnerLimits.objects.filter(owner_id__in=owners)} if owners else {}
    result = {}
    for owner in owners:
        row = found.get(owner)
        if row is None:
            result[owner] = base
            continue
        result[owner] = Limits(
            max_triggers=base.max_triggers if row.max_triggers is None else row.max_triggers,
            max_concurrent_runs=(
                base.max_concurrent_runs if row.max_concurrent_runs is None else row.max_concurrent_runs
            ),
            max_concurrent_per_workflow=(
                base.max_concurrent_per_workflow
                if row.max_concurrent_per_workflow is None
                else row.max_concurrent_per_workflow
            ),
            custom=True,
        )
    return result


def limits_for(owner_id: int) -> Limits:
    return limits_of([owner_id])[owner_id]


def trigger_list(*, owner: str | None = None, paused: bool | None = None) -> QuerySet[Trigger]:
    """Live triggers by name, optionally of one owner (a username) and only paused or only unpaused ones."""
    rows = Trigger.objects.live().select_related("owner").order_by("name", "pk")
    if owner is not None:
        rows = rows.filter(owner__username=owner)
    if paused is not None:
        rows = (
            rows.filter(status=TriggerStatus.PAUSED) if paused else rows.exclude(status=TriggerStatus.PAUSED)
        )
    return rows


def trigger_find(*, ref: str) -> Trigger:
    """A live trigger by id, or by its name when that names exactly one. An operator types what the list
    shows; a name two triggers share is refused with their ids rather than guessed."""
    live = Trigger.objects.live().select_related("owner")
    try:
        pk = uuid.UUID(ref)
    except ValueError:
        pk = None
    if pk is not None:
        found = live.filter(pk=pk).first()
        if found is None:
            raise ValidationError({"trigger": [f"no trigger with id {ref}"]})
        return found
    named = list(live.filter(name=ref)[:5])
    if not named:
        raise ValidationError({"trigger": [f"no trigger named {ref!r}"]})
    if len(named) > 1:
        ids = ", ".join(str(t.pk) for t in named)
        raise ValidationError({"trigger": [f"{len(named)} triggers are named {ref!r}; use an id: {ids}"]})
    return named[0]


@dataclasses.dataclass(frozen=True)
class CalendarDates:
    """A calendar's name and dates, as the rules read them."""

    name: str
    dates: frozenset[date]


def calendars_of(calendar_ids: Iterable[int | None]) -> dict[int, CalendarDates]:
    """The dates of each calendar, in one query (the fire path reads a whole batch's calendars at once);
    none when no trigger of the batch excludes one."""
    wanted = {pk for pk in calendar_ids if pk is not None}
    if not wanted:
        return {}
    rows = Calendar.objects.filter(pk__in=wanted).values_list("pk", "name", "dates")
    return {pk: CalendarDates(name, rules.parse_dates(dates or [])) for pk, name, dates in rows}


def slot_rules_of(trigger: Trigger, calendars: Mapping[int, CalendarDates]) -> rules.SlotRules | None:
    """The windows, blackouts and excluded dates of `trigger` for `schedules.rules.decide`, or None when it
    has none (the common case costs nothing). `calendars` comes from `calendars_of`."""
    calendar = calendars.get(trigger.excluded_calendar_id) if trigger.excluded_calendar_id else None
    if not (trigger.windows or trigger.blackouts or calendar):
        return None
    return rules.SlotRules(
        zone=timing.get_zone(trigger.timezone),
        windows=rules.parse_windows(trigger.windows),
        blackouts=rules.parse_blackouts(trigger.blackouts),
        excluded_dates=calendar.dates if calendar else frozenset(),
        defer=trigger.window_action == WindowAction.DEFER,
        calendar_name=calendar.name if calendar else "",
    )
