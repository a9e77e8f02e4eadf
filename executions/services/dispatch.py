"""Sending launch messages. A row is flipped pending -> queued under a fresh task id before its message goes
out, so the fire path's send and the sweeper's resend of one row are exclusive; a lost message leaves the row
queued for the sweeper."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Value, When

from executions import policies
from executions.launchers.base import LauncherConfigError, get_launcher, scrub
from executions.models import (
    Execution,
    ExecutionStatus,
)
from schedules.vocabulary import Priority
from toolkit import broker, clock

logger = logging.getLogger(__name__)


#: The launch task, sent by name so the fire path never imports the task module.
LAUNCH_TASK = "executions.launch"
#: The first launch of several fresh runs at once (see `execution_enqueue_many`).
LAUNCH_BATCH_TASK = "executions.launch_batch"
#: Broker priority of every message after the first one of a run: a retry, a redelivery check, a sweeper's
#: resend of a lost or killed attempt. The run already waited its turn once; served ahead of the backlog of
#: fresh launches, its planned backoff is what it waits, not the length of a herd's queue.
FOLLOW_UP_PRIORITY = Priority.URGENT


def retry_cap() -> float:
    """Longest countdown a launch message may carry. A message with an ETA waits unacked in the worker that
    reserved it, and past the broker's visibility timeout the broker hands it to a second worker; so retry
    delays, Retry-After and catch-up spread waits stay well below it. Longer waits stay in the row
    (`not_before`) and the sweeper sends the message when it is near."""
    visibility = float(settings.BROKER_VISIBILITY_TIMEOUT)
    return max(1.0, min(visibility - 5.0, visibility * 0.8))


@dataclasses.dataclass(frozen=True)
class Launch:
    """One `executions.launch(execution_id)` message: ids only, never secrets or rows."""

    execution_id: uuid.UUID
    task_id: str
    priority: str
    countdown: float = 0.0


def publish_many(launches: Sequence[Launch]) -> None:
    """Send launch messages with their triggers' broker priorities, in one publish batch. Each row already
    carries its `task_id`, so a message can tell whether it is the current one. If the broker refuses,
    the queued rows go back to pending for the sweeper to resend, and the error is raised."""
    from celery import current_app as app

    if not launches:
        return
    messages = [
        broker.TaskMessage(
            args=[str(launch.execution_id)],
            task_id=launch.task_id,
            priority=policies.priority_value(launch.priority),
            countdown=launch.countdown,
        )
        for launch in launches
    ]
    try:
        broker.publish_batch(app, LAUNCH_TASK, messages)
    except Exception:
        _back_to_pending(
            [launch.execution_id for launch in launches], [launch.task_id for launch in launches]
        )
        raise


def _back_to_pending(pks: Sequence[uuid.UUID], task_ids: Sequence[str]) -> None:
    """The broker refused these messages: the rows they would have launched go back to pending, for the
    sweeper to send, unless something else has moved them on meanwhile."""
    Execution.objects.filter(pk__in=pks, task_id__in=task_ids, status=ExecutionStatus.QUEUED).update(
        status=ExecutionStatus.PENDING, task_id="", updated_at=clock.now()
    )


def publish(execution_id: uuid.UUID, *, task_id: str, priority: str, countdown: float = 0.0) -> None:
    """`publish_many` of one message."""
    publish_many([Launch(execution_id, task_id, priority, countdown)])


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


def execution_enqueue_many_after_commit(execution_ids: Sequence[uuid.UUID]) -> None:
    if execution_ids:
        transaction.on_commit(lambda: _enqueue_many_logged(list(execution_ids)), robust=True)


def _enqueue_many_logged(execution_ids: list[uuid.UUID]) -> None:
    try:
        execution_enqueue_many(execution_ids=execution_ids)
    except Exception as exc:  # the broker is down: the rows are pending again; the sweeper sends them
        logger.warning("enqueue of %d executions failed: %s", len(execution_ids), scrub(str(exc)))


def execution_enqueue_many(*, execution_ids: Sequence[uuid.UUID]) -> int:
    """`execution_enqueue` for many rows: one read, compare-and-set UPDATEs (pending -> queued, each row
    under a fresh task id), one publish batch. Runs due now on a target whose calls may be made together
    (`Launcher.batchable`) go out as `executions.launch_batch` messages of up to
    SCHEDULER_LAUNCH_BATCH_SIZE, the batch's task id on each row; the rest as one `executions.launch` each.
    Rows the sweeper flipped first keep its task id and are not sent again. Returns how many were sent."""
    now = clock.now()
    cap = retry_cap()
    size = settings.SCHEDULER_LAUNCH_BATCH_SIZE
    batchable: dict[str, bool] = {}
    singles: list[Launch] = []
    grouped: dict[str, list[uuid.UUID]] = {}
    for pk, priority, not_before, target in Execution.objects.filter(
        pk__in=execution_ids, status=ExecutionStatus.PENDING
    ).values_list("pk", "priority", "not_before", "trigger__target"):
        countdown = (not_before - now).total_seconds() if not_before else 0.0
        if countdown > cap:
            continue  # further off (catch-up spread): the sweeper sends it when it is near
        if countdown <= 0 and size > 1 and _batchable(target, batchable):
            grouped.setdefault(priority, []).append(pk)
        else:
            singles.append(Launch(pk, str(uuid.uuid4()), priority, max(0.0, countdown)))
    sent = _claim_and_publish_singles(singles, now=now)
    for priority, pks in grouped.items():
        for start in range(0, len(pks), size):
            sent += _claim_and_publish_batch(pks[start : start + size], priority, now=now)
    return sent


def _batchable(target: str, known: dict[str, bool]) -> bool:
    if target not in known:
        try:
            known[target] = get_launcher(target).batchable
        except LauncherConfigError:
            known[target] = False  # the single path records the misconfiguration on the run
    return known[target]


def _claim_and_publish_singles(launches: list[Launch], *, now: datetime) -> int:
    if not launches:
        return 0
    task_ids = Case(*(When(pk=launch.execution_id, then=Value(launch.task_id)) for launch in launches))
    claimed = Execution.objects.filter(
        pk__in=[launch.execution_id for launch in launches], status=ExecutionStatus.PENDING
    ).update(status=ExecutionStatus.QUEUED, queued_at=now, task_id=task_ids, updated_at=now)
    if claimed < len(launches):
        ours = set(
            Execution.objects.filter(
                pk__in=[launch.execution_id for launch in launches],
                task_id__in=[launch.task_id for launch in launches],
            ).values_list("pk", flat=True)
        )
        launches = [launch for launch in launches if launch.execution_id in ours]
    publish_many(launches)
    return len(launches)


def _claim_and_publish_batch(pks: list[uuid.UUID], priority: str, *, now: datetime) -> int:
    """One `executions.launch_batch` message; every row it carries holds its task id, so the message is
    each row's current one (a retry or resend later gives a row its own)."""
    from celery import current_app as app

    task_id = str(uuid.uuid4())
    claimed = Execution.objects.filter(pk__in=pks, status=ExecutionStatus.PENDING).update(
        status=ExecutionStatus.QUEUED, queued_at=now, task_id=task_id, updated_at=now
    )
    if claimed < len(pks):
        pks = list(Execution.objects.filter(pk__in=pks, task_id=task_id).values_list("pk", flat=True))
    if not pks:
        return 0
    message = broker.TaskMessage(
        args=[[str(pk) for pk in pks]], task_id=task_id, priority=policies.priority_value(priority)
    )
    try:
        broker.publish_batch(app, LAUNCH_BATCH_TASK, [message])
    except Exception:
        _back_to_pending(pks, [task_id])
        raise
    return len(pks)
