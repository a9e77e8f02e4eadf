"""Thin Celery tasks: ids and ISO instants in, one service call each."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from celery import shared_task
from django.conf import settings

from executions import policies, services
from executions.launchers import demo
from executions.launchers.base import LaunchPayload
from toolkit import outage

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


@shared_task(
    name="executions.launch",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    **OUTLIVE_DATABASE_OUTAGE,
)
def launch(self: Task[[str], None], execution_id: str) -> None:
    """One launch attempt. Acked only after it is recorded, and requeued if the worker dies, so a launch is
    never lost; the service makes a redelivered or duplicate message harmless (see its docstring). Retries
    are new messages under new task ids, sent by the service, never `self.retry`."""
    services.execution_launch_attempt(execution_id=execution_id, task_id=self.request.id)


@shared_task(
    name="executions.launch_batch",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    **OUTLIVE_DATABASE_OUTAGE,
)
def launch_batch(self: Task[[list[str]], None], execution_ids: list[str]) -> None:
    """The first attempt of several fresh runs, claimed and recorded together (see the service); the same
    acks-late and redelivery rules as `launch`, row by row."""
    services.execution_launch_batch(execution_ids=execution_ids, task_id=str(self.request.id))


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
