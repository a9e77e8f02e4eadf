"""Fire: the exactly-once guarantee. Every scheduled run (beat, catch-up, tick, reconcile) becomes an
`Execution` keyed by (trigger, slot) while the trigger row is locked, so a second fire of the same slot
finds the row and does nothing."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction

from executions import policies, selectors
from executions.models import (
    ACTIVE_STATUSES,
    Execution,
    ExecutionOrigin,
    ExecutionStatus,
    SkipReason,
)
from executions.services.dispatch import execution_enqueue_after_commit
from executions.services.finish import execution_cancel
from schedules import services as trigger_services
from schedules import timing, validation
from schedules.models import Trigger, TriggerStatus
from toolkit import clock, metrics

logger = logging.getLogger(__name__)


TINY = timedelta(microseconds=1)


def _fire_at(trigger: Trigger, slot: datetime) -> datetime:
    return slot + timing.jitter_offset(str(trigger.pk), slot, trigger.jitter_seconds)


def _is_slot_of(spec: timing.ScheduleSpec, slot: datetime) -> bool:
    """Whether `slot` is one the current schedule has. A fire for any other instant (an old schedule's slot
    sent before an edit landed, a forged tick) must not run."""
    return timing.next_slot(spec, slot - TINY) == slot


def _state(trigger: Trigger) -> policies.TriggerState:
    status = trigger.status
    if trigger.deleted_at is not None:
        status = TriggerStatus.PAUSED  # a deleted trigger never runs again; recorded below as "deleted"
    return policies.TriggerState(
        status=status,
        start_at=trigger.start_at,
        end_at=trigger.end_at,
        max_runs=trigger.max_runs,
        run_count=trigger.runs_so_far,
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
    now = clock.now()
    with transaction.atomic():
        trigger = Trigger.objects.select_for_update().filter(pk=trigger_id).first()
        if trigger is None:
            logger.info("fire for unknown trigger %s ignored", trigger_id)
            return []
        if Execution.objects.filter(trigger=trigger, slot=slot).exists():
            logger.debug("slot %s of trigger %s already recorded; duplicate fire ignored", slot, trigger_id)
            return []
        if trigger.last_slot is not None and slot <= trigger.last_slot:
            # Every slot up to last_slot was decided when it (or a later one) fired; one without a row was
            # pruned, or left out of a bounded catch-up. Running it now would run a slot twice or replay it.
            logger.info(
                "slot %s of trigger %s is not after its last slot; late fire ignored", slot, trigger_id
            )
            return []
        spec = validation.spec_of(trigger)
        if not _is_slot_of(spec, slot):
            logger.warning("fire for %s of trigger %s ignored: not a slot of its schedule", slot, trigger_id)
            return []
        missed = _missed_slots(trigger, spec, slot, now)
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
        plans = policies.apply_bounds(plans, _state(trigger))
        recorded = [
            _record_plan(trigger, plan, origin=origin, launched_by=launched_by, now=now) for plan in plans
        ]
        created = [e for e in recorded if e is not None]
        trigger_services.trigger_record_slots(
            trigger=trigger,
            through=max(p.slot for p in plans),
            started=sum(e.status == ExecutionStatus.PENDING for e in created),
            last_status=created[-1].status if created else "",
            now=now,
        )
    metrics.runs_recorded(created)
    return created


def _record_plan(
    trigger: Trigger, plan: policies.SlotPlan, *, origin: str, launched_by: str, now: datetime
) -> Execution | None:
    execution = Execution(
        trigger=trigger,
        slot=plan.slot,
        fire_at=_fire_at(trigger, plan.slot),
        not_before=plan.not_before,
        origin=ExecutionOrigin.CATCHUP if plan.catchup else origin,
        priority=trigger.priority,
        input=trigger.input,
        launched_by=launched_by,
    )
    if not plan.run:
        reason = SkipReason.DELETED if trigger.deleted_at is not None else (plan.reason or "")
        execution.status, execution.skip_reason, execution.finished_at = ExecutionStatus.SKIPPED, reason, now
    else:
        running, waiting = selectors.running_and_waiting(trigger)
        action = policies.decide_overlap(policy=trigger.overlap_policy, running=running, waiting=waiting)
        if action is policies.OverlapAction.SKIP:
            execution.status, execution.skip_reason = ExecutionStatus.SKIPPED, SkipReason.OVERLAP
            execution.finished_at = now
        elif action is policies.OverlapAction.WAIT or selectors.owner_at_limit(trigger):
            execution.status = ExecutionStatus.WAITING
        else:
            if action is policies.OverlapAction.REPLACE:
                for running_execution in Execution.objects.filter(
                    trigger=trigger, status__in=ACTIVE_STATUSES
                ):
                    execution_cancel(execution=running_execution, reason="replaced by a newer slot")
            execution.status = ExecutionStatus.PENDING
    try:
        with transaction.atomic():
            execution.save(force_insert=True)
    except IntegrityError:
        logger.debug("slot %s of trigger %s recorded concurrently", plan.slot, trigger.pk)
        return None
    if execution.status == ExecutionStatus.PENDING:
        execution_enqueue_after_commit(execution)
    return execution
