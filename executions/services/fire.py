"""Fire: the exactly-once guarantee. Every scheduled run (beat, catch-up, tick, reconcile) becomes an
`Execution` keyed by (trigger, slot) while the trigger row is locked, so a second fire of the same slot
finds the row and does nothing."""

from __future__ import annotations

import dataclasses
import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import DatabaseError, transaction

from executions import events, policies, selectors
from executions.models import (
    ACTIVE_STATUSES,
    Execution,
    ExecutionOrigin,
    ExecutionStatus,
    SkipReason,
)
from executions.services import dispatch
from executions.services.finish import execution_cancel
from schedules import selectors as schedule_selectors
from schedules import services as trigger_services
from schedules import timing, validation
from schedules.models import OverlapPolicy, Trigger, TriggerStatus
from schedules.selectors import Limits
from toolkit import bulk, clock, ids, logcontext, metrics

logger = logging.getLogger(__name__)


TINY = timedelta(microseconds=1)


def _fire_at(trigger: Trigger, slot: datetime) -> datetime:
    return slot + timing.jitter_offset(str(trigger.pk), slot, trigger.jitter_seconds)


def _is_slot_of(spec: timing.ScheduleSpec, slot: datetime) -> bool:
    """Whether `slot` is one the current schedule has. A fire for any other instant (an old schedule's slot
    sent before an edit landed, a forged tick) must not run."""
    return timing.next_slot(spec, slot - TINY) == slot


def _state(trigger: Trigger, *, stopped: bool = False) -> policies.TriggerState:
    status = trigger.status
    if trigger.deleted_at is not None:
        status = TriggerStatus.PAUSED  # a deleted trigger never runs again; recorded below as "deleted"
    return policies.TriggerState(
        status=status,
        start_at=trigger.start_at,
        end_at=trigger.end_at,
        max_runs=trigger.max_runs,
        run_count=trigger.runs_so_far,
        stopped=stopped,
    )


def _missed_slots(
    trigger: Trigger, spec: timing.ScheduleSpec, slot: datetime, now: datetime
) -> list[datetime]:
    """Slots before `slot` with no execution, never before the latest of (last recorded slot, resume, schedule
    edit) — so slots that fell while paused, or belonged to an old expression, are never replayed — and never
    more than one catch-up window back (older ones could only be skipped for the window anyway)."""
    # schedule_changed_at is set at registration too, so a new trigger never replays slots from before it.
    floors = [trigger.last_slot, trigger.resumed_at, trigger.schedule_changed_at]
    floor = max((f for f in floors if f is not None), default=now)
    window_floor = now - timedelta(seconds=trigger.catchup_window_seconds + trigger.misfire_grace_seconds)
    floor = max(floor, window_floor)
    if floor >= slot:
        return []
    # The newest slots matter (catch-up keeps the newest); fetch a bounded number, newest last.
    cap = settings.SCHEDULER_MAX_CATCHUP_SLOTS
    # max_runs is applied to the plan (apply_bounds), not here, so that skipped slots are still recorded.
    unbounded = dataclasses.replace(spec, max_runs=None)
    candidates = _recent_slots(unbounded, floor, slot - TINY, limit=cap * 4 + 10)
    if not candidates:
        return []
    taken = selectors.recorded_slots(trigger, candidates)
    return [s for s in candidates if s not in taken and s > floor]


def _recent_slots(
    spec: timing.ScheduleSpec, floor: datetime, until: datetime, *, limit: int
) -> list[datetime]:
    """The slots in (floor, until], or, when there are more than `limit`, a complete run of the most recent
    ones: catch-up keeps the newest, and a 1-second trigger down for a day must not list 86,400 slots."""
    chunk = timing.slots_between(spec, floor, until, limit=limit)
    span = chunk[-1] - floor if chunk else timedelta(0)
    for _ in range(40):
        if len(chunk) < limit:
            break
        span = span / 2 if span > timedelta(microseconds=2) else span
        chunk = timing.slots_between(spec, max(floor, until - span), until, limit=limit)
    return chunk


