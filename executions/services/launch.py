"""Launch: one attempt of a run, claimed and recorded in two short transactions with the call to the target
between them, outside any transaction; fenced by the row's `task_id` against stale or duplicate messages."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db import connections, transaction

from executions import policies, selectors
from executions.launchers.base import (
    Launcher,
    LauncherConfigError,
    LaunchResult,
    LaunchStatus,
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
from executions.services.dispatch import retry_cap
from executions.services.finish import (
    END_FIELDS,
    cancel_at_target_after_commit,
    finish,
    lock,
    note_end,
    promote_waiting,
    skip_out_of_credit,
)
from schedules import services as trigger_services
from schedules.models import Trigger
from toolkit import broker, bulk, clock, ids, logcontext, metrics

logger = logging.getLogger(__name__)


def attempt_grace() -> float:
    """Slack after an attempt's call timeout for the worker to record its outcome."""
    return float(getattr(settings, "SCHEDULER_ATTEMPT_GRACE_SECONDS", 5.0))


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


@dataclasses.dataclass(frozen=True)
class AttemptReport:
    """What one attempt came to, for the launch task to tell monitoring (Flower): the attempt and run rows
    are the record, committed before the task reports; this only says what they say. `failed`: the attempt
    failed and will not be tried again (the run ended failed or timed out); `retry_in`: it failed and a new
    message will try again in that many seconds."""

    execution_id: uuid.UUID
    number: int
    outcome: str
    run_status: str
    label: dict[str, str]
    error: str = ""
    retry_in: float | None = None

    @property
    def failed(self) -> bool:
        return self.outcome in (AttemptOutcome.FAILED, AttemptOutcome.TIMED_OUT)

    def summary(self) -> str:
        words = ", ".join(f"{k} {v}" for k, v in self.label.items())
        return f"attempt {self.number} of execution {self.execution_id} ({words}): {self.outcome}"


def _label(trigger: Trigger, execution: Execution) -> dict[str, str]:
    return dispatch.run_label(trigger_name=trigger.name, workflow_id=trigger.workflow_id, slot=execution.slot)


@dataclasses.dataclass(frozen=True)
class _Claim:
    execution: Execution
    number: int
    launcher: Launcher | None
    config_error: str = ""


def execution_launch_attempt(
    *, execution_id: uuid.UUID | str, task_id: str | None = None
) -> AttemptReport | None:
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

    The launcher is called outside any transaction, between two short ones (claim, record). Returns what
    the attempt came to, or None when the message had nothing to do.
    """
    claim = _claim_attempt(execution_id, task_id)
    if not isinstance(claim, _Claim):
        return claim  # nothing to do, or a lost last attempt that this message retired (the run failed)
    with logcontext.bind(trigger_id=str(claim.execution.trigger_id), attempt=claim.number):
        result = _call(claim)
        recorded = _record_attempt(execution_id=claim.execution.pk, number=claim.number, result=result)
    return recorded


def _call(claim: _Claim) -> LaunchResult:
    """The call to the target, outside any transaction. Every line it logs names its trigger and attempt
    (the message names only the execution); a launcher's surprise is one failed attempt, never a stuck run."""
    with logcontext.bind(
        trigger_id=str(claim.execution.trigger_id), execution_id=str(claim.execution.pk), attempt=claim.number
    ):
        if claim.launcher is None:
            return LaunchResult.failed(f"target misconfigured: {claim.config_error}")
        try:
            result = claim.launcher.launch(claim.execution)
        except Exception as exc:
            result = LaunchResult.from_exception(exc)
            logger.warning(
                "launch attempt %s of %s raised %s", claim.number, claim.execution.pk, result.error
            )
        logger.debug("launch attempt %s of %s: %s", claim.number, claim.execution.pk, result.status)
        return result


def _call_in_thread(claim: _Claim) -> LaunchResult:
    """`_call` from a batch's own thread: batchable launchers touch no database, but should one ever open a
    connection, it is this thread's and must not outlive it."""
    try:
        return _call(claim)
    finally:
        connections.close_all()


#: How long the fire queue may stay as deep as it is before a launch batch stops yielding to it: it is
#: then not being drained (the `worker` role down or busy elsewhere), and waiting would only delay launches.
YIELD_STALL_SECONDS = 1.0


