"""Every way a run ends — a synchronous answer, a callback or poll, a cancel, the sweeper's timeout — comes
through `finish`, which records the end and the trigger's counters (through `schedules.services`) in one
transaction and starts the next waiting slot.

Lock order everywhere: trigger row, then execution row (`lock`)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F

from executions import events, selectors
from executions.launchers.base import (
    clip_result,
    get_launcher,
    scrub,
)
from executions.models import (
    ACTIVE_STATUSES,
    Execution,
    ExecutionStatus,
    SkipReason,
)
from executions.services.dispatch import execution_enqueue_after_commit
from executions.usage import Usage
from schedules import services as trigger_services
from schedules.models import OverlapPolicy, Trigger
from toolkit import clock, metrics

logger = logging.getLogger(__name__)


#: Ends that count as failures in the trigger's counters (a cancel is a decision, not a failure).
FAILURE_STATUSES = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT})


def lock(execution_id: uuid.UUID | str) -> tuple[Trigger, Execution] | None:
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


def lock_existing(execution_id: uuid.UUID | str) -> tuple[Trigger, Execution]:
    """`lock` for callers that were handed an execution: its disappearing (pruned) is an error for them."""
    locked = lock(execution_id)
    if locked is None:
        raise Execution.DoesNotExist(f"execution {execution_id} does not exist")
    return locked


def finish(
    trigger: Trigger,
    execution: Execution,
    status: str,
    *,
    now: datetime,
    result: Any = None,
    error: str = "",
    run_id: str = "",
    usage: Usage | None = None,
) -> None:
    """End a run and update the trigger's counters in the same transaction (both rows are locked by the
    caller), then start the next waiting slot. Every way a run can end comes through here (a launch batch
    through `note_end`, the same decisions for many rows saved in bulk)."""
    note_end(execution, status, now=now, result=result, error=error, run_id=run_id, usage=usage)
    execution.save(update_fields=list(END_FIELDS))
    trigger_services.trigger_record_end(
        trigger=trigger,
        status=status,
        failed=status in FAILURE_STATUSES,
        succeeded=status == ExecutionStatus.SUCCEEDED,
        started_at=execution.started_at,
        error=execution.error,
    )
    promote_waiting(trigger)
    metrics.runs_finished([execution])


#: What ending a run changes on its row (`note_end`), and what it used (`USAGE_FIELDS`).
USAGE_FIELDS = ("credits_used", "input_tokens", "output_tokens", "cost")
END_FIELDS = (
    "status", "skip_reason", "finished_at", "duration_ms", "result", "error", "run_id", *USAGE_FIELDS,
    "updated_at",
)  # fmt: skip


def note_end(
    execution: Execution,
    status: str,
    *,
    now: datetime,
    result: Any = None,
    error: str = "",
    run_id: str = "",
    usage: Usage | None = None,
) -> None:
    """The end of a run on the instance, unsaved: `finish` saves it at once, a launch batch saves many
    together (`bulk.update_each` with `END_FIELDS`). `usage` is what the target reported the run used
    (stored figure by figure; what it did not report stays empty)."""
    execution.status = status
    execution.finished_at = now
    execution.updated_at = now
    if execution.started_at:
        execution.duration_ms = max(0, int((now - execution.started_at).total_seconds() * 1000))
    if result is not None:
        execution.result = clip_result(result)
    execution.error = (
        scrub(error) if error else ("" if status == ExecutionStatus.SUCCEEDED else execution.error)
    )
    if run_id:
        execution.run_id = run_id[:200]
    if usage is not None:
        execution.credits_used = usage.credits
        execution.input_tokens = usage.input_tokens
        execution.output_tokens = usage.output_tokens
        execution.cost = usage.cost


def skip_out_of_credit(trigger: Trigger, execution: Execution, *, now: datetime) -> None:
    """A run about to take its first attempt whose owner has no credit left: recorded `skipped`
    (`credits_exhausted`) through `finish`, so the trigger's last status and the next waiting slot follow
    as for any end, and the target is never called. Both rows are locked by the caller."""
    execution.skip_reason = SkipReason.CREDITS_EXHAUSTED
    finish(trigger, execution, ExecutionStatus.SKIPPED, now=now)
    transaction.on_commit(lambda: metrics.runs_skipped([SkipReason.CREDITS_EXHAUSTED]), robust=True)
    events.announce_recorded([execution])  # to subscribers of skipped runs, as the fire path's skips are


def promote_waiting(trigger: Trigger) -> None:
    """When a run ends, the oldest waiting slot of its trigger (queue / buffer_one) starts, in slot order —
    unless the trigger still has `max_concurrent` runs going (an `allow` trigger, held back only by a
    limit, has no such cap) or a concurrency limit of its owner or workflow still holds (the sweeper
    retries those, since the run that frees the capacity may belong to another trigger). A row still held
    by a limit is marked with the limit that holds it now."""
    nxt = (
        Execution.objects.select_for_update()
        .filter(trigger_id=trigger.pk, status=ExecutionStatus.WAITING)
        .order_by(F("slot").asc(nulls_last=True), "created_at")
        .first()
    )
    if nxt is None:
        return
    if trigger.overlap_policy != OverlapPolicy.ALLOW:
        active = Execution.objects.filter(trigger_id=trigger.pk, status__in=ACTIVE_STATUSES).count()
        if active >= trigger.max_concurrent:
            return
    held_by = selectors.concurrency_limit_reached(trigger)
    if held_by is not None:
        if nxt.skip_reason != held_by:
            nxt.skip_reason = held_by
            nxt.save(update_fields=["skip_reason", "updated_at"])
        return
    nxt.status, nxt.skip_reason = ExecutionStatus.PENDING, ""
    nxt.save(update_fields=["status", "skip_reason", "updated_at"])
    execution_enqueue_after_commit(nxt)


def cancel_at_target_after_commit(target: str, run_id: str) -> None:
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
        trigger, execution = lock_existing(execution.pk)
        if execution.is_finished:
            return execution
        run_id = execution.run_id if execution.status == ExecutionStatus.RUNNING else ""
        finish(trigger, execution, ExecutionStatus.CANCELLED, now=now, error=reason)
        if run_id:
            cancel_at_target_after_commit(trigger.target, run_id)
    return execution


#: How a run may be reported ended from outside (callback, poll, sweeper).
COMPLETION_STATUSES = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED, ExecutionStatus.TIMED_OUT}
)


def execution_complete(
    *,
    execution: Execution,
    status: str,
    result: Any = None,
    error: str = "",
    run_id: str = "",
    usage: Usage | None = None,
) -> Execution:
    """The asynchronous end of a run (signed callback or poll), with what the target reports it used.
    Idempotent: reporting the end a run already has changes nothing (its usage included: a retried
    callback cannot count a run's credits twice); reporting a different end raises `ExecutionConflict` and
    changes nothing either (the first end recorded wins — e.g. a run we timed out or cancelled stays so)."""
    if status not in COMPLETION_STATUSES:
        raise ValueError(f"status must be one of {sorted(COMPLETION_STATUSES)}, got {status!r}")
    now = clock.now()
    with transaction.atomic():
        trigger, execution = lock_existing(execution.pk)
        if execution.is_finished:
            if execution.status == status:
                return execution
            raise ExecutionConflict(execution.status)
        finish(trigger, execution, status, now=now, result=result, error=error, run_id=run_id, usage=usage)
    return execution