@dataclasses.dataclass(frozen=True)
class Fire:
    """One slot that came due: from the beat, a tick, reconcile's catch-up, a backfill, or a test.

    A backfill fire (`origin="backfill"`) names a past slot an operator asked for: it is recorded through the
    same unique key and overlap policy, but it is not "the due slot" — it catches nothing up, is not fenced by
    the last slot, and may carry `not_before` (its place in a spread)."""

    trigger_id: uuid.UUID | str
    slot: datetime
    origin: str = ExecutionOrigin.SCHEDULE
    launched_by: str = ""
    not_before: datetime | None = None


def execution_fire(
    *,
    trigger_id: uuid.UUID | str,
    slot: datetime,
    origin: str = ExecutionOrigin.SCHEDULE,
    launched_by: str = "",
) -> list[Execution]:
    """Record the due slot (and any missed ones, per the catch-up policy) and start what should run.

    Returns the executions this call created; an empty list means the slot was already recorded (a duplicate
    fire from failover, redelivery or a tick beside beat) or is not a slot of the trigger's schedule.
    """
    return execution_fire_batch(fires=[Fire(trigger_id, slot, origin, launched_by)])


def execution_fire_batch(*, fires: Sequence[Fire]) -> list[Execution]:
    """`execution_fire` for many slots in one transaction: what a herd costs is a few statements per batch,
    not a few per slot. The triggers are loaded and locked in one query (in primary-key order, so two
    batches, or a batch and a single fire, cannot deadlock), the rows that already exist in one, the
    overlap and per-owner counts in two grouped ones; the policies are decided in memory, in the order the
    fires are given, exactly as one fire after another would decide them (a property test holds the two
    paths to the same rows); executions go in with one INSERT, the unique (trigger, slot) key still the
    judge (a conflict is a duplicate, silently); the triggers' counters with one UPDATE; the launches in one
    publish after commit. Returns the executions created, in the order decided."""
    aware = [f for f in fires if isinstance(f.slot, datetime) and f.slot.utcoffset() is not None]
    if len(aware) < len(fires):
        logger.warning("fire batch: %d fires without an aware slot dropped", len(fires) - len(aware))
    fires = aware
    if not fires:
        return []
    now = clock.now()
    with transaction.atomic():
        triggers = _lock_triggers(fires)
        book = _Book.load(triggers, fires)
        ended: list[uuid.UUID] = []
        for fire in fires:
            pk = ids.as_uuid(fire.trigger_id)
            trigger = triggers.get(pk) if pk is not None else None
            if trigger is None:
                logger.info("fire for unknown trigger %s ignored", fire.trigger_id)
                continue
            mark = len(book.decided)
            # A `replace` writes and cancels as it decides: its own savepoint, so a failure undoes it alone.
            guard = transaction.atomic() if trigger.overlap_policy == OverlapPolicy.REPLACE else nullcontext()
            try:
                with guard, logcontext.bind(trigger_id=str(trigger.pk), slot=str(fire.slot)):
                    rows = _decide_fire(trigger, fire, book, now=now)
                    if not rows:
                        continue
                    if logger.isEnabledFor(logging.DEBUG):
                        for row in rows:
                            logger.debug("slot %s recorded %s %s", row.slot, row.status, row.skip_reason)
                    backfill = fire.origin == ExecutionOrigin.BACKFILL
                    if trigger_services.trigger_note_slots(
                        trigger=trigger,
                        # A backfilled slot does not move the fence: slots after the last one it did not
                        # cover are still the catch-up's to decide.
                        through=None if backfill else max(row.slot for row in rows if row.slot is not None),
                        started=sum(row.status == ExecutionStatus.PENDING for row in rows),
                        held=sum(row.status == ExecutionStatus.WAITING for row in rows),
                        last_status=rows[-1].status,
                        now=now,
                    ):
                        ended.append(trigger.pk)
            except DatabaseError:
                raise  # the transaction itself is broken: the whole batch is redone or caught up
            except Exception:
                # One poisoned fire (a naive or malformed slot, a schedule that no longer parses) must not
                # cost the other fires of its batch: it is dropped, and reconcile's catch-up owes its slot.
                logger.exception("fire for %s of trigger %s dropped", fire.slot, trigger.pk)
                book.forget(trigger, mark)
                trigger.refresh_from_db()
        held = _queue_unwritten(book, triggers, now=now)
        held.note_unsent(now)
        created = _insert(book.decided, book)
        events.announce_recorded(created)  # skipped / missed slots, to subscribers (nothing when none)
        trigger_services.triggers_save_slots(triggers=[triggers[pk] for pk in book.touched], ended=ended)
        held.keep({row.pk for row in created})
        dispatch.execution_send_after_commit(
            # Rows written before the plan (a `replace` writes at once) are still pending: claimed as usual.
            [_due(row, triggers[row.trigger_id]) for row in created if row.status == ExecutionStatus.PENDING],
            held=held,
        )
    metrics.runs_recorded(created)
    metrics.slots_after_end(book.after_end)
    return created


