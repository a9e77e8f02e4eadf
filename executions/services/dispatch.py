"""Sending launch messages. A row is flipped pending -> queued under a fresh task id before its message goes
out, so the fire path's send and the sweeper's resend of one row are exclusive; a lost message leaves the row
queued for the sweeper."""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.db import transaction

from executions import policies
from executions.models import (
    Execution,
    ExecutionStatus,
)
from toolkit import clock

logger = logging.getLogger(__name__)


#: The launch task, sent by name so the fire path never imports the task module.
LAUNCH_TASK = "executions.launch"


def retry_cap() -> float:
    """Longest countdown a launch message may carry. A message with an ETA waits unacked in the worker that
    reserved it, and past the broker's visibility timeout the broker hands it to a second worker; so retry
    delays, Retry-After and catch-up spread waits stay well below it. Longer waits stay in the row
    (`not_before`) and the sweeper sends the message when it is near."""
    visibility = float(settings.BROKER_VISIBILITY_TIMEOUT)
    return max(1.0, min(visibility - 5.0, visibility * 0.8))


def publish(execution_id: uuid.UUID, *, task_id: str, priority: str, countdown: float = 0.0) -> None:
    """Send `executions.launch(execution_id)` — ids only, never secrets or rows — with the trigger's broker
    priority. The row already carries `task_id`, so the message can tell whether it is the current one. If
    the broker refuses, a queued row goes back to pending for the sweeper to resend at once."""
    from celery import current_app as app

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
    if countdown > retry_cap():
        return False  # far in the future (catch-up spread): the sweeper sends it when it is near
    task_id = str(uuid.uuid4())
    claimed = Execution.objects.filter(pk=execution_id, status=ExecutionStatus.PENDING).update(
        status=ExecutionStatus.QUEUED, queued_at=now, task_id=task_id, updated_at=now
    )
    if claimed:
        publish(execution.pk, task_id=task_id, priority=execution.priority, countdown=countdown)
    return bool(claimed)