@functools.cache
def _broker_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


#: A follow-up planned this close (its ETA) counts as waiting: a batch launched now frees its thread in time.
FOLLOW_UP_HORIZON = timedelta(seconds=2)


class _SharedReading:
    """The last broker reading, shared by every launcher thread of the process while it is fresher than
    `fresh` seconds. Each parked batch looks every 50 ms; sixteen threads each asking Redis themselves made
    the launcher read the queues 320 times a second through a herd, CPU taken from the very recording they
    wait for. One reading per interval answers them all just as well."""

    def __init__(self, fresh: float) -> None:
        self.fresh = fresh
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._value: dict[str, dict[int, int]] = {}

    def get(self, read: Callable[[], dict[str, dict[int, int]]]) -> dict[str, dict[int, int]]:
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self.fresh:
                self._value, self._at = read(), now  # a Redis error propagates: nothing is cached
            return self._value

    def forget(self) -> None:
        """The next `get` reads anew (a test that has just filled or emptied a queue)."""
        with self._lock:
            self._at = float("-inf")


_QUEUE_READING = _SharedReading(fresh=0.05)


_released: set[str] = set()
_released_lock = threading.Lock()


def _release_for_waiting_launch() -> bool:
    """Whether this parked launch batch should go now, to free its thread for an `executions.launch` message
    (a retry, a resend, a run-now) that this worker process holds: waiting for a thread, or due within
    FOLLOW_UP_HORIZON. A retry's message carries an ETA, so the worker takes it off the broker at once and
    keeps it (Celery's scheduled, then reserved requests): the broker's queue no longer shows it, and every
    thread parked for a herd would hold it past its planned time. One parked batch is released per waiting
    message, not all of them: the others keep yielding to the herd's recording."""
    from celery.worker import state

    horizon = clock.now() + FOLLOW_UP_HORIZON
    try:
        waiting = {
            str(request.id)
            for request in list(state.reserved_requests)
            if request.name == dispatch.LAUNCH_TASK
        }
        for request in list(getattr(state, "scheduled_requests", ())):  # not in celery-types' stubs
            if request.name != dispatch.LAUNCH_TASK:
                continue
            eta = request.eta
            at = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
            if at is None or at.tzinfo is None or at <= horizon:
                waiting.add(str(request.id))
    except (RuntimeError, ValueError):  # the sets changed under us: look again on the next poll
        return False
    with _released_lock:
        _released.intersection_update(waiting)  # those that got their thread are done with
        unserved = waiting - _released
        if not unserved:
            return False
        _released.add(min(unserved))
        return True


def yield_to_recording() -> str:
    """Recording first. A herd's fires and its launches share the machine's cores and the database; left to
    compete, recording 10,000 slots took 20 s where it takes a few alone, so users saw their runs recorded
    late. A fresh launch batch therefore waits while fire batches are queued and being drained, at most
    SCHEDULER_LAUNCH_YIELD_SECONDS, and not at all once the queue stops draining for a second (the fire
    role is down: launches must not stall behind it). Only fresh runs wait: retries and resends are single
    `urgent` messages and keep their timing; a run waiting here has no attempt yet, so no deadline runs.
    Nor does a batch wait while a retry or resend is queued: every launcher thread parked here would hold it
    back past its planned time. Returns why it stopped waiting (`toolkit.broker.wait_while_draining`), or
    "off"."""
    limit = float(settings.SCHEDULER_LAUNCH_YIELD_SECONDS)
    if limit <= 0:
        return "off"
    client = _broker_client(settings.CELERY_BROKER_URL)
    fires = settings.SCHEDULER_FIRE_QUEUE
    launches = settings.CELERY_TASK_ROUTES[dispatch.LAUNCH_TASK]["queue"]
    follow_up = policies.priority_value(dispatch.FOLLOW_UP_PRIORITY)

    def fires_waiting() -> int:
        if _release_for_waiting_launch():
            return 0  # this process holds a retry, resend or run-now for a thread: free one now
        lengths = _QUEUE_READING.get(lambda: broker.queue_lengths(client, [fires, launches]))
        if lengths[launches].get(follow_up):
            return 0  # a retry or resend is due: this batch goes now, so a thread frees for it at once
        return sum(lengths[fires].values())

    return broker.wait_while_draining(fires_waiting, limit=limit, stall=YIELD_STALL_SECONDS)


