"""Sending launch messages. A row is flipped pending -> queued under a fresh task id before its message goes
out, so the fire path's send and the sweeper's resend of one row are exclusive; a lost message leaves the row
queued for the sweeper."""

from __future__ import annotations

import dataclasses
import functools
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction

from executions import policies
from executions.launchers.base import LauncherConfigError, get_launcher, scrub
from executions.models import (
    Execution,
    ExecutionStatus,
)
from schedules.vocabulary import Priority
from toolkit import broker, bulk, clock

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


@dataclasses.dataclass(frozen=True)
class Due:
    """A pending run to send, with what its message needs. The fire path knows all of it as it records the
    row (so sending a herd costs no read); other senders read it (`execution_enqueue_many`)."""

    execution_id: uuid.UUID
    priority: str
    not_before: datetime | None
    target: str
    trigger_name: str
    workflow_id: str
    slot: datetime | None

    @functools.cached_property
    def label(self) -> dict[str, str]:
        """`run_label`, made when a message shows it: a batch message names only its first few runs, so a
        herd's rows mostly never need theirs."""
        return run_label(trigger_name=self.trigger_name, workflow_id=self.workflow_id, slot=self.slot)


def execution_send_after_commit(due: Sequence[Due], *, held: Sends | None = None) -> None:
    """After the transaction that recorded them commits, send `due` (`send_due`) and the messages of rows
    it wrote already queued (`held`, see `plan_sends`); a broker that refuses leaves them pending for the
    sweeper."""
    if due or (held is not None and held.claims):
        batch = list(due)
        transaction.on_commit(lambda: _send_logged(batch, held), robust=True)


def execution_enqueue_many_after_commit(execution_ids: Sequence[uuid.UUID]) -> None:
    if execution_ids:
        transaction.on_commit(lambda: _enqueue_many_logged(list(execution_ids)), robust=True)


def _enqueue_many_logged(execution_ids: list[uuid.UUID]) -> None:
    _logged(len(execution_ids), lambda: execution_enqueue_many(execution_ids=execution_ids))


def _send_logged(due: list[Due], held: Sends | None = None) -> None:
    if held is not None and held.claims:
        _logged(len(held.claims), held.publish)
    if due:
        _logged(len(due), lambda: send_due(due))


def _logged(count: int, send: Callable[[], object]) -> None:
    """An after-commit send: a broker that refuses is logged, not raised (the rows are pending again and the
    sweeper sends them), so one failed send never stops the next hook."""
    try:
        send()
    except Exception as exc:
        logger.warning("enqueue of %d executions failed: %s", count, scrub(str(exc)))


def execution_enqueue_many(*, execution_ids: Sequence[uuid.UUID]) -> int:
    """`execution_enqueue` for many rows: one read of what their messages need, then `send_due`."""
    rows = Execution.objects.filter(pk__in=execution_ids, status=ExecutionStatus.PENDING).values_list(
        "pk", "priority", "not_before", "trigger__target", "slot", "trigger__name", "trigger__workflow_id"
    )
    return send_due(
        [
            Due(pk, priority, not_before, target, name, workflow, slot)
            for pk, priority, not_before, target, slot, name, workflow in rows
        ]
    )


def send_due(due: Sequence[Due]) -> int:
    """Send pending runs: one compare-and-set UPDATE claims them all (pending -> queued, each under the task
    id of the message that carries it; rows another sender flipped first keep its task id and are not sent
    again), then the messages (`Sends.publish`). Returns how many were sent."""
    now = clock.now()
    sends = plan_sends(due, now=now)
    sends.note_unsent(now)
    sends.keep(_claim(sends.claims, now=now))
    sends.publish()
    return len(sends.claims)


def plan_sends(due: Sequence[Due], *, now: datetime) -> Sends:
    """Which messages would carry `due`, and under which task ids. Runs due now on a target whose calls may
    be made together (`Launcher.batchable`) go as `executions.launch_batch` messages of up to
    SCHEDULER_LAUNCH_BATCH_SIZE, the batch's task id on each row; the rest as one `executions.launch` each.
    Runs further off than `retry_cap` are left out (the sweeper sends them when near).

    The fire path plans before it writes, so that its rows go in already queued under their task ids: one
    INSERT, not an INSERT and then a claim UPDATE of the same rows (every index entry written twice)."""
    cap = retry_cap()
    size = settings.SCHEDULER_LAUNCH_BATCH_SIZE
    batchable: dict[str, bool] = {}
    singles: list[Launch] = []
    grouped: dict[str, list[Due]] = {}
    for row in due:
        countdown = (row.not_before - now).total_seconds() if row.not_before else 0.0
        if countdown > cap:
            continue  # further off (catch-up spread): the sweeper sends it when it is near
        if countdown <= 0 and size > 1 and _batchable(row.target, batchable):
            grouped.setdefault(row.priority, []).append(row)
        else:
            singles.append(
                Launch(row.execution_id, str(uuid.uuid4()), row.priority, max(0.0, countdown), row.label)
            )
    batches = [
        (str(uuid.uuid4()), priority, rows[start : start + size])
        for priority, rows in grouped.items()
        for start in range(0, len(rows), size)
    ]
    return Sends(singles, batches)