def _queue_unwritten(book: _Book, triggers: dict[uuid.UUID, Trigger], *, now: datetime) -> dispatch.Sends:
    """Plan the launch messages of the pending rows not yet written and mark those rows queued under their
    task ids, so they go in queued and nothing claims them after: the herd's rows are written once.

    A process that dies between the commit and the publish leaves these rows queued under messages nobody
    sent; the batch noted them in the unsent ledger before it committed (`Sends.note_unsent`), so the
    sweeper resends them within seconds."""
    fresh = [
        row for row in book.decided if row.status == ExecutionStatus.PENDING and row.pk not in book.saved
    ]
    sends = dispatch.plan_sends([_due(row, triggers[row.trigger_id]) for row in fresh], now=now)
    claims = sends.claims
    for row in fresh:
        task_id = claims.get(row.pk)
        if task_id is not None:
            row.status, row.task_id, row.queued_at = ExecutionStatus.QUEUED, task_id, now
    return sends


def _due(row: Execution, trigger: Trigger) -> dispatch.Due:
    """What the launch message of a row just recorded needs, from the trigger the batch already holds."""
    return dispatch.Due(
        row.pk, row.priority, row.not_before, trigger.target, trigger.name, trigger.workflow_id, row.slot
    )


def _lock_triggers(fires: Sequence[Fire]) -> dict[uuid.UUID, Trigger]:
    pks = sorted({pk for pk in (ids.as_uuid(f.trigger_id) for f in fires) if pk is not None})
    rows = Trigger.objects.select_for_update().filter(pk__in=pks).order_by("pk")
    return {trigger.pk: trigger for trigger in rows}