def execution_launch_batch(*, execution_ids: Sequence[uuid.UUID | str], task_id: str) -> list[AttemptReport]:
    """`execution_launch_attempt` for the fresh runs of one `executions.launch_batch` message, at a fraction
    of the cost: one transaction claims them all (one locking read, one INSERT of attempts, one UPDATE)
    and the calls go out at once from a thread each. Each outcome is recorded as soon as its call returns,
    with whatever else returns within SCHEDULER_LAUNCH_RECORD_WINDOW (`_record_all`: the plain ones in
    bulk, the rest through the same `_record_attempt`): an attempt's deadline is its own call timeout plus
    a grace, so a fast row must never wait for a slow neighbour, or the sweeper would rightly call it lost
    and try again.
    Returns what each attempt it made came to.

    Only the plain case is batched. A row another transaction holds (skip_locked), one already `running`
    (a redelivered message: the dead-attempt rules apply) or one on a target that is no longer batchable
    is sent on as its own `executions.launch` message under the same task id, so every rule of
    `execution_launch_attempt` holds for it unchanged; an id that is not one is dropped."""
    parsed = [(raw, ids.as_uuid(raw)) for raw in execution_ids]
    for raw, pk in parsed:
        if pk is None:
            logger.warning("launch batch %s: %r is not an execution id; dropped", task_id, raw)
    claims, others = _claim_batch([pk for _raw, pk in parsed if pk is not None], task_id)
    if others:
        dispatch.publish_many(
            [dispatch.Launch(pk, task_id, dispatch.FOLLOW_UP_PRIORITY) for pk in dict.fromkeys(others)]
        )
    reports: list[AttemptReport] = []
    if len(claims) == 1:
        reports += _record_all([(claims[0], _call(claims[0]))])
    elif claims:
        with ThreadPoolExecutor(max_workers=len(claims), thread_name_prefix="launch-batch") as pool:
            running = {pool.submit(_call_in_thread, claim): claim for claim in claims}
            window = float(settings.SCHEDULER_LAUNCH_RECORD_WINDOW)
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                if len(done) < len(running) and window > 0:  # neighbours about to return share the write
                    done, _ = wait(running, timeout=window, return_when=ALL_COMPLETED)
                reports += _record_all([(running.pop(future), future.result()) for future in done])
    return reports


def _record_all(outcomes: list[tuple[_Claim, LaunchResult]]) -> list[AttemptReport]:
    """Record outcomes that came back together. The common ones (a run that succeeded or was accepted) are
    recorded in bulk, a handful of statements for all of them (`_record_plain`); the rest one by one
    through `_record_attempt`, each in its own savepoint, so one row failing to record does not undo the
    others (the sweeper retires its attempt after the deadline). Each part is its own transaction, and
    each locks trigger then execution in the order every other writer does, so batches cannot deadlock."""

    def lock_order(outcome: tuple[_Claim, LaunchResult]) -> tuple[str, str]:
        return str(outcome[0].execution.trigger_id), str(outcome[0].execution.pk)

    rest = sorted(outcomes, key=lock_order)
    reports: list[AttemptReport] = []
    if len(rest) > 1:
        try:
            with transaction.atomic():
                rest, reports = _record_plain(rest)
        except Exception:
            logger.exception("recording %d attempts together failed; recording them one by one", len(rest))
    with transaction.atomic():
        for claim, result in rest:
            try:
                report = _record_attempt(execution_id=claim.execution.pk, number=claim.number, result=result)
            except Exception:
                logger.exception("recording attempt %s of %s failed", claim.number, claim.execution.pk)
            else:
                if report is not None:
                    reports.append(report)
    return reports


#: Outcomes `_record_plain` records in bulk: they end an attempt as succeeded and decide nothing else.
_PLAIN = frozenset({LaunchStatus.SUCCEEDED, LaunchStatus.ACCEPTED})


