"""Thin Celery tasks: ids and ISO instants in, one service call each."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from celery import shared_task
from celery.exceptions import Retry
from django.conf import settings

from executions import policies, services
from executions.launchers import demo
from executions.launchers.base import LaunchPayload
from toolkit import clock, outage

if TYPE_CHECKING:
    from celery import Task

logger = logging.getLogger(__name__)

#: The fire and launch tasks outlive a database outage: a message that finds the database unreachable comes
#: back with backoff (1 s doubling to 30 s, for about an hour) under the same task id, rather than being
#: acknowledged as failed and waiting for the sweeper's lost-message grace. Safe because each task is
#: idempotent: the (trigger, slot) key and the row's task id fence a second delivery.
OUTLIVE_DATABASE_OUTAGE: dict[str, Any] = {
    "autoretry_for": outage.DATABASE_ERRORS,
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 150,
}


@shared_task(name="executions.fire", acks_late=True, ignore_result=True, **OUTLIVE_DATABASE_OUTAGE)
def fire(trigger_id: str, slot: str, origin: str = "schedule") -> None:
    """Record one due slot (the nominal instant beat reserved, never "now") and start what should run. The
    beat sends `fire_batch`; this one serves single fires (and messages sent before an upgrade). No result
    row: the executions are the record."""
    services.execution_fire(
        trigger_id=trigger_id, slot=datetime.fromisoformat(slot), origin=origin, launched_by=origin
    )


@shared_task(name="executions.fire_batch", acks_late=True, ignore_result=True, **OUTLIVE_DATABASE_OUTAGE)
def fire_batch(fires: list[list[str]]) -> None:
    """Record a batch of due slots, `[[trigger_id, slot, origin], ...]`, in one transaction. An element
    that is not one (a forged or corrupted message) is dropped alone, with a log line."""
    parsed = []
    for element in fires:
        try:
            trigger_id, slot, origin = element
            at = datetime.fromisoformat(slot)  # one without an offset: the service drops it, with a log
        except (TypeError, ValueError) as exc:
            logger.warning("fire_batch: element %r dropped (%s)", element, exc)
            continue
        parsed.append(services.Fire(trigger_id=trigger_id, slot=at, origin=origin, launched_by=origin))
    services.execution_fire_batch(fires=parsed)


class LaunchFailed(Exception):
    """A launch attempt failed and will not be tried again: its run ended failed or timed out. Raised by the
    launch tasks after the outcome is committed, so Flower shows the message as FAILURE; the database is
    the record and already says so."""


class LaunchWillRetry(Exception):
    """A launch attempt failed and a new message (a new task id, sent by the service) will try again: shown
    in Flower as RETRY, carried inside Celery's `Retry`."""


#: How the launch tasks tell monitoring what an attempt came to, without changing what the database records
#: or how the message is acknowledged. A raised `LaunchFailed` is *expected* (`throws`: logged at INFO,
#: without a traceback) and, under acks_late, acknowledged on failure (`acks_on_failure`, pinned here
#: rather than left to the setting): a run that failed is never redelivered and re-run because of it.
#: A raised `Retry` is acknowledged as well (Celery acks a retried message), and since it is raised, not
#: sent with `self.retry`, Celery sends no message of its own: the service already sent the next attempt,
#: fenced by the row's task id. Neither is among `autoretry_for`'s database errors.
LAUNCH_TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "acks_on_failure": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "throws": (LaunchFailed,),
    **OUTLIVE_DATABASE_OUTAGE,
}


def report(reports: list[services.AttemptReport]) -> str:
    """The task's outcome from what its attempts came to: raise `LaunchFailed` when one failed for good,
    `Retry` when one will be tried again, else a one-line summary (Flower's "result" column)."""
    failed = [r for r in reports if r.failed]
    if failed:
        raise LaunchFailed("; ".join(f"{r.summary()}: {r.error}" for r in failed))
    retried = [r for r in reports if r.retry_in is not None]
    if retried:
        reason = LaunchWillRetry("; ".join(f"{r.summary()}: {r.error}" for r in retried))
        soonest = clock.now() + timedelta(seconds=min(r.retry_in or 0.0 for r in retried))
        raise Retry(str(reason), exc=reason, when=soonest)
    return "; ".join(r.summary() for r in reports) or "nothing to do (a stale, finished or duplicate message)"


@shared_task(name="executions.launch", **LAUNCH_TASK_OPTIONS)
def launch(self: Task[[str], str], execution_id: str) -> str:
    """One launch attempt. Acked only after it is recorded, and requeued if the worker dies, so a launch is
    never lost; the service makes a redelivered or duplicate message harmless (see its docstring). Retries
    are new messages under new task ids, sent by the service, never `self.retry`; the task's state in
    Flower follows the attempt's outcome (`report`)."""
    made = services.execution_launch_attempt(execution_id=execution_id, task_id=self.request.id)
    return report([made] if made is not None else [])


@shared_task(name="executions.launch_batch", **LAUNCH_TASK_OPTIONS)
def launch_batch(self: Task[[list[str]], str], execution_ids: list[str]) -> str:
    """The first attempt of several fresh runs, claimed and recorded together (see the service); the same
    acks-late and redelivery rules as `launch`, row by row. FAILURE when any of its runs failed for good,
    RETRY when any will be tried again (each under its own new `executions.launch` message)."""
    services.yield_to_recording()
    return report(services.execution_launch_batch(execution_ids=execution_ids, task_id=str(self.request.id)))


@shared_task(name="executions.sweep", acks_late=True, ignore_result=True)
def sweep() -> dict[str, int]:
    """Periodic (~10 s): time out, poll, requeue lost messages, promote waiting runs."""
    return dataclasses.asdict(services.execution_sweep())


@shared_task(name="executions.prune", acks_late=True, ignore_result=True)
def prune(older_than: str | None = None) -> int:
    """Daily retention: delete finished executions older than `older_than` (default
    `settings.SCHEDULER_EXECUTION_RETENTION`, else 90 days), then the runs beyond each trigger's history
    limits (`keep_succeeded`, `keep_failed`). Returns how many went."""
    age = older_than or cast(str, getattr(settings, "SCHEDULER_EXECUTION_RETENTION", "90d"))
    return services.execution_prune(older_than=policies.parse_age(age)) + services.execution_prune_history()


@shared_task(name="executions.demo_workflow", acks_late=True)
def demo_workflow(**kwargs: Any) -> dict[str, Any]:
    """A demo workflow run as a Celery task, for a `celery` target in development:
    `{"kind": "celery", "task": "executions.demo_workflow"}`. Raises on a simulated failure, so the
    result backend records FAILURE and the sweeper's poll ends the run failed."""
    fields = {f.name for f in dataclasses.fields(LaunchPayload)}
    payload = LaunchPayload(**{k: v for k, v in kwargs.items() if k in fields})
    decided, document, _ = demo.run(payload)
    if not decided.succeeds:
        raise demo.DemoFailure(f"demo step {decided.failed_step!r} of {decided.workflow!r} failed")
    return document