@dataclasses.dataclass
class _Book:
    """What the fires of one batch decide by, read once and kept true in memory as they are decided: which
    slots are taken, each trigger's running and waiting runs, each owner's active runs."""

    taken: set[tuple[uuid.UUID, datetime]]
    running: dict[uuid.UUID, int]
    waiting: dict[uuid.UUID, int]
    limits: dict[int, Limits]
    owner_active: dict[int, int]
    workflow_active: dict[tuple[int, str], int]
    touched: dict[uuid.UUID, None] = dataclasses.field(default_factory=dict)  # ordered set
    #: Every row decided so far, in order; `saved` holds the ids already written.
    decided: list[Execution] = dataclasses.field(default_factory=list)
    saved: set[uuid.UUID] = dataclasses.field(default_factory=set)
    #: Fires (or caught-up slots) that fell after their trigger's end and recorded nothing.
    after_end: int = 0
    #: The fleet-wide stop was on when the batch began: slots that would run are recorded skipped.
    stopped: bool = False
    #: The dates of the calendars the batch's triggers exclude (one grouped read, none when no calendar).
    calendars: dict[int, schedule_selectors.CalendarDates] = dataclasses.field(default_factory=dict)
    #: Owners with no credit left when the batch began: their slots that would run are recorded skipped.
    out_of_credit: set[int] = dataclasses.field(default_factory=set)

    @classmethod
    def load(cls, triggers: dict[uuid.UUID, Trigger], fires: Sequence[Fire]) -> _Book:
        slots = {f.slot for f in fires}
        running, waiting = selectors.running_and_waiting_of(list(triggers))
        limits = schedule_selectors.limits_of({t.owner_id for t in triggers.values()})
        return cls(
            taken=selectors.taken_slots(list(triggers), slots) if triggers else set(),
            running=running,
            waiting=waiting,
            limits=limits,
            # Counted only where a limit applies: with none set (the default) neither query runs.
            owner_active=selectors.owners_active({o for o, lim in limits.items() if lim.max_concurrent_runs}),
            workflow_active=selectors.workflows_active(
                {
                    (t.owner_id, t.workflow_id)
                    for t in triggers.values()
                    if limits[t.owner_id].max_concurrent_per_workflow
                }
            ),
            stopped=selectors.firing_stopped(),
            calendars=schedule_selectors.calendars_of(t.excluded_calendar_id for t in triggers.values()),
            out_of_credit=selectors.owners_out_of_credit(
                {t.owner_id for t in triggers.values()}, now=clock.now()
            ),
        )

    def note_after_end(self, trigger: Trigger, slots: Sequence[datetime]) -> None:
        """Slots after the trigger's end: no row, only a count (metric `scheduler_slots_after_end`) and a
        log line, so a finished trigger's stray fires stay visible without touching its history."""
        for slot in slots:
            logger.info("slot %s of trigger %s is after its end; nothing recorded", slot, trigger.pk)
        self.after_end += len(slots)

    def limit_reached(self, trigger: Trigger) -> SkipReason | None:
        """`selectors.concurrency_limit_reached`, from the counts kept in memory for the batch."""
        limits = self.limits[trigger.owner_id]
        owner_cap, workflow_cap = limits.max_concurrent_runs, limits.max_concurrent_per_workflow
        if owner_cap > 0 and self.owner_active.get(trigger.owner_id, 0) >= owner_cap:
            return SkipReason.OWNER_LIMIT
        key = (trigger.owner_id, trigger.workflow_id)
        if workflow_cap > 0 and self.workflow_active.get(key, 0) >= workflow_cap:
            return SkipReason.WORKFLOW_LIMIT
        return None

    def count(self, trigger: Trigger, status: str, delta: int = 1) -> None:
        if status in ACTIVE_STATUSES:
            self.running[trigger.pk] = self.running.get(trigger.pk, 0) + delta
            self.owner_active[trigger.owner_id] = self.owner_active.get(trigger.owner_id, 0) + delta
            key = (trigger.owner_id, trigger.workflow_id)
            self.workflow_active[key] = self.workflow_active.get(key, 0) + delta
        elif status == ExecutionStatus.WAITING:
            self.waiting[trigger.pk] = self.waiting.get(trigger.pk, 0) + delta

    def forget(self, trigger: Trigger, mark: int) -> None:
        """Undo what a fire that failed half-way decided: its rows (from `mark` on), slots and counts."""
        for row in self.decided[mark:]:
            self.taken.discard((trigger.pk, row.slot))
            self.saved.discard(row.pk)
        del self.decided[mark:]
        self.recount(trigger)

    def recount(self, trigger: Trigger) -> None:
        """After cancels and promotions (a `replace`), read the trigger's and its owner's counts again."""
        running, waiting = selectors.running_and_waiting_of([trigger.pk])
        self.running[trigger.pk] = running.get(trigger.pk, 0)
        self.waiting[trigger.pk] = waiting.get(trigger.pk, 0)
        key = (trigger.owner_id, trigger.workflow_id)
        self.owner_active[trigger.owner_id] = selectors.owners_active({trigger.owner_id}).get(
            trigger.owner_id, 0
        )
        self.workflow_active[key] = selectors.workflows_active({key}).get(key, 0)