def _record_plain(
    ordered: list[tuple[_Claim, LaunchResult]],
) -> tuple[list[tuple[_Claim, LaunchResult]], list[AttemptReport]]:
    """`_record_attempt` for every trigger whose outcomes here are all plain (succeeded or accepted) and
    whose rows are as the claim left them (attempt still in flight, run not ended meanwhile): the same
    decisions on the instances, saved with one locking read and one UPDATE per table. Returns the outcomes
    it left for `_record_attempt`: a trigger with a retry, a failure or a surprise goes there whole, so its
    counters see its ends in the same order as one message at a time would. Also returns the reports of
    the attempts it recorded."""
    now = clock.now()
    by_trigger: dict[uuid.UUID, list[tuple[_Claim, LaunchResult]]] = {}
    for outcome in ordered:
        by_trigger.setdefault(outcome[0].execution.trigger_id, []).append(outcome)
    plain = [pk for pk, group in by_trigger.items() if all(r.status in _PLAIN for _c, r in group)]
    if not plain:
        return ordered, []
    triggers = {t.pk: t for t in Trigger.objects.select_for_update().filter(pk__in=plain).order_by("pk")}
    pks = [claim.execution.pk for pk in plain for claim, _r in by_trigger[pk]]
    executions = {e.pk: e for e in Execution.objects.select_for_update().filter(pk__in=pks).order_by("pk")}
    in_flight = {
        (a.execution_id, a.number): a
        for a in Attempt.objects.select_for_update()
        .filter(execution_id__in=pks, outcome=AttemptOutcome.STARTED)
        .order_by("pk")
    }

    def as_claimed(claim: _Claim) -> bool:
        execution = executions.get(claim.execution.pk)
        return (
            execution is not None and not execution.is_finished and (execution.pk, claim.number) in in_flight
        )

    attempts: list[Attempt] = []
    reports: list[AttemptReport] = []
    ended: list[Execution] = []
    accepted: list[Execution] = []
    touched: list[Trigger] = []
    for pk in plain:
        group = by_trigger[pk]
        if pk not in triggers or not all(as_claimed(claim) for claim, _r in group):
            continue
        trigger = triggers[pk]
        for claim, result in group:
            execution = executions[claim.execution.pk]
            execution.trigger = trigger
            attempt = in_flight[(execution.pk, claim.number)]
            attempt.finished_at = now
            attempt.http_status = result.http_status
            attempt.exception = result.exception[:200]
            attempt.error = result.error
            attempt.outcome = AttemptOutcome.SUCCEEDED
            attempts.append(attempt)
            if result.status is LaunchStatus.ACCEPTED:
                execution.run_id = result.run_id
                execution.error = ""
                execution.updated_at = now
                accepted.append(execution)
                reports.append(_report(trigger, execution, attempt))
                continue
            note_end(
                execution,
                ExecutionStatus.SUCCEEDED,
                now=now,
                result=result.result,
                run_id=result.run_id,
                usage=result.usage,
            )
            trigger_services.trigger_note_end(
                trigger=trigger,
                status=ExecutionStatus.SUCCEEDED,
                failed=False,
                succeeded=True,
                started_at=execution.started_at,
                error=execution.error,
            )
            ended.append(execution)
            reports.append(_report(trigger, execution, attempt))
        if trigger not in touched and any(r.status is LaunchStatus.SUCCEEDED for _c, r in group):
            touched.append(trigger)
    bulk.update_each(attempts, ["finished_at", "http_status", "exception", "error", "outcome"])
    bulk.update_each(ended, END_FIELDS)
    bulk.update_each(accepted, ["run_id", "error", "updated_at"])
    trigger_services.triggers_save_ends(triggers=touched)
    if touched:
        waiting = set(
            Execution.objects.filter(trigger_id__in=[t.pk for t in touched], status=ExecutionStatus.WAITING)
            .values_list("trigger_id", flat=True)
            .distinct()
        )
        for trigger in touched:
            if trigger.pk in waiting:
                promote_waiting(trigger)
    metrics.runs_finished(ended)
    outcomes = [a.outcome for a in attempts]
    transaction.on_commit(lambda: metrics.attempts_recorded(outcomes), robust=True)
    done = {a.execution_id for a in attempts}
    return [outcome for outcome in ordered if outcome[0].execution.pk not in done], reports


