"""The periodic sweeper: timeouts, dead attempts, polls, lost messages, unsent rows and waiting rows."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from executions.launchers.base import (
    Launcher,
    LauncherConfigError,
    get_launcher,
    scrub,
)
from executions.models import (
    Attempt,
    AttemptOutcome,
    Execution,
    ExecutionStatus,
)
from executions.services import dispatch
from executions.services.dispatch import execution_enqueue, retry_cap
from executions.services.finish import (
    ExecutionConflict,
    cancel_at_target_after_commit,
    execution_complete,
    finish,
    lock,
    promote_waiting,
)
from schedules.models import Trigger
from toolkit import broker, clock, ids

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class SweepReport:
    timed_out: int = 0
    completed: int = 0  # ended by a poll
    lost_attempts: int = 0  # running rows whose worker died mid-call, handed to a new attempt
    requeued: int = 0  # queued rows whose message was lost
    unsent: int = 0  # queued rows whose sender stopped between its commit and its publish
    enqueued: int = 0  # pending rows sent (never sent, or far-future catch-up now near)
    promoted: int = 0  # waiting rows started

    def total(self) -> int:
        return sum(dataclasses.astuple(self))


def lost_message_grace() -> timedelta:
    """How long a queued row may wait past its due time before its message counts as lost: the broker's
    visibility timeout (a dead worker's message comes back only after it) plus kombu's restore sweep and a
    margin. Requeueing earlier would only race the broker's own redelivery; either way the task id fences
    the loser off."""
    return timedelta(seconds=settings.BROKER_VISIBILITY_TIMEOUT + 60)


#: A pending row older than this was never sent (a crash between commit and publish, a broker outage).
PENDING_GRACE = timedelta(seconds=10)
#: A note in the unsent ledger older than this names messages whose sender stopped before publishing them
#: (a publish takes milliseconds after its commit; this leaves room for a slow commit on a loaded database).
UNSENT_GRACE = timedelta(seconds=10)


def execution_sweep(*, poll_limit: int = 200) -> SweepReport:
    """One pass of the periodic sweeper. Every action is a compare-and-set on the row, so overlapping
    sweeps (or a sweep racing a worker) do each thing at most once.

    * running, no attempt in flight, past `started_at + timeout_seconds` -> `timed_out` (the target is asked
      to cancel, when it can);
    * running with an attempt in flight past its deadline -> the worker died mid-call: a fresh launch
      message lets `execution_launch_attempt` retire the attempt and try again (or fail the run when no
      attempt is left);
    * running async runs with a run id on a launcher that can poll -> polled (at most `poll_limit`);
    * queued rows noted unsent for longer than UNSENT_GRACE (their sender died between commit and publish)
      -> sent under a new task id (`_sweep_unsent`);
    * queued rows whose message is overdue by the lost-message grace -> requeued under a new task id; all
      queued rows at once when the broker lost its messages (`_sweep_queued`);
    * pending rows never sent (or catch-up runs whose `not_before` is now near) -> sent;
    * waiting rows of triggers with nothing running -> promoted.
    """
    now = clock.now()
    report = SweepReport()
    _sweep_running(now, report, poll_limit=poll_limit)
    _sweep_unsent(now, report)
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
                candidate = get_launcher(target)
                launchers[target] = candidate if candidate.can_poll() else None
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
                    execution=execution,
                    status=state.state,
                    result=state.result,
                    error=state.error,
                    usage=state.usage,
                )
            except ExecutionConflict:
                continue
            report.completed += 1


def _time_out(execution_id: uuid.UUID, *, now: datetime) -> bool:
    with transaction.atomic():
        locked = lock(execution_id)
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
        finish(trigger, execution, ExecutionStatus.TIMED_OUT, now=now, error=error)
        if execution.run_id:
            cancel_at_target_after_commit(trigger.target, execution.run_id)
    return True


def _resend(execution: Execution, *, status: str, countdown: float = 0.0) -> bool:
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
        dispatch.publish(
            execution.pk, task_id=task_id, priority=dispatch.FOLLOW_UP_PRIORITY, countdown=countdown
        )
    except Exception as exc:  # the broker is down: the next sweep tries again
        logger.warning("resend of execution %s failed: %s", execution.pk, scrub(str(exc)))
        return False
    return True


#: What `_resend_queued` reads of a row.
_RESEND_FIELDS = ("id", "task_id", "priority", "not_before")


def _resend_queued(execution: Execution, *, now: datetime) -> bool:
    """`_resend` of a queued row, keeping what is left of its wait (a retry's backoff, a spread's place)."""
    wait = (execution.not_before - now).total_seconds() if execution.not_before else 0.0
    return _resend(execution, status=ExecutionStatus.QUEUED, countdown=min(max(0.0, wait), retry_cap()))


def _sweep_unsent(now: datetime, report: SweepReport) -> None:
    """Queued rows whose messages were noted in the unsent ledger and never published (`toolkit.broker.
    note_unsent`): each row still queued under the noted task id gets a new message under a new one (the
    compare-and-set on the old id makes a late publish of the old message stale); a row that moved on — its
    message went out and was taken, or another sender resent it — is left alone. The note goes either way."""
    try:
        notes = broker.unsent_since((now - UNSENT_GRACE).timestamp())
    except Exception as exc:  # the broker is down: nothing can be sent either; the next sweep looks again
        logger.warning("sweep: unsent ledger unreadable (%s)", scrub(str(exc)))
        return
    for note, pairs in notes:
        current = {pk: task_id for raw, task_id in pairs if (pk := ids.as_uuid(raw)) is not None}
        rows = Execution.objects.filter(pk__in=list(current), status=ExecutionStatus.QUEUED)
        for execution in rows.only(*_RESEND_FIELDS).order_by("pk"):
            if execution.task_id == current[execution.pk] and _resend_queued(execution, now=now):
                report.unsent += 1
        broker.note_sent(note)


def _sweep_queued(now: datetime, report: SweepReport) -> None:
    """Queued rows whose message is gone. Normally that is only known once the broker's own redelivery
    window has passed (`lost_message_grace`); but when the broker says it lost everything (its marker is
    gone: `broker.broker_lost_messages`), every queued row is resent now, a retry keeping what is left of
    its backoff."""
    try:
        lost_all = broker.broker_lost_messages(settings.CELERY_BROKER_URL)
    except Exception as exc:  # the broker is down: nothing can be sent either; the next sweep looks again
        logger.warning("sweep: broker unreachable (%s); queued rows are checked on the next sweep", exc)
        return
    if lost_all:
        logger.warning(
            "sweep: the broker lost its messages (restarted empty or flushed); resending queued runs"
        )
        overdue = Execution.objects.filter(status=ExecutionStatus.QUEUED).filter(
            Q(queued_at__lt=now) | Q(queued_at__isnull=True)
        )
    else:
        cutoff = now - lost_message_grace()
        overdue = Execution.objects.filter(status=ExecutionStatus.QUEUED).filter(
            Q(queued_at__lt=cutoff) | Q(queued_at__isnull=True, updated_at__lt=cutoff),
            Q(not_before__isnull=True) | Q(not_before__lt=cutoff),
        )
    for execution in overdue.only(*_RESEND_FIELDS).iterator(chunk_size=500):
        if _resend_queued(execution, now=now):
            report.requeued += 1


def _sweep_pending(now: datetime, report: SweepReport) -> None:
    due = Execution.objects.filter(status=ExecutionStatus.PENDING, updated_at__lt=now - PENDING_GRACE).filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now + timedelta(seconds=retry_cap()))
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
            promote_waiting(trigger)
            after = Execution.objects.filter(trigger=trigger, status=ExecutionStatus.WAITING).count()
            report.promoted += before - after