def _decide_fire(trigger: Trigger, fire: Fire, book: _Book, *, now: datetime) -> list[Execution] | None:
    """The rows one fire records (the due slot and the missed ones it catches up), or None when it records
    nothing: a duplicate, a late fire, or an instant that is not a slot of the schedule."""
    slot = fire.slot
    if (trigger.pk, slot) in book.taken:
        logger.debug("slot %s of trigger %s already recorded; duplicate fire ignored", slot, trigger.pk)
        return None
    if trigger.status == TriggerStatus.COMPLETED or (trigger.end_at is not None and slot > trigger.end_at):
        # Queued behind the run that completed the trigger, or sent by a beat entry not yet removed: a
        # finished trigger's history ends with its last run (`policies.after_the_end`).
        book.note_after_end(trigger, [slot])
        return None
    if fire.origin == ExecutionOrigin.BACKFILL:
        return _decide_backfill(trigger, fire, book, now=now)
    if trigger.last_slot is not None and slot <= trigger.last_slot:
        # Every slot up to last_slot was decided when it (or a later one) fired; one without a row was
        # pruned, or left out of a bounded catch-up. Running it now would run a slot twice or replay it.
        logger.info("slot %s of trigger %s is not after its last slot; late fire ignored", slot, trigger.pk)
        return None
    spec = validation.spec_of(trigger)
    if not _is_slot_of(spec, slot):
        logger.warning("fire for %s of trigger %s ignored: not a slot of its schedule", slot, trigger.pk)
        return None
    missed = [s for s in _missed_slots(trigger, spec, slot, now) if (trigger.pk, s) not in book.taken]
    plans = policies.plan_slots(
        due_slot=slot,
        due_fire_at=_fire_at(trigger, slot),
        missed=[(s, _fire_at(trigger, s)) for s in missed],
        now=now,
        policy=trigger.catchup_policy,
        window_seconds=trigger.catchup_window_seconds,
        grace_seconds=trigger.misfire_grace_seconds,
        max_slots=settings.SCHEDULER_MAX_CATCHUP_SLOTS,
    )
    # Windows, blackouts, excluded dates (schedules.rules): before the bounds, so a skip never counts.
    plans = policies.apply_rules(plans, schedule_selectors.slot_rules_of(trigger, book.calendars))
    state = _state(trigger, stopped=book.stopped)
    plans, after_end = policies.after_the_end(policies.apply_bounds(plans, state), state)
    book.note_after_end(trigger, [plan.slot for plan in after_end])
    if not plans:
        return None
    rows = []
    for plan in plans:
        rows.append(
            _decide_plan(trigger, plan, book, origin=fire.origin, launched_by=fire.launched_by, now=now)
        )
        book.taken.add((trigger.pk, plan.slot))
    book.touched[trigger.pk] = None
    return rows


def _decide_backfill(trigger: Trigger, fire: Fire, book: _Book, *, now: datetime) -> list[Execution] | None:
    """The row a backfill fire records, or None. A slot the schedule does not have, or one its trigger may no
    longer run (paused, completed, deleted, outside its bounds, past `max_runs`), records nothing: a skipped
    row would take the slot for good, and a trigger that has completed records nothing more. What remains
    is decided as any slot is — overlap policy, per-owner limit — never as a missed one (the operator asked
    for it, so neither misfire grace nor catch-up policy applies)."""
    spec = validation.spec_of(trigger)
    if not _is_slot_of(spec, fire.slot):
        logger.warning(
            "backfill of %s of trigger %s ignored: not a slot of its schedule", fire.slot, trigger.pk
        )
        return None
    plan = policies.SlotPlan(slot=fire.slot, run=True, reason=None, not_before=fire.not_before, catchup=False)
    kept, after_end = policies.after_the_end(policies.apply_bounds([plan], _state(trigger)), _state(trigger))
    book.note_after_end(trigger, [p.slot for p in after_end])
    bounded = kept[0] if kept else None
    if bounded is None or not bounded.run or trigger.deleted_at is not None:
        reason = bounded.reason if bounded is not None else "after the trigger's end"
        logger.info("backfill of %s of trigger %s not recorded: %s", fire.slot, trigger.pk, reason)
        return None
    row = _decide_plan(trigger, bounded, book, origin=fire.origin, launched_by=fire.launched_by, now=now)
    book.taken.add((trigger.pk, fire.slot))
    book.touched[trigger.pk] = None
    return [row]