def _report(
    trigger: Trigger, execution: Execution, attempt: Attempt, retry_in: float | None = None
) -> AttemptReport:
    return AttemptReport(
        execution_id=execution.pk,
        number=attempt.number,
        outcome=attempt.outcome,
        run_status=execution.status,
        label=_label(trigger, execution),
        error=attempt.error,
        retry_in=retry_in,
    )


def _claim_batch(pks: list[uuid.UUID], task_id: str) -> tuple[list[_Claim], list[uuid.UUID]]:
    now = clock.now()
    launchers: dict[str, Launcher] = {}
    claims: list[_Claim] = []
    attempts: list[Attempt] = []
    with transaction.atomic():
        rows = list(
            Execution.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("trigger")
            .filter(pk__in=pks)
            .order_by("pk")
        )
        seen = {row.pk for row in rows}
        others = [pk for pk in pks if pk not in seen]  # held elsewhere (or gone): the single path decides
        unfunded = _out_of_credit(rows, now=now)
        for execution in rows:
            if _nothing_to_do(execution, task_id):
                continue
            if execution.status == ExecutionStatus.RUNNING or execution.trigger.owner_id in unfunded:
                others.append(execution.pk)  # the single path retires a dead attempt, or skips the run
                continue
            try:
                claim, attempt = _start_attempt(execution, now=now, launchers=launchers)
            except Exception:  # a target whose settings break its timeout: its own message says so alone
                logger.exception("launch batch %s: execution %s sent on alone", task_id, execution.pk)
                others.append(execution.pk)
                continue
            if claim.launcher is not None and not claim.launcher.batchable:
                others.append(execution.pk)  # its target changed kind since it was sent
                continue
            claims.append(claim)
            attempts.append(attempt)
        Attempt.objects.bulk_create(attempts)
        bulk.update_each(
            [claim.execution for claim in claims], ["status", "attempts", "started_at", "updated_at"]
        )
    return claims, others


def _start_attempt(
    execution: Execution, *, now: datetime, launchers: dict[str, Launcher]
) -> tuple[_Claim, Attempt]:
    """A new attempt of a locked, claimable row: the attempt row (unsaved) and the row marked running."""
    target = execution.trigger.target
    launcher: Launcher | None = None
    config_error = ""
    timeout = 0.0
    try:
        launcher = launchers.get(target) or launchers.setdefault(target, get_launcher(target))
        timeout = launcher.call_timeout(execution)
    except LauncherConfigError as exc:
        launcher, config_error = None, scrub(str(exc))
    number = execution.attempts + 1
    attempt = Attempt(
        execution=execution,
        number=number,
        started_at=now,
        deadline_at=now + timedelta(seconds=timeout + attempt_grace()),
        worker=_worker_name(),
    )
    execution.status = ExecutionStatus.RUNNING
    execution.attempts = number
    execution.started_at = now
    execution.updated_at = now
    return _Claim(execution, number, launcher, config_error), attempt


def _out_of_credit(rows: Sequence[Execution], *, now: datetime) -> set[int]:
    """The owners, among those of `rows` about to take their first attempt, with no credit left (one
    grouped read for a whole batch). A run already attempted goes on: it started within its budget."""
    owners = {row.trigger.owner_id for row in rows if row.attempts == 0}
    return selectors.owners_out_of_credit(owners, now=now) if owners else set()


def _nothing_to_do(execution: Execution, task_id: str | None) -> bool:
    """A launch message finds nothing to do on a finished or waiting run (a cancelled queued run never
    launches), nor when it is not the run's current message (a retry or the sweeper superseded it)."""
    if execution.is_finished or execution.status == ExecutionStatus.WAITING:
        return True
    if task_id and execution.task_id and task_id != execution.task_id:
        logger.info("stale launch message %s of execution %s ignored", task_id, execution.pk)
        return True
    return False


