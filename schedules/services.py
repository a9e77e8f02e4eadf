"""The only code that changes a trigger. Views, admin actions, management commands and tasks call these; each
runs in one transaction and syncs the trigger's beat entry after commit (`robust`: Redis being down must not
turn a saved change into an error — reconcile repairs the entry from the database).

The execution side changes a trigger too — its counters, last slot, next run, and completion when a
schedule runs out — but only through `trigger_record_slots` and `trigger_record_end` below, called on a row
the caller already holds locked, inside the caller's transaction (the counters must commit with the
executions they count). So "next slot, or completed" is decided in one place: `_refresh_next_run`.

The audit trail (`Trigger.history`, django-simple-history) records every change made here through `.save()`,
with the request's user as the actor and `_audited`'s reason. The counter paths below save in bulk, which
sends no signal and so writes no history row: deliberately, so a fire or a run's end costs no more than it
did; the executions are the record of those. Actions that change no field (run now, backfill) are written
by `trigger_record_action`."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from schedules import calendars, rules, selectors, timing, validation
from schedules.models import Calendar, CalendarSource, OwnerLimits, Trigger, TriggerStatus, TriggerTemplate
from toolkit import bulk, clock, events, metrics
from toolkit.events import Event, EventKind

logger = logging.getLogger(__name__)


def _audited(trigger: Trigger, reason: str) -> Trigger:
    """Give the next save of `trigger` its reason in the audit trail (read by simple-history at save)."""
    trigger._change_reason = reason[:100]  # type: ignore[attr-defined]
    return trigger


def trigger_record_action(*, trigger: Trigger, action: str, actor: Any = None) -> None:
    """Write an action that changes no field of `trigger` (run now, re-run, backfill) to its audit trail, as
    a version of the row as it stands, in the caller's transaction. `actor` defaults to the request's
    user (the middleware's), as for every other change."""
    Trigger.history.bulk_history_create(
        [trigger],
        update=True,
        default_change_reason=action[:100],
        default_user=actor if getattr(actor, "is_authenticated", False) else None,
    )


def _sync_after_commit(trigger_id: uuid.UUID) -> None:
    from schedules.beat.sync import sync_trigger

    transaction.on_commit(lambda: sync_trigger(trigger_id), robust=True)


def trigger_next_slot(*, trigger: Trigger, after: datetime) -> datetime | None:
    """The next slot of an active trigger after `after`, or None when its schedule has ended."""
    return timing.next_slot(validation.spec_of(trigger), after, runs_so_far=trigger.runs_so_far)


def _refresh_next_run(trigger: Trigger, *, now: datetime) -> None:
    """Keep `next_run_at` true. A schedule with no slot left completes the trigger."""
    if trigger.status != TriggerStatus.ACTIVE or trigger.deleted_at is not None:
        trigger.next_run_at = None
        return
    after = max(now, trigger.last_slot) if trigger.last_slot else now
    trigger.next_run_at = trigger_next_slot(trigger=trigger, after=after)
    if trigger.next_run_at is None:
        trigger.status = TriggerStatus.COMPLETED


@transaction.atomic
def trigger_register(*, owner, id: uuid.UUID | None = None, paused: bool = False, **fields: Any) -> Trigger:
    now = clock.now()
    if "delay_ms" in fields:
        fields["run_at"] = validation.delay_to_run_at(fields.pop("delay_ms"), now=now)
    cleaned, errors = validation.clean_fields_partly(fields)
    for required in ("name", "workflow_id"):
        if required not in cleaned and required not in errors:
            errors[required] = ["this field is required"]
    trigger = Trigger(owner=owner, **cleaned)
    if id is not None:
        trigger.id = id
    values = {f: getattr(trigger, f) for f in validation.WRITABLE_FIELDS}
    validation.normalise_schedule(values, now=now)
    validation.add_schedule_errors(errors, values, now=now, check_schedule=True, check_jitter=True)
    _add_calendar_errors(errors, owner, cleaned.get("excluded_calendar"))
    if errors:
        raise ValidationError(errors)
    _check_owner_cap(owner)
    for field in validation.SCHEDULE_FIELDS:
        setattr(trigger, field, values[field])
    trigger.schedule_changed_at = now
    if paused:
        trigger.status = TriggerStatus.PAUSED
        trigger.paused_at = now
    _refresh_next_run(trigger, now=now)
    _audited(trigger, "Registered (paused)" if paused else "Registered")
    trigger.save(force_insert=True)
    _sync_after_commit(trigger.pk)
    return trigger


def _add_calendar_errors(errors: dict[str, list[str]], owner: Any, calendar: Any) -> None:
    try:
        validation.calendar_usable_by(owner, calendar)
    except ValidationError as exc:
        errors.update(exc.message_dict)


def _check_owner_cap(owner) -> None:
    """The owner's own cap when an operator set one (`OwnerLimits`), else SCHEDULER_MAX_TRIGGERS_PER_OWNER
    (0: none). Counts at most `cap` rows, so the check costs the cap, not an owner's whole fleet."""
    limits = selectors.limits_for(owner.pk)
    cap = limits.max_triggers
    live = Trigger.objects.live().filter(owner=owner).order_by().values("pk")
    if cap > 0 and live[:cap].count() >= cap:
        whose = "this owner's limit" if limits.custom else "limit"
        raise ValidationError({"owner": [f"{whose} of {cap} triggers per owner reached"]})


def _apply_fields(trigger: Trigger, fields: dict[str, Any], *, now: datetime, check_all: bool) -> bool:
    """Validate `fields` over the trigger's current values and set them on the instance (nothing is saved).
    Returns whether the schedule changed. The schedule is checked only when it changed (an edit of the
    name must not fail because an old schedule's end has since passed), unless `check_all`."""
    if "delay_ms" in fields:
        fields["run_at"] = validation.delay_to_run_at(fields.pop("delay_ms"), now=now)
    cleaned, errors = validation.clean_fields_partly(fields)
    values = {f: getattr(trigger, f) for f in validation.WRITABLE_FIELDS}
    values.update(cleaned)
    validation.normalise_schedule(values, now=now)
    schedule_changed = any(values[f] != getattr(trigger, f) for f in validation.SCHEDULE_FIELDS)
    jitter_changed = values["jitter_seconds"] != trigger.jitter_seconds
    validation.add_schedule_errors(
        errors,
        values,
        now=now,
        check_schedule=check_all or schedule_changed,
        check_jitter=check_all or schedule_changed or jitter_changed,
    )
    if "excluded_calendar" in cleaned and cleaned["excluded_calendar"] != trigger.excluded_calendar:
        _add_calendar_errors(errors, trigger.owner, cleaned["excluded_calendar"])
    if errors:
        raise ValidationError(errors)
    for field, value in values.items():
        setattr(trigger, field, value)
    return schedule_changed


@transaction.atomic
def trigger_update(*, trigger: Trigger, **fields: Any) -> Trigger:
    now = clock.now()
    trigger = Trigger.objects.select_for_update().get(pk=trigger.pk)
    schedule_changed = _apply_fields(trigger, fields, now=now, check_all=False)
    if schedule_changed:
        trigger.schedule_changed_at = now
        if trigger.status == TriggerStatus.COMPLETED:
            # A new schedule gives a finished trigger new slots: it becomes active again.
            trigger.status = TriggerStatus.ACTIVE
    _refresh_next_run(trigger, now=now)
    _audited(trigger, "Edited (schedule changed)" if schedule_changed else "Edited")
    trigger.save()
    _sync_after_commit(trigger.pk)
    return trigger


@transaction.atomic
def trigger_pause(*, trigger: Trigger, reason: str = "") -> Trigger:
    trigger = Trigger.objects.select_for_update().get(pk=trigger.pk)
    if not isinstance(reason, str) or "\x00" in reason or len(reason) > 500:
        raise ValidationError({"reason": ["must be text of at most 500 characters"]})
    if trigger.status == TriggerStatus.COMPLETED:
        raise ValidationError({"status": ["a completed trigger cannot be paused"]})
    if trigger.status != TriggerStatus.PAUSED:
        trigger.status = TriggerStatus.PAUSED
        trigger.paused_at = clock.now()
        trigger.paused_reason = reason
        trigger.next_run_at = None
        _audited(trigger, f"Paused: {reason}" if reason else "Paused")
        trigger.save(update_fields=["status", "paused_at", "paused_reason", "next_run_at", "updated_at"])
    _sync_after_commit(trigger.pk)
    return trigger


@transaction.atomic
def trigger_resume(*, trigger: Trigger) -> Trigger:
    """Resume from now on: slots that fell while paused are never replayed (`resumed_at` floors catch-up)."""
    trigger = Trigger.objects.select_for_update().get(pk=trigger.pk)
    if trigger.status == TriggerStatus.COMPLETED:
        raise ValidationError({"status": ["a completed trigger cannot be resumed; change its schedule"]})
    if trigger.status == TriggerStatus.PAUSED:
        now = clock.now()
        trigger.status = TriggerStatus.ACTIVE
        trigger.resumed_at = now
        trigger.paused_at = None
        trigger.paused_reason = ""
        _refresh_next_run(trigger, now=now)
        _audited(trigger, "Resumed")
        trigger.save()
    _sync_after_commit(trigger.pk)
    return trigger


@transaction.atomic
def trigger_delete(*, trigger: Trigger) -> None:
    """Soft delete: the trigger leaves every list and beat, but its row stays so the history of its runs
    (which users expect to keep reading) still has a trigger to point at."""
    trigger = Trigger.objects.select_for_update().get(pk=trigger.pk)
    if trigger.deleted_at is None:
        trigger.deleted_at = clock.now()
        trigger.next_run_at = None
        _audited(trigger, "Deleted")
        trigger.save(update_fields=["deleted_at", "next_run_at", "updated_at"])
    _sync_after_commit(trigger.pk)


@transaction.atomic
def trigger_restore(*, trigger: Trigger, paused: bool = False, **fields: Any) -> Trigger:
    """Register a deleted trigger again, under its own id, with `fields` as its schedule.

    Clients of the earlier scheduler unregister a `triggerId` and later register the same one, and expect
    one history across both lives — so the row (its runs, counters and last slot) comes back rather than
    a new one. It is checked as a new registration is (every field, the owner's cap), and catch-up never
    looks before the restore (`schedule_changed_at`, `resumed_at`): slots that fell while it was deleted
    are never replayed."""
    now = clock.now()
    trigger = Trigger.objects.select_for_update().get(pk=trigger.pk)
    if trigger.deleted_at is None:
        raise ValidationError({"id": ["is not deleted; update it instead"]})
    _check_owner_cap(trigger.owner)
    _apply_fields(trigger, fields, now=now, check_all=True)
    trigger.deleted_at = None
    trigger.schedule_changed_at = now
    if paused:
        trigger.status = TriggerStatus.PAUSED
        trigger.paused_at = now
    else:
        trigger.status = TriggerStatus.ACTIVE
        trigger.paused_at = None
        trigger.resumed_at = now
    trigger.paused_reason = ""
    _refresh_next_run(trigger, now=now)
    _audited(trigger, "Restored")
    trigger.save()
    _sync_after_commit(trigger.pk)
    return trigger


#: What the fire path changes on a trigger (`trigger_note_slots`), saved in bulk by `triggers_save_slots`.
SLOT_FIELDS = ("last_slot", "run_count", "last_run_at", "last_status", "next_run_at", "status", "updated_at")


def trigger_note_slots(
    *,
    trigger: Trigger,
    through: datetime | None,
    started: int,
    last_status: str,
    now: datetime,
    held: int = 0,
) -> bool:
    """The fire path decided every slot up to `through` (recorded, skipped or held back); `started` of them
    were sent to launch and the last one recorded ended up `last_status`. Advances `last_slot` (the fence
    against replaying a slot), the run counters and `next_run_at` on the instance; a schedule with nothing
    left (end passed, max_runs reached, a one-off done) completes the trigger. Returns whether the status
    changed (its beat entry must then go). Nothing is written: `triggers_save_slots` saves a whole batch
    in one statement, which is why this is split from the save.

    `through=None` (a backfill of past slots) counts the runs but leaves `last_slot` where it is.

    `held` slots were held back to run later (overlap `queue`/`buffer_one`, a concurrency limit): they
    count against `max_runs` now, when they are decided, not when they are promoted — otherwise a busy
    `queue` trigger would pile up waiting slots past its limit and run every one of them.

    `trigger` is the row the caller locked (`select_for_update`) in the transaction it is still in."""
    if through is not None:
        trigger.last_slot = max(trigger.last_slot, through) if trigger.last_slot else through
    if started:
        trigger.last_run_at = now
    trigger.run_count += started + held
    if last_status:
        trigger.last_status = last_status
    trigger.updated_at = now
    was = trigger.status
    if trigger.status == TriggerStatus.ACTIVE and trigger.deleted_at is None:
        _refresh_next_run(trigger, now=now)
    return trigger.status != was


def triggers_save_slots(*, triggers: Sequence[Trigger], ended: Iterable[uuid.UUID]) -> None:
    """Save what `trigger_note_slots` changed on `triggers` (one UPDATE per batch) and, after commit, drop
    the beat entries of the ones whose schedule `ended`."""
    if triggers:
        bulk.update_each(triggers, SLOT_FIELDS)
    ended = list(ended)
    if ended:
        from schedules.beat.sync import sync_triggers

        transaction.on_commit(lambda: sync_triggers(ended), robust=True)


def trigger_record_slots(
    *, trigger: Trigger, through: datetime, started: int, last_status: str, now: datetime, held: int = 0
) -> Trigger:
    """`trigger_note_slots` and its save, for one trigger."""
    ended = trigger_note_slots(
        trigger=trigger, through=through, started=started, last_status=last_status, now=now, held=held
    )
    triggers_save_slots(triggers=[trigger], ended=[trigger.pk] if ended else [])
    return trigger


#: What the end of a run changes on its trigger (`trigger_note_end`).
END_FIELDS = (
    "last_status", "last_run_at", "failure_count", "consecutive_failures", "last_error", "updated_at",
)  # fmt: skip


def trigger_note_end(
    *, trigger: Trigger, status: str, failed: bool, succeeded: bool, started_at: datetime | None, error: str
) -> None:
    """A run of `trigger` ended as `status`: its last status and run time, and the failure counters that
    alerting and the dashboard read (`failed` counts a failure, `succeeded` ends a failure streak; a cancel
    is neither). On the instance only: `trigger_record_end` saves one, `triggers_save_ends` a batch.

    A failure, and the first success after failures, are announced to notification subscribers after
    commit (`toolkit.events`); a success that ends no streak costs nothing."""
    streak = trigger.consecutive_failures
    trigger.last_status = status
    if started_at and (trigger.last_run_at is None or started_at > trigger.last_run_at):
        trigger.last_run_at = started_at
    if failed:
        trigger.failure_count += 1
        trigger.consecutive_failures += 1
        trigger.last_error = error
    elif succeeded:
        trigger.consecutive_failures = 0
    trigger.updated_at = clock.now()
    if failed or (succeeded and streak):
        _announce_end(trigger, status=status, failed=failed, streak=streak, error=error)


def _announce_end(trigger: Trigger, *, status: str, failed: bool, streak: int, error: str) -> None:
    kind = EventKind.FAILED if failed else EventKind.RECOVERED
    if kind not in events.wanted():
        return
    failures = trigger.consecutive_failures if failed else streak
    event = Event.of(
        kind, trigger=trigger, at=trigger.updated_at, reason=status, failures=failures, detail=error[:500]
    )
    events.emit_after_commit([event])


def triggers_save_ends(*, triggers: Sequence[Trigger]) -> None:
    """Save what `trigger_note_end` changed on `triggers`, in one statement, then pause those whose failure
    streak reached their `auto_pause_after_failures`. Same locking contract as `trigger_record_slots`."""
    bulk.update_each(triggers, END_FIELDS)
    for trigger in triggers:
        _auto_pause_if_due(trigger)


def auto_pause_reason(failures: int) -> str:
    """The pause note of an automatic pause: what a user reads in the API, the admin and the CLI."""
    return f"paused after {failures} consecutive failure{'s' if failures != 1 else ''}"


def _auto_pause_if_due(trigger: Trigger) -> None:
    """Pause a trigger whose runs keep failing (`auto_pause_after_failures`), through `trigger_pause` like
    any pause — its beat entry goes after commit, and later slots are recorded `paused` — with the reason
    as its note. It is judged on the streak, not on a crossing: resuming a trigger keeps its streak, so
    the next failure pauses it again, and one success (which ends the streak) is what clears it. Only an
    active trigger is paused (a run that fails after a manual pause, or after completion, changes nothing).

    The instance is the caller's locked row: it is brought up to date, so a later save of it cannot undo
    the pause."""
    threshold = trigger.auto_pause_after_failures
    if (
        threshold is None
        or trigger.consecutive_failures < threshold
        or trigger.status != TriggerStatus.ACTIVE
        or trigger.deleted_at is not None
    ):
        return
    reason = auto_pause_reason(trigger.consecutive_failures)
    paused = trigger_pause(trigger=trigger, reason=reason)
    for field in ("status", "paused_at", "paused_reason", "next_run_at", "updated_at"):
        setattr(trigger, field, getattr(paused, field))
    failures, trigger_id = trigger.consecutive_failures, trigger.pk
    if EventKind.AUTO_PAUSED in events.wanted():  # to notification subscribers, after commit
        event = Event.of(
            EventKind.AUTO_PAUSED, trigger=trigger, at=clock.now(), reason=reason, failures=failures
        )
        events.emit_after_commit([event])

    def announce() -> None:
        logger.warning("trigger %s auto-paused after %d consecutive failures", trigger_id, failures)
        metrics.trigger_auto_paused()

    transaction.on_commit(announce, robust=True)


def trigger_record_end(
    *, trigger: Trigger, status: str, failed: bool, succeeded: bool, started_at: datetime | None, error: str
) -> Trigger:
    """`trigger_note_end` and its save, for one trigger."""
    trigger_note_end(
        trigger=trigger, status=status, failed=failed, succeeded=succeeded, started_at=started_at, error=error
    )
    triggers_save_ends(triggers=[trigger])  # in bulk, like a batch: a run's end writes no audit row
    return trigger


@dataclasses.dataclass(frozen=True)
class PreviewRun:
    """A previewed slot (`timing.FireTime`'s slot, local and DST note) with what the trigger's windows,
    blackouts and calendar would do with it (`schedules.rules.decide`, the fire path's own rule): `run`,
    `deferred` (to `not_before`) or `skipped` (with `reason`, a skip reason the run would record)."""

    slot: datetime
    local: datetime
    note: str | None
    decision: str = "run"
    reason: str | None = None
    not_before: datetime | None = None
    rule: str = ""


@dataclasses.dataclass(frozen=True)
class Preview:
    runs: list[PreviewRun]
    #: The dates the trigger's calendar excludes from the preview's start to its last slot (local dates).
    excluded_days: list[date]


def trigger_preview(
    *, trigger: Trigger | None = None, after: datetime | None = None, count: int = 10, **fields: Any
) -> list[PreviewRun]:
    """Next fire times of a saved trigger, or of unsaved fields (the form a user is typing into); a saved
    trigger's windows, blackouts and calendar mark each one run, deferred or skipped."""
    return trigger_preview_full(trigger=trigger, after=after, count=count, **fields).runs


def trigger_preview_full(
    *, trigger: Trigger | None = None, after: datetime | None = None, count: int = 10, **fields: Any
) -> Preview:
    """`trigger_preview`, with the excluded days of the previewed range."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
        raise ValidationError({"count": ["must be an integer between 1 and 100"]})
    now = clock.now()
    after = after or now
    if trigger is not None:
        values = {f: getattr(trigger, f) for f in validation.SCHEDULE_FIELDS}
        runs = trigger.runs_so_far
    else:
        values = validation.clean_fields({k: v for k, v in fields.items() if k in validation.SCHEDULE_FIELDS})
        values.setdefault("kind", "cron")
        validation.normalise_schedule(values, now=now)
        validation.validate_schedule(values, now=now, check_schedule=True, check_jitter=False)
        runs = 0
    fire_times = timing.next_fire_times(validation.spec_from(values), after, count, runs_so_far=runs)
    slot_rules = None
    if trigger is not None:
        slot_rules = selectors.slot_rules_of(trigger, selectors.calendars_of([trigger.excluded_calendar_id]))
    previewed = [_preview_run(ft, slot_rules) for ft in fire_times]
    excluded: list[date] = []
    if slot_rules is not None and slot_rules.excluded_dates:
        first = after.astimezone(slot_rules.zone).date()
        last = fire_times[-1].local.date() if fire_times else first + timedelta(days=31)
        excluded = rules.excluded_between(slot_rules.excluded_dates, first, max(first, last))
    return Preview(previewed, excluded)


def _preview_run(fire_time: timing.FireTime, slot_rules: rules.SlotRules | None) -> PreviewRun:
    base = PreviewRun(fire_time.slot, fire_time.local, fire_time.note)
    if slot_rules is None:
        return base
    verdict = rules.decide(slot_rules, fire_time.slot)
    if verdict.run and verdict.not_before is None:
        return base
    decision = "deferred" if verdict.run else "skipped"
    return dataclasses.replace(
        base, decision=decision, reason=verdict.reason, not_before=verdict.not_before, rule=verdict.detail
    )


_LIMIT_FIELDS = ("max_triggers", "max_concurrent_runs", "max_concurrent_per_workflow")


@transaction.atomic
def owner_limits_set(*, owner, note: str = "", **limits: Any) -> OwnerLimits:
    """An operator's caps for one user (the admin calls this); a field left empty (None) falls back to the
    environment's default. Lowering a cap never stops what runs or exists: it applies to the next trigger
    registered and the next run started."""
    unknown = sorted(set(limits) - set(_LIMIT_FIELDS))
    if unknown:
        raise ValidationError({unknown[0]: ["is not a limit"]})
    for field, value in limits.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9
        ):
            raise ValidationError({field: ["must be empty or an integer between 0 and 1000000000"]})
    if not isinstance(note, str) or len(note) > 500:
        raise ValidationError({"note": ["must be text of at most 500 characters"]})
    row, _created = OwnerLimits.objects.select_for_update().get_or_create(owner=owner)
    for field, value in limits.items():
        setattr(row, field, value)
    row.note = note
    row.save()
    return row


# --- Calendars ----------------------------------------------------------------------------------------------

_CALENDAR_TEXT = {"name": 200, "description": 10_000}


def _calendar_text(field: str, value: Any) -> str:
    if not isinstance(value, str) or "\x00" in value:
        raise ValidationError({field: ["must be text"]})
    value = value.strip() if field == "name" else value
    if len(value) > _CALENDAR_TEXT[field]:
        raise ValidationError({field: [f"must be at most {_CALENDAR_TEXT[field]} characters"]})
    if field == "name" and not value:
        raise ValidationError({field: ["must not be empty"]})
    return value


def _calendar_dates(source: dict[str, Any]) -> tuple[str, list[date], dict[str, str]]:
    """(source, dates, provenance) from exactly one of `dates`, `ics`, `holidays`."""
    given = [key for key in ("dates", "ics", "holidays") if source.get(key) is not None]
    if len(given) > 1:
        raise ValidationError({given[1]: [f"give one of dates, ics or holidays, not {' and '.join(given)}"]})
    try:
        if not given or given[0] == "dates":
            return CalendarSource.MANUAL, calendars.dates_from_list(source.get("dates") or []), {}
        if given[0] == "ics":
            return CalendarSource.ICS, calendars.dates_from_ics(source["ics"]), {}
        spec = source["holidays"]
        if not isinstance(spec, dict):
            raise ValidationError({"holidays": ["must be an object like {'country': 'DE', 'years': [2026]}"]})
        unknown = sorted(set(spec) - {"country", "subdivision", "years"})
        if unknown:
            raise ValidationError({unknown[0]: ["is not a key of holidays (country, subdivision, years)"]})
        now_year = clock.now().year
        years = spec.get("years", [now_year, now_year + 1])
        dates = calendars.dates_from_holidays(
            country=spec.get("country"), subdivision=spec.get("subdivision") or "", years=years
        )
        where = {"country": str(spec["country"]).strip().upper()}
        where["subdivision"] = str(spec.get("subdivision") or "").strip().upper()
        return CalendarSource.HOLIDAYS, dates, where
    except calendars.CalendarError as exc:
        raise ValidationError({exc.field: [exc.message]}) from None


def _check_shared(actor: Any, shared: Any) -> bool:
    if not isinstance(shared, bool):
        raise ValidationError({"shared": ["must be true or false"]})
    if shared and not getattr(actor, "is_staff", False):
        raise ValidationError({"shared": ["only staff may share a calendar with every user"]})
    return shared


def _unique_name(model: Any, owner: Any, name: str, *, noun: str, exclude: int | None = None) -> None:
    """A user's calendars, like their templates, are told apart by name: a second one is refused on it."""
    taken = model.objects.filter(owner=owner, name=name)
    if (taken.exclude(pk=exclude) if exclude is not None else taken).exists():
        raise ValidationError({"name": [f"you already have a {noun} named {name!r}"]})


@transaction.atomic
def calendar_create(
    *,
    owner: Any,
    name: Any,
    description: Any = "",
    shared: Any = False,
    dates: Any = None,
    ics: Any = None,
    holidays: Any = None,
) -> Calendar:
    """A named set of excluded dates: listed (`dates`), read from an ICS file's text (`ics`) or a country's
    public holidays (`holidays`: country, optional subdivision, years — default this year and next)."""
    name = _calendar_text("name", name)
    calendar = Calendar(
        owner=owner,
        name=name,
        description=_calendar_text("description", description),
        shared=_check_shared(owner, shared),
    )
    source, found, where = _calendar_dates({"dates": dates, "ics": ics, "holidays": holidays})
    _unique_name(Calendar, owner, name, noun="calendar")
    calendar.source, calendar.dates = source, [d.isoformat() for d in found]
    calendar.country, calendar.subdivision = where.get("country", ""), where.get("subdivision", "")
    calendar.save(force_insert=True)
    return calendar


def _rename(obj: Any, fields: dict[str, Any], *, allowed: set[str], noun: str) -> None:
    """The part of an update that calendars and templates share: refuse a field that cannot be set, then
    the name (unique among the owner's) and the description, on the locked instance."""
    unknown = sorted(set(fields) - {"name", "description", *allowed})
    if unknown:
        raise ValidationError({unknown[0]: ["is not a field that can be set"]})
    if "name" in fields:
        obj.name = _calendar_text("name", fields["name"])
        _unique_name(type(obj), obj.owner, obj.name, noun=noun, exclude=obj.pk)
    if "description" in fields:
        obj.description = _calendar_text("description", fields["description"])


@transaction.atomic
def calendar_update(*, calendar: Calendar, actor: Any, **fields: Any) -> Calendar:
    """Rename, describe, share (staff) or replace the dates (one of `dates`, `ics`, `holidays`). Triggers
    that exclude the calendar read its new dates at their next fire."""
    calendar = Calendar.objects.select_for_update().get(pk=calendar.pk)
    _rename(calendar, fields, allowed={"shared", "dates", "ics", "holidays"}, noun="calendar")
    if "shared" in fields:
        calendar.shared = _check_shared(actor, fields["shared"])
    if any(fields.get(key) is not None for key in ("dates", "ics", "holidays")):
        source, found, where = _calendar_dates(fields)
        calendar.source, calendar.dates = source, [d.isoformat() for d in found]
        calendar.country, calendar.subdivision = where.get("country", ""), where.get("subdivision", "")
    calendar.save()
    return calendar


@transaction.atomic
def calendar_delete(*, calendar: Calendar) -> None:
    """Refused while a live trigger excludes it: removing a holiday calendar must not quietly make those
    triggers run on holidays. Deleted triggers let go of it."""
    calendar = Calendar.objects.select_for_update().get(pk=calendar.pk)
    users = Trigger.objects.live().filter(excluded_calendar=calendar)
    count = users.count()
    if count:
        raise ValidationError({"calendar": [f"excluded by {count} trigger(s); change them first"]})
    Trigger.objects.filter(excluded_calendar=calendar).update(excluded_calendar=None)
    calendar.delete()


# --- Templates ----------------------------------------------------------------------------------------------


def _definition_of(trigger: Trigger) -> dict[str, Any]:
    """A trigger's writable fields as JSON (instants in ISO 8601 UTC, the calendar by id): what the API
    would take to make the same trigger."""
    definition: dict[str, Any] = {}
    for field in validation.WRITABLE_FIELDS:
        if field == "excluded_calendar":
            definition[field] = trigger.excluded_calendar_id
            continue
        value = getattr(trigger, field)
        definition[field] = clock.iso_z(value) if isinstance(value, datetime) else value
    return definition


def _fields_of(definition: dict[str, Any]) -> dict[str, Any]:
    """A stored definition back into the values the trigger services take (ISO instants → datetimes)."""
    fields = dict(definition)
    for field in validation.DATETIME_FIELDS:
        if isinstance(fields.get(field), str):
            try:
                fields[field] = datetime.fromisoformat(fields[field].replace("Z", "+00:00"))
            except ValueError:
                raise ValidationError({field: ["must be an ISO 8601 date-time"]}) from None
    return fields


def _check_definition(definition: Any) -> dict[str, Any]:
    """Each field of a template on its own (types, ranges, choices, the cron grammar); the whole trigger is
    checked when one is made from it, with what the user adds (a name, a workflow)."""
    if not isinstance(definition, dict):
        raise ValidationError({"definition": ["must be a JSON object of trigger fields"]})
    validation.check_json_shape("definition", definition)
    try:
        fields = _fields_of(definition)
    except ValidationError as exc:
        raise ValidationError(
            {"definition": [f"{f}: {m}" for f, ms in exc.message_dict.items() for m in ms]}
        ) from None
    _, errors = validation.clean_fields_partly(fields)
    expression = definition.get("cron_expression")
    if not errors and isinstance(expression, str) and expression.strip():
        try:
            timing.parse_cron(expression)
        except timing.TimingError as exc:
            errors[exc.field] = [exc.message]
    if errors:
        raise ValidationError({"definition": [f"{f}: {m}" for f, ms in sorted(errors.items()) for m in ms]})
    return definition


@transaction.atomic
def template_save(
    *, owner: Any, name: Any, description: Any = "", trigger: Trigger | None = None, definition: Any = None
) -> TriggerTemplate:
    """Save a trigger's settings (`trigger`) or a definition as a template of `owner`'s."""
    name = _calendar_text("name", name)
    if (trigger is None) == (definition is None):
        raise ValidationError({"definition": ["give either a trigger to copy or a definition"]})
    stored = _definition_of(trigger) if trigger is not None else _check_definition(definition)
    _unique_name(TriggerTemplate, owner, name, noun="template")
    template = TriggerTemplate(
        owner=owner, name=name, description=_calendar_text("description", description), definition=stored
    )
    template.save(force_insert=True)
    return template


@transaction.atomic
def template_update(*, template: TriggerTemplate, **fields: Any) -> TriggerTemplate:
    template = TriggerTemplate.objects.select_for_update().get(pk=template.pk)
    _rename(template, fields, allowed={"definition"}, noun="template")
    if "definition" in fields:
        template.definition = _check_definition(fields["definition"])
    template.save()
    return template


@transaction.atomic
def template_delete(*, template: TriggerTemplate) -> None:
    """Triggers made from it keep their settings: a template is copied, never linked."""
    template.delete()


def trigger_register_from_template(
    *, owner: Any, template: TriggerTemplate, paused: bool = False, **overrides: Any
) -> Trigger:
    """`trigger_register` with the template's fields under `overrides` (what the user changes or adds):
    validated as a whole, like any new trigger, so a template saved before a rule tightened still gets a
    400 naming the field rather than a broken trigger."""
    fields = {**_fields_of(template.definition), **overrides}
    return trigger_register(owner=owner, paused=paused, **fields)