@dataclasses.dataclass
class Sends:
    """Planned launch messages (`plan_sends`) and the rows each one carries."""

    singles: list[Launch]
    batches: list[tuple[str, str, list[Due]]]  # (task id, priority, rows)
    #: This publish's note in the unsent ledger (`toolkit.broker.note_unsent`), cleared once it is out.
    note: str | None = None

    def note_unsent(self, now: datetime) -> None:
        """Note the messages in the unsent ledger before their rows become queued (before the claim, or
        before the commit of rows written queued): should this process die before `publish`, the sweeper
        resends them within seconds (`sweep._sweep_unsent`) instead of after the lost-message grace."""
        claims = self.claims
        if claims:
            self.note = broker.note_unsent(
                [(str(pk), task_id) for pk, task_id in claims.items()], at=now.timestamp()
            )

    @property
    def claims(self) -> dict[uuid.UUID, str]:
        """Each row's task id: what a row must be queued under for its message to be the current one."""
        claims = {launch.execution_id: launch.task_id for launch in self.singles}
        claims.update((row.execution_id, task_id) for task_id, _, rows in self.batches for row in rows)
        return claims

    def keep(self, ours: set[uuid.UUID]) -> None:
        """Drop the rows this sender does not hold (not claimed, not written)."""
        self.singles = [launch for launch in self.singles if launch.execution_id in ours]
        batches = [
            (task_id, priority, [r for r in rows if r.execution_id in ours])
            for task_id, priority, rows in self.batches
        ]
        self.batches = [batch for batch in batches if batch[2]]

    def publish(self) -> None:
        """Send the messages, in one publish batch per task. The rows must be queued under their task ids
        already; if the broker refuses, those still queued under them go back to pending for the sweeper."""
        claims = self.claims
        messages = [
            broker.TaskMessage(
                args=[[str(row.execution_id) for row in rows]],
                task_id=task_id,
                priority=policies.priority_value(priority),
                kwargsrepr=repr(batch_label([row.label for row in rows[:BATCH_LABEL_NAMES]], runs=len(rows))),
            )
            for task_id, priority, rows in self.batches
        ]
        try:
            try:
                publish_many(self.singles)
            except Exception:
                _back_to_pending(list(claims), list(claims.values()))  # nothing of this call went out
                raise
            if messages:
                _publish_batches(messages, claims)
        finally:
            # Sent, or back to pending for the pending sweep: either way nothing is owed under this note.
            broker.note_sent(self.note)


def _claim(claims: Mapping[uuid.UUID, str], *, now: datetime) -> set[uuid.UUID]:
    """pending -> queued under each row's task id, in one statement; returns the rows this call holds (a row
    the sweeper or another sender flipped first is theirs)."""
    rows = [_Claimed(pk, task_id, now) for pk, task_id in claims.items()]
    return bulk.update_each(
        rows,
        ["status", "queued_at", "task_id", "updated_at"],
        only_if={"status": ExecutionStatus.PENDING},
        model=Execution,
    )


@dataclasses.dataclass(frozen=True)
class _Claimed:
    """What a claim writes on one row (`bulk.update_each` reads these attributes, no model instance)."""

    pk: uuid.UUID
    task_id: str
    queued_at: datetime
    status: str = ExecutionStatus.QUEUED

    @property
    def id(self) -> uuid.UUID:
        return self.pk

    @property
    def updated_at(self) -> datetime:
        return self.queued_at


def _publish_batches(messages: list[broker.TaskMessage], claims: Mapping[uuid.UUID, str]) -> None:
    from celery import current_app as app

    try:
        broker.publish_batch(app, LAUNCH_BATCH_TASK, messages)
    except Exception:
        ids = {message.task_id for message in messages}
        _back_to_pending([pk for pk, task_id in claims.items() if task_id in ids], list(ids))
        raise


#: How many runs a batch message names in monitoring; the rest are counted.
BATCH_LABEL_NAMES = 5


def batch_label(labels: Sequence[Mapping[str, str]], *, runs: int) -> dict[str, object]:
    """What monitoring shows for an `executions.launch_batch` message of `runs` runs: how many, and the
    first few triggers, workflows and slots by name (`labels`: a message of hundreds must not carry a page
    of text, nor its sender make a label per run)."""
    shown = [
        f"{label['trigger']} ({label['workflow']}) @ {label['slot']}" for label in labels[:BATCH_LABEL_NAMES]
    ]
    more = runs - len(shown)
    return {"runs": runs, "triggers": shown + ([f"+{more} more"] if more > 0 else [])}


def _batchable(target: str, known: dict[str, bool]) -> bool:
    if target not in known:
        try:
            known[target] = get_launcher(target).batchable
        except LauncherConfigError:
            known[target] = False  # the single path records the misconfiguration on the run
    return known[target]