def _claim_attempt(execution_id: uuid.UUID | str, task_id: str | None) -> _Claim | AttemptReport | None:
    now = clock.now()
    with transaction.atomic():
        locked = lock(execution_id)
        if locked is None:
            logger.info("launch of unknown execution %s ignored", execution_id)
            return None
        trigger, execution = locked
        if _nothing_to_do(execution, task_id):
            return None
        if execution.status == ExecutionStatus.RUNNING:
            retired = _retire_dead_attempt(trigger, execution, now=now, task_id=task_id)
            if retired is not True:
                return retired or None
        elif _out_of_credit([execution], now=now):
            skip_out_of_credit(trigger, execution, now=now)
            return None
        claim, attempt = _start_attempt(execution, now=now, launchers={})
        attempt.save(force_insert=True)
        execution.save(update_fields=["status", "attempts", "started_at", "updated_at"])
    return claim


def _retire_dead_attempt(
    trigger: Trigger, execution: Execution, *, now: datetime, task_id: str | None
) -> bool | AttemptReport:
    """For a message that finds its execution `running`: True when a new attempt may start (the one in
    flight is provably dead), False when there is nothing to do now (see `execution_launch_attempt`), and
    the dead attempt's report when it was the last one and its run is now failed."""
    in_flight = execution.attempt_set.filter(outcome=AttemptOutcome.STARTED).order_by("-number").first()
    if in_flight is None:
        return False  # the target accepted the run; its end comes by callback, poll or the sweeper
    if in_flight.deadline_at is None or now < in_flight.deadline_at:
        wait = ((in_flight.deadline_at or now) - now).total_seconds() + 1.0
        message = execution.task_id or task_id or str(uuid.uuid4())
        transaction.on_commit(
            functools.partial(
                dispatch.publish,
                execution.pk,
                task_id=message,
                priority=dispatch.FOLLOW_UP_PRIORITY,
                countdown=min(wait, retry_cap()),
                label=_label(trigger, execution),
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
        finish(trigger, execution, ExecutionStatus.FAILED, now=now, error=in_flight.error)
        return _report(trigger, execution, in_flight)
    return True


def _record_attempt(*, execution_id: uuid.UUID, number: int, result: LaunchResult) -> AttemptReport | None:
    """Record how attempt `number` ended and what follows: the run's end, a retry, or (async) waiting for
    the target to report. Returns what the attempt came to (None: the run is gone)."""
    now = clock.now()
    with transaction.atomic():
        locked = lock(execution_id)
        if locked is None:
            return None
        trigger, execution = locked
        attempt = Attempt.objects.select_for_update().filter(execution_id=execution.pk, number=number).first()
        if attempt is None or attempt.outcome != AttemptOutcome.STARTED:
            logger.warning("attempt %s of %s ended after it was declared lost; ignored", number, execution.pk)
            return None
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
                    cancel_at_target_after_commit(trigger.target, result.run_id)
            return _report(trigger, execution, attempt)

        if result.status is LaunchStatus.ACCEPTED:
            attempt.save()
            execution.run_id = result.run_id
            execution.error = ""
            execution.save(update_fields=["run_id", "error", "updated_at"])
        elif result.status is LaunchStatus.SUCCEEDED:
            attempt.save()
            finish(
                trigger,
                execution,
                ExecutionStatus.SUCCEEDED,
                now=now,
                result=result.result,
                run_id=result.run_id,
                usage=result.usage,
            )
        elif result.retryable and number < trigger.max_attempts:
            delay = policies.backoff_delay(
                attempt=number,
                base_seconds=trigger.backoff_seconds,
                cap_seconds=retry_cap(),
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
                    dispatch.publish,
                    execution.pk,
                    task_id=execution.task_id,
                    priority=dispatch.FOLLOW_UP_PRIORITY,
                    countdown=delay,
                    label=_label(trigger, execution),
                ),
                robust=True,
            )
        else:
            attempt.save()
            status = ExecutionStatus.TIMED_OUT if result.timed_out else ExecutionStatus.FAILED
            finish(
                trigger,
                execution,
                status,
                now=now,
                error=result.error,
                run_id=result.run_id,
                usage=result.usage,
            )
    metrics.attempts_recorded([attempt.outcome])
    retry_in = attempt.retry_delay_seconds if attempt.outcome == AttemptOutcome.RETRYABLE else None
    return _report(trigger, execution, attempt, retry_in=retry_in)