def _decide_plan(
    trigger: Trigger, plan: policies.SlotPlan, book: _Book, *, origin: str, launched_by: str, now: datetime
) -> Execution:
    if plan.run and trigger.owner_id in book.out_of_credit:
        plan = dataclasses.replace(plan, run=False, reason=SkipReason.CREDITS_EXHAUSTED, not_before=None)
    execution = _new_execution(
        trigger,
        slot=plan.slot,
        fire_at=_fire_at(trigger, plan.slot),
        not_before=plan.not_before,
        skip_reason=SkipReason.DEFERRED if plan.deferred else "",
        origin=ExecutionOrigin.CATCHUP if plan.catchup else origin,
        priority=trigger.priority,
        input=trigger.input,
        launched_by=launched_by,
    )
    if not plan.run:
        reason = SkipReason.DELETED if trigger.deleted_at is not None else (plan.reason or "")
        execution.status, execution.skip_reason, execution.finished_at = ExecutionStatus.SKIPPED, reason, now
        book.decided.append(execution)
        return execution
    action = policies.decide_overlap(
        policy=trigger.overlap_policy,
        running=book.running.get(trigger.pk, 0),
        waiting=book.waiting.get(trigger.pk, 0),
        max_concurrent=trigger.max_concurrent,
    )
    held_by = None if action is policies.OverlapAction.SKIP else book.limit_reached(trigger)
    if action is policies.OverlapAction.SKIP:
        execution.status, execution.skip_reason = ExecutionStatus.SKIPPED, SkipReason.OVERLAP
        execution.finished_at = now
    elif action is policies.OverlapAction.WAIT or held_by is not None:
        # A waiting row says what holds it back when that is a limit (its own earlier runs need no word).
        execution.status, execution.skip_reason = ExecutionStatus.WAITING, held_by or ""
    else:
        execution.status = ExecutionStatus.PENDING
        if action is policies.OverlapAction.REPLACE:
            _replace_running(trigger, execution, book)
            return execution
    book.count(trigger, execution.status)
    book.decided.append(execution)
    return execution


@functools.cache
def _row_template() -> tuple[tuple[str, ...], dict[str, Any], dict[str, Callable[[], Any]]]:
    """Execution's columns in order, each one's default value, and the defaults that must be made anew per
    row (callables: a fresh id, a fresh dict)."""
    names, static, fresh = [], {}, {}
    for field in Execution._meta.concrete_fields:
        names.append(field.attname)
        if field.has_default() and callable(field.default):
            fresh[field.attname] = field.default
        else:
            static[field.attname] = field.get_default()
    return tuple(names), static, fresh


def _new_execution(trigger: Trigger, **values: Any) -> Execution:
    """`Execution(trigger=trigger, **values)`, built as Django builds a row it has read: by position, every
    column given. A herd builds one per slot, and the keyword path (a pop, a lookup and a default per
    column, thirty columns) cost 19 µs a row against 12 µs by position."""
    names, static, fresh = _row_template()
    values["trigger_id"] = trigger.pk
    columns = [values[n] if n in values else (fresh[n]() if n in fresh else static[n]) for n in names]
    row: Execution = cast(Any, Execution)(*columns)  # the stubs know the keyword form only
    _TRIGGER_FIELD.set_cached_value(row, trigger)  # row.trigger without a query, as the keyword path did
    return row


_TRIGGER_FIELD = Execution._meta.get_field("trigger")


def _replace_running(trigger: Trigger, execution: Execution, book: _Book) -> None:
    """`replace`: cancel what the trigger has going, then start the new slot. The cancels go through the
    services (their ends, counters and promotions), so they must see this batch's earlier rows of the
    trigger: those are written first, and this row is written at once too. Rare enough to be per row."""
    _insert(book.decided, book)
    # With `max_concurrent` > 1 only the oldest runs beyond the limit make room: the newest keep going.
    active = Execution.objects.filter(trigger=trigger, status__in=ACTIVE_STATUSES)
    excess = max(0, active.count() - trigger.max_concurrent + 1)
    oldest = list(active.order_by("created_at", "pk").values_list("pk", flat=True)[:excess])
    # In primary-key order, as every batch locks executions: two cancelling writers cannot cross.
    for running_execution in Execution.objects.filter(pk__in=oldest).order_by("pk"):
        execution_cancel(execution=running_execution, reason="replaced by a newer slot")
    book.decided.append(execution)
    _insert([execution], book)
    book.recount(trigger)


def _insert(rows: Sequence[Execution], book: _Book) -> list[Execution]:
    """Write `rows` not yet written, in one INSERT; return those that went in (all of them, unless a row for
    the same slot appeared meanwhile — impossible while the trigger is locked, but the unique key, not this
    code, is the guarantee)."""
    fresh = [row for row in rows if row.pk not in book.saved]
    if fresh:
        written = bulk.insert_new(fresh)
        for row in fresh:
            if row.pk in written:
                book.saved.add(row.pk)
            else:
                logger.debug("slot %s of trigger %s recorded concurrently", row.slot, row.trigger_id)
    return [row for row in rows if row.pk in book.saved]
