"""Celery targets: hand the run to a task another worker pool runs.

    {"kind": "celery", "task": "flows.run_report", "queue": "reports"}

Always asynchronous: `launch` publishes and answers ACCEPTED; the run's end is read from the result backend
(django-celery-results, `django-db`) by the sweeper through `poll`. The task id is the execution id, so the
result row of the run is found from the execution alone, and a worker that consumes a second copy of the
message (a redelivery) writes the same result row rather than a second one; the task also receives the
execution id as `idempotency_key` to deduplicate its own side effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import states
from celery.result import AsyncResult

from executions import policies
from executions.launchers.base import (
    Launcher,
    LaunchPayload,
    LaunchResult,
    PollResult,
    RunState,
    reported_usage,
    scrub,
)

if TYPE_CHECKING:
    from celery import Celery

    from executions.models import Execution

_STATES: dict[str, RunState] = {
    states.SUCCESS: RunState.SUCCEEDED,
    states.FAILURE: RunState.FAILED,
    states.REVOKED: RunState.CANCELLED,
}


def _app() -> Celery:
    from celery import current_app as app

    return app


class CeleryTaskLauncher(Launcher):
    kind = "celery"

    @property
    def is_async(self) -> bool:
        return True

    def launch(self, execution: Execution) -> LaunchResult:
        task = str(self.require("task"))
        payload = LaunchPayload.of(execution)
        kwargs = {**payload.as_kwargs(), "idempotency_key": payload.execution_id}
        sent = _app().send_task(
            task,
            kwargs=kwargs,
            queue=self.config.get("queue"),
            task_id=payload.execution_id,
            priority=policies.priority_value(execution.priority),
        )
        return LaunchResult.accepted(sent.id)

    def can_poll(self) -> bool:
        return True

    def can_cancel(self) -> bool:
        return True

    def poll(self, run_id: str) -> PollResult:
        result: AsyncResult[Any] = AsyncResult(run_id, app=_app())
        state = _STATES.get(result.state, RunState.RUNNING)
        if state is RunState.SUCCEEDED:
            usage, _note = reported_usage(result.result)  # a `usage` key in the task's returned object
            return PollResult(state, result=result.result, usage=usage)
        if state is RunState.FAILED:
            return PollResult(state, error=scrub(f"{type(result.result).__name__}: {result.result}"))
        return PollResult(state)

    def cancel(self, run_id: str) -> None:
        _app().control.revoke(run_id, terminate=True)
