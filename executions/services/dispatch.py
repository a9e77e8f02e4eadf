"""Sending launch messages. A row is flipped pending -> queued under a fresh task id before its message goes
out, so the fire path's send and the sweeper's resend of one row are exclusive; a lost message leaves the row
queued for the sweeper."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

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


def run_label(*, trigger_name: str, workflow_id: str, slot: datetime | None) -> dict[str, str]:
    """The words a launch message carries for monitoring (its `kwargsrepr`, see `toolkit.broker`): Flower and
    the worker's log show the trigger, the workflow and the slot, where the message itself carries only the
    execution id. Names only, never the input or a secret; Flower's search finds `kwargs:trigger=<name>`."""
    when = slot.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if slot is not None else "manual"
    return {"trigger": trigger_name[:80], "workflow": workflow_id[:80], "slot": when}


@dataclasses.dataclass(frozen=True)
class Launch:
    """One `executions.launch(execution_id)` message: ids only, never secrets or rows. `label` (see
    `run_label`) is what monitoring shows; when a caller does not have it at hand `publish_many` reads it."""

    execution_id: uuid.UUID
    task_id: str
    priority: str
    countdown: float = 0.0
    label: Mapping[str, str] | None = None


def _labels(pks: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, str]]:
    """`run_label` of each run, in one read (for the messages whose sender had no trigger at hand)."""
    if not pks:
        return {}
    rows = Execution.objects.filter(pk__in=pks).values_list(
        "pk", "trigger__name", "trigger__workflow_id", "slot"
    )
    return {
        pk: run_label(trigger_name=name, workflow_id=workflow, slot=slot) for pk, name, workflow, slot in rows
    }


def publish_many(launches: Sequence[Launch]) -> None:
    """Send launch messages with their triggers' broker priorities, in one publish batch. Each row already
    carries its `task_id`, so a message can tell whether it is the current one. If the broker refuses,
    the queued rows go back to pending for the sweeper to resend, and the error is raised."""
    from celery import current_app as app

    if not launches:
        return
    read = _labels([launch.execution_id for launch in launches if launch.label is None])
    messages = [
        broker.TaskMessage(
            args=[str(launch.execution_id)],
            task_id=launch.task_id,
            priority=policies.priority_value(launch.priority),
            countdown=launch.countdown,
            kwargsrepr=repr(dict(launch.label or read.get(launch.execution_id) or {})),
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


def publish(
    execution_id: uuid.UUID,
    *,
    task_id: str,
    priority: str,
    countdown: float = 0.0,
    label: Mapping[str, str] | None = None,
) -> None:
    """`publish_many` of one message."""
    publish_many([Launch(execution_id, task_id, priority, countdown, label)])


def execution_enqueue_after_commit(execution: Execution) -> None:
    transaction.on_commit(lambda: execution_enqueue(execution_id=execution.pk), robust=True)


def execution_enqueue(*, execution_id: uuid.UUID) -> bool:
    """Mark a pending row queued under a fresh task id, then send its launch message. The compare-and-set
    (pending -> queued) makes the fire path's send and the sweeper's resend of the same row exclusive: only
    the one that flips the row sends. A lost message leaves the row queued, which the sweeper requeues."""
    now = clock.now()
    execution = (
        Execution.objects.filter(pk=execution_id, status=ExecutionStatus.PENDING)
        .select_related("trigger")
        .only("id", "priority", "not_before", "slot", "trigger__name", "trigger__workflow_id")
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
        label = run_label(
            trigger_name=execution.trigger.name,
            workflow_id=execution.trigger.workflow_id,
            slot=execution.slot,
        )
        publish(execution.pk, task_id=task_id, priority=execution.priority, countdown=countdown, label=label)
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
    labels: dict[uuid.UUID, dict[str, str]] = {}
    for pk, priority, not_before, target, slot, name, workflow in Execution.objects.filter(
        pk__in=execution_ids, status=ExecutionStatus.PENDING
    ).values_list(
        "pk", "priority", "not_before", "trigger__target", "slot", "trigger__name", "trigger__workflow_id"
    ):
        countdown = (not_before - now).total_seconds() if not_before else 0.0
        if countdown > cap:
            continue  # further off (catch-up spread): the sweeper sends it when it is near
        labels[pk] = run_label(trigger_name=name, workflow_id=workflow, slot=slot)
        if countdown <= 0 and size > 1 and _batchable(target, batchable):
            grouped.setdefault(priority, []).append(pk)
        else:
            singles.append(Launch(pk, str(uuid.uuid4()), priority, max(0.0, countdown), labels[pk]))
    sent = _claim_and_publish_singles(singles, now=now)
    for priority, pks in grouped.items():
        for start in range(0, len(pks), size):
            sent += _claim_and_publish_batch(pks[start : start + size], priority, now=now, labels=labels)
    return sent


#: How many runs a batch message names in monitoring; the rest are counted.
BATCH_LABEL_NAMES = 5


def batch_label(labels: Sequence[Mapping[str, str]]) -> dict[str, object]:
    """What monitoring shows for an `executions.launch_batch` message: how many runs, and the first few
    triggers, workflows and slots by name (a message of hundreds must not carry a page of text)."""
    shown = [
        f"{label['trigger']} ({label['workflow']}) @ {label['slot']}" for label in labels[:BATCH_LABEL_NAMES]
    ]
    more = len(labels) - len(shown)
    return {"runs": len(labels), "triggers": shown + ([f"+{more} more"] if more > 0 else [])}


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


def _claim_and_publish_batch(
    pks: list[uuid.UUID], priority: str, *, now: datetime, labels: Mapping[uuid.UUID, Mapping[str, str]]
) -> int:
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
        args=[[str(pk) for pk in pks]],
        task_id=task_id,
        priority=policies.priority_value(priority),
        kwargsrepr=repr(batch_label([labels[pk] for pk in pks if pk in labels])),
    )
    try:
        broker.publish_batch(app, LAUNCH_BATCH_TASK, [message])
    except Exception:
        _back_to_pending(pks, [task_id])
        raise
    return len(pks)
