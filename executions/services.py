"""The only code that changes executions.

* Fire — the exactly-once guarantee: every scheduled run (beat, catch-up, tick, reconcile) becomes an
  `Execution` keyed by (trigger, slot) while the trigger row is locked, so a second fire of the same slot
  finds the row and does nothing.
* Enqueue and launch — one `executions.launch` message per attempt, fenced by the row's `task_id`; each
  attempt is claimed, made outside any transaction, and recorded (retry with backoff, end, or wait for an
  async target). See `execution_launch_attempt` for redelivery.
* End — sync answers, callbacks and polls (`execution_complete`), cancel, and the sweeper's timeouts all go
  through `_finish`, which updates the trigger's counters in the same transaction and starts the next
  waiting slot.
* Manual runs (run now, re-run), the sweeper, and retention.

Lock order everywhere: trigger row, then execution row (`_lock`)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q

from executions import policies
from executions.launchers.base import (
    Launcher,
    LauncherConfigError,
    LaunchResult,
    LaunchStatus,
    clip_result,
    get_launcher,
    scrub,
)
from executions.models import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    Attempt,
    AttemptOutcome,
    Execution,
    ExecutionOrigin,
    ExecutionStatus,
    SkipReason,
)
from scheduler_project import clock, metrics
from schedules import timing, validation
from schedules.models import Trigger, TriggerStatus

logger = logging.getLogger(__name__)

#: The launch task, sent by name so the fire path never imports the task module.
LAUNCH_TASK = "executions.launch"
#: Ends that count as failures in the trigger's counters (a cancel is a decision, not a failure).
FAILURE_STATUSES = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT})

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
        run_count=trigger.run_count,
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
    taken = set(Execution.objects.filter(trigger=trigger, slot__in=candidates).values_list("slot", flat=True))
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


def _counts(trigger: Trigger) -> tuple[int, int]:
    rows = Execution.objects.filter(trigger=trigger)
    running = rows.filter(status__in=ACTIVE_STATUSES).count()
    waiting = rows.filter(status=ExecutionStatus.WAITING).count()
    return running, waiting


def _owner_at_limit(trigger: Trigger) -> bool:
    limit = settings.SCHEDULER_MAX_CONCURRENT_PER_OWNER
    if limit <= 0:
        return False
    active = Execution.objects.filter(trigger__owner_id=trigger.owner_id, status__in=ACTIVE_STATUSES).count()
    return active >= limit


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
        created = [
            _record_plan(trigger, plan, origin=origin, launched_by=launched_by, now=now) for plan in plans
        ]
        created = [e for e in created if e is not None]
        _advance_trigger(trigger, spec, slot=max(p.slot for p in plans), now=now)
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
        reason = SkipReason.DELETED if trigger.deleted_at is not None else plan.reason
        execution.status, execution.skip_reason, execution.finished_at = ExecutionStatus.SKIPPED, reason, now
    else:
        running, waiting = _counts(trigger)
        action = policies.decide_overlap(policy=trigger.overlap_policy, running=running, waiting=waiting)
        if action is policies.OverlapAction.SKIP:
            execution.status, execution.skip_reason = ExecutionStatus.SKIPPED, SkipReason.OVERLAP
            execution.finished_at = now
        elif action is policies.OverlapAction.WAIT or _owner_at_limit(trigger):
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
        trigger.run_count += 1
        trigger.last_run_at = now
        execution_enqueue_after_commit(execution)
    trigger.last_status = execution.status
    return execution


def _advance_trigger(trigger: Trigger, spec: timing.ScheduleSpec, *, slot: datetime, now: datetime) -> None:
    """Counters and next run, in the same transaction as the executions. A schedule with nothing left (end
    passed, max_runs reached, a one-off done) completes the trigger."""
    trigger.last_slot = max(trigger.last_slot, slot) if trigger.last_slot else slot
    fields = ["last_slot", "run_count", "last_run_at", "last_status", "next_run_at", "status", "updated_at"]
    if trigger.status == TriggerStatus.ACTIVE and trigger.deleted_at is None:
        trigger.next_run_at = timing.next_slot(
            spec, max(now, trigger.last_slot), runs_so_far=trigger.run_count
        )
        if trigger.next_run_at is None:
            trigger.status = TriggerStatus.COMPLETED
            transaction.on_commit(lambda: _sync_entry(trigger.pk), robust=True)
    trigger.save(update_fields=fields)


def _sync_entry(trigger_id: uuid.UUID) -> None:
    from schedules import redbeat_sync

    redbeat_sync.sync_trigger(trigger_id)


# ----------------------------------------------------------------------------------------------------
# Locking and ending a run
# ----------------------------------------------------------------------------------------------------


def _lock(execution_id: uuid.UUID | str) -> tuple[Trigger, Execution] | None:
    """Lock the trigger row, then the execution row — always in this order (the fire path locks the trigger
    first too), so a callback, a cancel, the sweeper and a worker ending runs of one trigger can never
    deadlock one another. The trigger is locked because ending a run updates its counters."""
    trigger_id = Execution.objects.filter(pk=execution_id).values_list("trigger_id", flat=True).first()
    if trigger_id is None:
        return None
    trigger = Trigger.objects.select_for_update().get(pk=trigger_id)
    execution = Execution.objects.select_for_update().get(pk=execution_id)
    execution.trigger = trigger
    return trigger, execution


def _lock_existing(execution_id: uuid.UUID | str) -> tuple[Trigger, Execution]:
    """`_lock` for callers that were handed an execution: its disappearing (pruned) is an error for them."""
    locked = _lock(execution_id)
    if locked is None:
        raise Execution.DoesNotExist(f"execution {execution_id} does not exist")
    return locked


def _finish(
    trigger: Trigger,
    execution: Execution,
    status: str,
    *,
    now: datetime,
    result: Any = None,
    error: str = "",
    run_id: str = "",
) -> None:
    """End a run and update the trigger's counters in the same transaction (both rows are locked by the
    caller), then start the next waiting slot. Every way a run can end comes through here."""
    execution.status = status
    execution.finished_at = now
    if execution.started_at:
        execution.duration_ms = max(0, int((now - execution.started_at).total_seconds() * 1000))
    if result is not None:
        execution.result = clip_result(result)
    execution.error = (
        scrub(error) if error else ("" if status == ExecutionStatus.SUCCEEDED else execution.error)
    )
    if run_id:
        execution.run_id = run_id[:200]
    execution.save(
        update_fields=["status", "finished_at", "duration_ms", "result", "error", "run_id", "updated_at"]
    )
    trigger.last_status = status
    if execution.started_at and (trigger.last_run_at is None or execution.started_at > trigger.last_run_at):
        trigger.last_run_at = execution.started_at
    if status in FAILURE_STATUSES:
        trigger.failure_count += 1
        trigger.consecutive_failures += 1
        trigger.last_error = execution.error
    elif status == ExecutionStatus.SUCCEEDED:
        trigger.consecutive_failures = 0
    trigger.save(
        update_fields=[
            "last_status", "last_run_at", "failure_count", "consecutive_failures", "last_error", "updated_at",
        ]
    )  # fmt: skip
    _promote_waiting(trigger)
    metrics.run_finished(execution)


def _promote_waiting(trigger: Trigger) -> None:
    """When a run ends, the oldest waiting slot of its trigger (queue / buffer_one) starts, in slot order —
    unless the trigger still has a run going or its owner is at the concurrency limit (the sweeper retries
    those, since the run that frees the owner's capacity may belong to another trigger)."""
    nxt = (
        Execution.objects.select_for_update()
        .filter(trigger_id=trigger.pk, status=ExecutionStatus.WAITING)
        .order_by(F("slot").asc(nulls_last=True), "created_at")
        .first()
    )
    if nxt is None:
        return
    if Execution.objects.filter(trigger_id=trigger.pk, status__in=ACTIVE_STATUSES).exists():
        return
    if _owner_at_limit(trigger):
        return
    nxt.status = ExecutionStatus.PENDING
    nxt.save(update_fields=["status", "updated_at"])
    execution_enqueue_after_commit(nxt)


def _cancel_at_target_after_commit(target: str, run_id: str) -> None:
    """Ask the target to stop a run, after the cancellation is committed (a rollback must not have stopped
    a run we still record as going). Best effort: a target that cannot cancel just finishes its run, whose
    late end the callback then answers with 409."""

    def cancel() -> None:
        try:
            launcher = get_launcher(target)
            if launcher.can_cancel():
                launcher.cancel(run_id)
        except Exception as exc:  # a failed cancel must not undo the recorded cancellation
            logger.warning("cancel of run %s at target %s failed: %s", run_id, target, scrub(str(exc)))

    transaction.on_commit(cancel)


# ----------------------------------------------------------------------------------------------------
# Enqueue: the launch message
# ----------------------------------------------------------------------------------------------------


def _retry_cap() -> float:
    """Longest countdown a launch message may carry. A message with an ETA waits unacked in the worker that
    reserved it, and past the broker's visibility timeout the broker hands it to a second worker; so retry
    delays, Retry-After and catch-up spread waits stay well below it. Longer waits stay in the row
    (`not_before`) and the sweeper sends the message when it is near."""
    visibility = float(settings.BROKER_VISIBILITY_TIMEOUT)
    return max(1.0, min(visibility - 5.0, visibility * 0.8))


def _publish(execution_id: uuid.UUID, *, task_id: str, priority: str, countdown: float = 0.0) -> None:
    """Send `executions.launch(execution_id)` — ids only, never secrets or rows — with the trigger's broker
    priority. The row already carries `task_id`, so the message can tell whether it is the current one. If
    the broker refuses, a queued row goes back to pending for the sweeper to resend at once."""
    from scheduler_project.celery import app

    try:
        app.send_task(
            LAUNCH_TASK,
            args=[str(execution_id)],
            task_id=task_id,
            priority=policies.priority_value(priority),
            countdown=countdown if countdown > 0 else None,
        )
    except Exception:
        Execution.objects.filter(pk=execution_id, task_id=task_id, status=ExecutionStatus.QUEUED).update(
            status=ExecutionStatus.PENDING, task_id="", updated_at=clock.now()
        )
        raise


def execution_enqueue_after_commit(execution: Execution) -> None:
    transaction.on_commit(lambda: execution_enqueue(execution_id=execution.pk), robust=True)


def execution_enqueue(*, execution_id: uuid.UUID) -> bool:
    """Mark a pending row queued under a fresh task id, then send its launch message. The compare-and-set
    (pending -> queued) makes the fire path's send and the sweeper's resend of the same row exclusive: only
    the one that flips the row sends. A lost message leaves the row queued, which the sweeper requeues."""
    now = clock.now()
    execution = (
        Execution.objects.filter(pk=execution_id, status=ExecutionStatus.PENDING)
        .only("id", "priority", "not_before")
        .first()
    )
    if execution is None:
        return False
    countdown = (execution.not_before - now).total_seconds() if execution.not_before else 0.0
    if countdown > _retry_cap():
        return False  # far in the future (catch-up spread): the sweeper sends it when it is near
    task_id = str(uuid.uuid4())
    claimed = Execution.objects.filter(pk=execution_id, status=ExecutionStatus.PENDING).update(
        status=ExecutionStatus.QUEUED, queued_at=now, task_id=task_id, updated_at=now
    )
    if claimed:
        _publish(execution.pk, task_id=task_id, priority=execution.priority, countdown=countdown)
    return bool(claimed)


# ----------------------------------------------------------------------------------------------------
# Launch: one attempt
# ----------------------------------------------------------------------------------------------------


def _attempt_grace() -> float:
    """Slack after an attempt's call timeout for the worker to record its outcome."""
    return float(getattr(settings, "SCHEDULER_ATTEMPT_GRACE_SECONDS", 5.0))


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


@dataclasses.dataclass(frozen=True)
class _Claim:
    execution: Execution
    number: int
    launcher: Launcher | None
    config_error: str = ""


def execution_launch_attempt(
    *, execution_id: uuid.UUID | str, task_id: str | None = None
) -> Execution | None:
    """Make one launch attempt of an execution: the body of the `executions.launch` task.

    Idempotent under redelivery (acks_late: a killed worker's message comes back after the broker's
    visibility timeout) and under duplicate messages:

    * a finished or cancelled execution is left alone — a cancelled queued run never launches;
    * a message whose task id is not the row's current one is stale (a retry or the sweeper superseded it)
      and does nothing;
    * a row already `running` with an attempt in flight starts nothing until that attempt is *provably
      dead*: every attempt has a deadline (start + the call timeout + a grace), and a live worker always
      records its outcome before it, because the call itself is bounded by that timeout. Before the
      deadline the message re-sends itself to look again after it; past it, the attempt is recorded as
      lost (`WorkerLost`) and a new attempt starts — with the same `Idempotency-Key`, so a target that
      did receive the lost call does not start a second run. A worker that was merely frozen past its
      deadline cannot overwrite what followed: outcomes are only recorded for an attempt still in flight.

    The launcher is called outside any transaction, between two short ones (claim, record).
    """
    claim = _claim_attempt(execution_id, task_id)
    if claim is None:
        return None
    if claim.launcher is None:
        result = LaunchResult.failed(f"target misconfigured: {claim.config_error}")
    else:
        try:
            result = claim.launcher.launch(claim.execution)
        except Exception as exc:  # a launcher's surprise is one failed attempt, never a stuck run
            result = LaunchResult.from_exception(exc)
            logger.warning("launch attempt %s of %s raised %s", claim.number, execution_id, result.error)
    return _record_attempt(execution_id=claim.execution.pk, number=claim.number, result=result)


def _claim_attempt(execution_id: uuid.UUID | str, task_id: str | None) -> _Claim | None:
    now = clock.now()
    with transaction.atomic():
        locked = _lock(execution_id)
        if locked is None:
            logger.info("launch of unknown execution %s ignored", execution_id)
            return None
        trigger, execution = locked
        if execution.is_finished or execution.status == ExecutionStatus.WAITING:
            return None
        if task_id and execution.task_id and task_id != execution.task_id:
            logger.info("stale launch message %s of execution %s ignored", task_id, execution.pk)
            return None
        if execution.status == ExecutionStatus.RUNNING and not _retire_dead_attempt(
            trigger, execution, now=now, task_id=task_id
        ):
            return None
        launcher: Launcher | None = None
        config_error = ""
        timeout = 0.0
        try:
            launcher = get_launcher(trigger.target)
            timeout = launcher.call_timeout(execution)
        except LauncherConfigError as exc:
            config_error = scrub(str(exc))
        number = execution.attempts + 1
        Attempt.objects.create(
            execution=execution,
            number=number,
            started_at=now,
            deadline_at=now + timedelta(seconds=timeout + _attempt_grace()),
            worker=_worker_name(),
        )
        execution.status = ExecutionStatus.RUNNING
        execution.attempts = number
        execution.started_at = now
        execution.save(update_fields=["status", "attempts", "started_at", "updated_at"])
    return _Claim(execution, number, launcher, config_error)


def _retire_dead_attempt(
    trigger: Trigger, execution: Execution, *, now: datetime, task_id: str | None
) -> bool:
    """For a message that finds its execution `running`: True when a new attempt may start (the one in
    flight is provably dead), False when there is nothing to do now (see `execution_launch_attempt`)."""
    in_flight = execution.attempt_set.filter(outcome=AttemptOutcome.STARTED).order_by("-number").first()
    if in_flight is None:
        return False  # the target accepted the run; its end comes by callback, poll or the sweeper
    if in_flight.deadline_at is None or now < in_flight.deadline_at:
        wait = ((in_flight.deadline_at or now) - now).total_seconds() + 1.0
        message = execution.task_id or task_id or str(uuid.uuid4())
        transaction.on_commit(
            functools.partial(
                _publish,
                execution.pk,
                task_id=message,
                priority=execution.priority,
                countdown=min(wait, _retry_cap()),
            ),
            robust=True,
        )
        return False
    last = in_flight.number >= trigger.max_attempts
    in_flight.outcome = AttemptOutcome.FAILED if last else AttemptOutcome.RETRYABLE
    in_flight.finished_at = now
    in_flight.exception = "WorkerLost"
    in_flight.error = (
        "the worker making this attempt stopped before recording its end (killed or lost); "
        "any retry carries the same Idempotency-Key"
    )
    in_flight.save(update_fields=["outcome", "finished_at", "exception", "error"])
    if last:
        _finish(trigger, execution, ExecutionStatus.FAILED, now=now, error=in_flight.error)
        return False
    return True


def _record_attempt(*, execution_id: uuid.UUID, number: int, result: LaunchResult) -> Execution | None:
    """Record how attempt `number` ended and what follows: the run's end, a retry, or (async) waiting for
    the target to report."""
    now = clock.now()
    with transaction.atomic():
        locked = _lock(execution_id)
        if locked is None:
            return None
        trigger, execution = locked
        attempt = Attempt.objects.select_for_update().filter(execution_id=execution.pk, number=number).first()
        if attempt is None or attempt.outcome != AttemptOutcome.STARTED:
            logger.warning("attempt %s of %s ended after it was declared lost; ignored", number, execution.pk)
            return execution
        attempt.finished_at = now
        attempt.http_status = result.http_status
        attempt.exception = result.exception[:200]
        attempt.error = result.error
        if result.status is LaunchStatus.FAILED:
            attempt.outcome = AttemptOutcome.TIMED_OUT if result.timed_out else AttemptOutcome.FAILED
        else:
            attempt.outcome = AttemptOutcome.SUCCEEDED

        if execution.is_finished:
            # Ended while the call was going (cancelled, reported by callback, timed out): that end stands.
            attempt.save()
            if result.run_id and not execution.run_id:
                execution.run_id = result.run_id
                execution.save(update_fields=["run_id", "updated_at"])
                if execution.status == ExecutionStatus.CANCELLED and result.status is LaunchStatus.ACCEPTED:
                    _cancel_at_target_after_commit(trigger.target, result.run_id)
            return execution

        if result.status is LaunchStatus.ACCEPTED:
            attempt.save()
            execution.run_id = result.run_id
            execution.error = ""
            execution.save(update_fields=["run_id", "error", "updated_at"])
        elif result.status is LaunchStatus.SUCCEEDED:
            attempt.save()
            _finish(
                trigger,
                execution,
                ExecutionStatus.SUCCEEDED,
                now=now,
                result=result.result,
                run_id=result.run_id,
            )
        elif result.retryable and number < trigger.max_attempts:
            delay = policies.backoff_delay(
                attempt=number,
                base_seconds=trigger.backoff_seconds,
                cap_seconds=_retry_cap(),
                retry_after=result.retry_after,
            )
            attempt.outcome = AttemptOutcome.RETRYABLE
            attempt.retry_delay_seconds = delay
            attempt.save()
            execution.status = ExecutionStatus.QUEUED
            execution.error = result.error
            execution.not_before = now + timedelta(seconds=delay)
            execution.queued_at = now
            execution.task_id = str(uuid.uuid4())
            execution.save(
                update_fields=["status", "error", "not_before", "queued_at", "task_id", "updated_at"]
            )
            transaction.on_commit(
                functools.partial(
                    _publish,
                    execution.pk,
                    task_id=execution.task_id,
                    priority=execution.priority,
                    countdown=delay,
                ),
                robust=True,
            )
        else:
            attempt.save()
            status = ExecutionStatus.TIMED_OUT if result.timed_out else ExecutionStatus.FAILED
            _finish(trigger, execution, status, now=now, error=result.error, run_id=result.run_id)
    metrics.attempt_recorded(attempt.outcome)
    return execution


# ----------------------------------------------------------------------------------------------------
# Ending from outside: cancel, callback / poll
# ----------------------------------------------------------------------------------------------------


class ExecutionConflict(Exception):
    """The run already ended differently; `status` says how."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the run already ended as {status}")
        self.status = status


def execution_cancel(*, execution: Execution, reason: str = "cancelled") -> Execution:
    """Cancel a run that has not finished. Waiting, pending and queued runs stop at once (a launch message
    still in the broker finds the row cancelled and does nothing); a running one is also asked to stop
    through its launcher after commit, when the launcher can cancel and the target gave a run id. A
    synchronous call already in progress cannot be interrupted: its outcome is recorded on the attempt
    only. A finished run is returned unchanged."""
    now = clock.now()
    with transaction.atomic():
        trigger, execution = _lock_existing(execution.pk)
        if execution.is_finished:
            return execution
        run_id = execution.run_id if execution.status == ExecutionStatus.RUNNING else ""
        _finish(trigger, execution, ExecutionStatus.CANCELLED, now=now, error=reason)
        if run_id:
            _cancel_at_target_after_commit(trigger.target, run_id)
    return execution


#: How a run may be reported ended from outside (callback, poll, sweeper).
COMPLETION_STATUSES = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED, ExecutionStatus.TIMED_OUT}
)


def execution_complete(
    *, execution: Execution, status: str, result: Any = None, error: str = "", run_id: str = ""
) -> Execution:
    """The asynchronous end of a run (signed callback or poll). Idempotent: reporting the end a run already
    has changes nothing; reporting a different end raises `ExecutionConflict` and changes nothing either
    (the first end recorded wins — e.g. a run we timed out or cancelled stays so)."""
    if status not in COMPLETION_STATUSES:
        raise ValueError(f"status must be one of {sorted(COMPLETION_STATUSES)}, got {status!r}")
    now = clock.now()
    with transaction.atomic():
        trigger, execution = _lock_existing(execution.pk)
        if execution.is_finished:
            if execution.status == status:
                return execution
            raise ExecutionConflict(execution.status)
        _finish(trigger, execution, status, now=now, result=result, error=error, run_id=run_id)
    return execution


# ----------------------------------------------------------------------------------------------------
# Manual runs: run now, re-run
# ----------------------------------------------------------------------------------------------------


def _clean_idempotency_key(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or "\x00" in value or len(value.strip()) > 200:
        raise ValidationError({"idempotency_key": ["must be text of at most 200 characters"]})
    return value.strip()


def execution_run_now(
    *, trigger: Trigger, input: Any = None, idempotency_key: str | None = None, requested_by: Any = None
) -> Execution:
    """Start a manual run of `trigger` now (no slot). With an idempotency key, asking twice — a double
    click, a client retrying a timed-out request — returns the first execution; the unique
    (trigger, idempotency_key) constraint settles concurrent requests. `input` (a JSON object) replaces the
    trigger's input for this run only. Manual runs are explicit, so the overlap policy does not hold them
    back; they do count as running for the scheduled slots that follow."""
    key = _clean_idempotency_key(idempotency_key)
    payload = trigger.input if input is None else validation.clean_fields({"input": input})["input"]
    return _create_manual(trigger_id=trigger.pk, input=payload, key=key, requested_by=requested_by)


def execution_rerun(*, execution: Execution, requested_by: Any = None) -> Execution:
    """A new manual run with the same input, pointing at the run it repeats (`rerun_of`). Only a run that has
    ended (or was skipped) can be re-run: re-running one still going would be a second concurrent copy."""
    original = Execution.objects.get(pk=execution.pk)
    if not original.is_finished:
        raise ValidationError(
            {"execution": [f"only a finished run can be re-run; this one is {original.status}"]}
        )
    return _create_manual(
        trigger_id=original.trigger_id,
        input=original.input,
        key="",
        requested_by=requested_by,
        rerun_of=original,
    )


def _create_manual(
    *, trigger_id: uuid.UUID, input: Any, key: str, requested_by: Any, rerun_of: Execution | None = None
) -> Execution:
    now = clock.now()
    with transaction.atomic():
        trigger = Trigger.objects.select_for_update().get(pk=trigger_id)
        if trigger.deleted_at is not None:
            raise ValidationError({"trigger": ["a deleted trigger cannot run"]})
        if key:
            existing = Execution.objects.filter(trigger=trigger, idempotency_key=key).first()
            if existing is not None:
                return existing
        execution = Execution(
            trigger=trigger,
            origin=ExecutionOrigin.MANUAL,
            status=ExecutionStatus.PENDING,
            priority=trigger.priority,
            input=input,
            requested_by=requested_by,
            requested_at=now,
            idempotency_key=key,
            rerun_of=rerun_of,
            launched_by=(requested_by.get_username() if requested_by is not None else "manual")[:100],
        )
        try:
            with transaction.atomic():
                execution.save(force_insert=True)
        except IntegrityError:
            if not key:
                raise
            return Execution.objects.get(trigger=trigger, idempotency_key=key)  # a concurrent request won
        execution_enqueue_after_commit(execution)
    metrics.runs_recorded([execution])
    return execution


# ----------------------------------------------------------------------------------------------------
# Sweeper
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepReport:
    timed_out: int = 0
    completed: int = 0  # ended by a poll
    lost_attempts: int = 0  # running rows whose worker died mid-call, handed to a new attempt
    requeued: int = 0  # queued rows whose message was lost
    enqueued: int = 0  # pending rows sent (never sent, or far-future catch-up now near)
    promoted: int = 0  # waiting rows started

    def total(self) -> int:
        return sum(dataclasses.astuple(self))


def _lost_message_grace() -> timedelta:
    """How long a queued row may wait past its due time before its message counts as lost: the broker's
    visibility timeout (a dead worker's message comes back only after it) plus kombu's restore sweep and a
    margin. Requeueing earlier would only race the broker's own redelivery; either way the task id fences
    the loser off."""
    return timedelta(seconds=settings.BROKER_VISIBILITY_TIMEOUT + 60)


#: A pending row older than this was never sent (a crash between commit and publish, a broker outage).
PENDING_GRACE = timedelta(seconds=10)


def execution_sweep(*, poll_limit: int = 200) -> SweepReport:
    """One pass of the periodic sweeper. Every action is a compare-and-set on the row, so overlapping
    sweeps (or a sweep racing a worker) do each thing at most once.

    * running, no attempt in flight, past `started_at + timeout_seconds` -> `timed_out` (the target is asked
      to cancel, when it can);
    * running with an attempt in flight past its deadline -> the worker died mid-call: a fresh launch
      message lets `execution_launch_attempt` retire the attempt and try again (or fail the run when no
      attempt is left);
    * running async runs with a run id on a launcher that can poll -> polled (at most `poll_limit`);
    * queued rows whose message is overdue by the lost-message grace -> requeued under a new task id;
    * pending rows never sent (or catch-up runs whose `not_before` is now near) -> sent;
    * waiting rows of triggers with nothing running -> promoted.
    """
    now = clock.now()
    report = SweepReport()
    _sweep_running(now, report, poll_limit=poll_limit)
    _sweep_queued(now, report)
    _sweep_pending(now, report)
    _sweep_waiting(report)
    if report.total():
        logger.info("sweep: %s", report)
    return report


def _sweep_running(now: datetime, report: SweepReport, *, poll_limit: int) -> None:
    running = Execution.objects.filter(status=ExecutionStatus.RUNNING)
    in_flight = dict(
        Attempt.objects.filter(execution__in=running, outcome=AttemptOutcome.STARTED).values_list(
            "execution_id", "deadline_at"
        )
    )
    launchers: dict[str, Launcher | None] = {}
    polls = 0
    rows = running.select_related("trigger").order_by("updated_at")
    for execution in rows.iterator(chunk_size=500):
        if execution.pk in in_flight:
            deadline = in_flight[execution.pk]
            if deadline is not None and deadline < now and _resend(execution, status=ExecutionStatus.RUNNING):
                report.lost_attempts += 1
            continue
        started = execution.started_at or execution.updated_at
        if started + timedelta(seconds=execution.trigger.timeout_seconds) < now:
            if _time_out(execution.pk, now=now):
                report.timed_out += 1
            continue
        if not execution.run_id or polls >= poll_limit:
            continue
        target = execution.trigger.target
        if target not in launchers:
            try:
                launcher = get_launcher(target)
                launchers[target] = launcher if launcher.can_poll() else None
            except LauncherConfigError:
                launchers[target] = None
        launcher = launchers[target]
        if launcher is None:
            continue
        polls += 1
        try:
            state = launcher.poll(execution.run_id)
        except Exception as exc:  # one target being down must not stop the sweep
            logger.warning("poll of run %s at %s failed: %s", execution.run_id, target, scrub(str(exc)))
            continue
        if state.finished:
            try:
                execution_complete(
                    execution=execution, status=state.state, result=state.result, error=state.error
                )
            except ExecutionConflict:
                continue
            report.completed += 1


def _time_out(execution_id: uuid.UUID, *, now: datetime) -> bool:
    with transaction.atomic():
        locked = _lock(execution_id)
        if locked is None:
            return False
        trigger, execution = locked
        if execution.status != ExecutionStatus.RUNNING:
            return False
        if execution.attempt_set.filter(outcome=AttemptOutcome.STARTED).exists():
            return False  # a new attempt began since the sweep looked; its worker bounds it
        error = f"no end reported within the {trigger.timeout_seconds} s timeout"
        last = execution.attempt_set.order_by("-number").first()
        if last is not None:
            last.outcome = AttemptOutcome.TIMED_OUT
            last.error = error
            last.save(update_fields=["outcome", "error"])
        _finish(trigger, execution, ExecutionStatus.TIMED_OUT, now=now, error=error)
        if execution.run_id:
            _cancel_at_target_after_commit(trigger.target, execution.run_id)
    return True


def _resend(execution: Execution, *, status: str) -> bool:
    """Give a row a new launch message under a new task id; the compare-and-set on the old task id makes
    the old message stale and keeps two sweeps from both resending."""
    task_id = str(uuid.uuid4())
    now = clock.now()
    changed = Execution.objects.filter(pk=execution.pk, status=status, task_id=execution.task_id).update(
        task_id=task_id, queued_at=now if status == ExecutionStatus.QUEUED else F("queued_at"), updated_at=now
    )
    if not changed:
        return False
    try:
        _publish(execution.pk, task_id=task_id, priority=execution.priority)
    except Exception as exc:  # the broker is down: the next sweep tries again
        logger.warning("resend of execution %s failed: %s", execution.pk, scrub(str(exc)))
        return False
    return True


def _sweep_queued(now: datetime, report: SweepReport) -> None:
    cutoff = now - _lost_message_grace()
    overdue = Execution.objects.filter(status=ExecutionStatus.QUEUED).filter(
        Q(queued_at__lt=cutoff) | Q(queued_at__isnull=True, updated_at__lt=cutoff),
        Q(not_before__isnull=True) | Q(not_before__lt=cutoff),
    )
    for execution in overdue.only("id", "task_id", "priority").iterator(chunk_size=500):
        if _resend(execution, status=ExecutionStatus.QUEUED):
            report.requeued += 1


def _sweep_pending(now: datetime, report: SweepReport) -> None:
    due = Execution.objects.filter(status=ExecutionStatus.PENDING, updated_at__lt=now - PENDING_GRACE).filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now + timedelta(seconds=_retry_cap()))
    )
    for execution_id in list(due.values_list("pk", flat=True)[:1000]):
        try:
            sent = execution_enqueue(execution_id=execution_id)
        except Exception as exc:  # the broker is down: the row is pending again, the next sweep retries
            logger.warning("enqueue of execution %s failed: %s", execution_id, scrub(str(exc)))
            return
        report.enqueued += int(sent)


def _sweep_waiting(report: SweepReport) -> None:
    trigger_ids = set(
        Execution.objects.filter(status=ExecutionStatus.WAITING).values_list("trigger_id", flat=True)
    )
    for trigger_id in trigger_ids:
        with transaction.atomic():
            trigger = Trigger.objects.select_for_update().get(pk=trigger_id)
            before = Execution.objects.filter(trigger=trigger, status=ExecutionStatus.WAITING).count()
            _promote_waiting(trigger)
            after = Execution.objects.filter(trigger=trigger, status=ExecutionStatus.WAITING).count()
            report.promoted += before - after


# ----------------------------------------------------------------------------------------------------
# Retention
# ----------------------------------------------------------------------------------------------------


def execution_prune(*, older_than: timedelta, dry_run: bool = False, batch_size: int = 1000) -> int:
    """Delete finished executions (and their attempts) that ended more than `older_than` ago; return how
    many (or, with `dry_run`, would be). Runs that have not ended are never pruned, whatever their age.
    Trigger counters live on the trigger, so they survive; so does the exactly-once guard, which also
    refuses slots at or before the trigger's `last_slot` (see `execution_fire`). Deleted in batches, each
    its own short transaction, so a large purge never holds long locks. Task results of the Celery
    launcher older than the cutoff go too (beat's own `backend_cleanup` does not run under our scheduler)."""
    cutoff = clock.now() - older_than
    old = Execution.objects.filter(status__in=FINISHED_STATUSES).filter(
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
    )
    if dry_run:
        return old.count()
    total = 0
    while ids := list(old.values_list("pk", flat=True)[:batch_size]):
        with transaction.atomic():
            Execution.objects.filter(pk__in=ids).delete()
        total += len(ids)
    from django_celery_results.models import TaskResult

    TaskResult.objects.filter(date_done__lt=cutoff).delete()
    return total
