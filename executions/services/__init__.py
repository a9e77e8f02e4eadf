"""The only code that changes executions, one module per stage of a run (the public names are re-exported
here, so callers write `services.execution_fire(...)`):

* `fire` — the exactly-once guarantee: every scheduled run (beat, catch-up, tick, reconcile) becomes an
  `Execution` keyed by (trigger, slot) while the trigger row is locked, so a second fire of the same slot
  finds the row and does nothing.
* `dispatch` and `launch` — one `executions.launch` message per attempt, fenced by the row's `task_id`; each
  attempt is claimed, made outside any transaction, and recorded (retry with backoff, end, or wait for an
  async target). See `execution_launch_attempt` for redelivery.
* `finish` — sync answers, callbacks and polls (`execution_complete`), cancel, and the sweeper's timeouts
  all end a run through `finish.finish`, which updates the trigger's counters (through
  `schedules.services`) in the same transaction and starts the next waiting slot.
* `backfill` — a past range of a trigger's slots, sent through `fire` (origin `backfill`).
* `manual` (run now, re-run), `sweep` (the periodic sweeper) and `retention` (age, and the per-trigger
  history limits).
* `credits` — the operators' credit budgets per user (what they hold back is decided in `fire` and
  `launch`, by `selectors.owners_out_of_credit`).

The stages import one another in one direction only: dispatch <- finish <- fire, launch, sweep;
fire <- backfill; manual and retention stand alone. Lock order everywhere: trigger row, then execution row
(`finish.lock`)."""

from executions.services.backfill import BackfillReport, execution_backfill
from executions.services.credits import credit_budget_check, credit_budget_delete, credit_budget_set
from executions.services.dispatch import LAUNCH_TASK, execution_enqueue, execution_enqueue_after_commit
from executions.services.finish import (
    COMPLETION_STATUSES,
    FAILURE_STATUSES,
    ExecutionConflict,
    execution_cancel,
    execution_complete,
)
from executions.services.fire import Fire, execution_fire, execution_fire_batch
from executions.services.fleet import fleet_start_firing, fleet_stop_firing, fleet_switch
from executions.services.launch import (
    AttemptReport,
    execution_launch_attempt,
    execution_launch_batch,
    yield_to_recording,
)
from executions.services.manual import execution_rerun, execution_run_now
from executions.services.retention import execution_prune, execution_prune_history
from executions.services.sweep import PENDING_GRACE, SweepReport, execution_sweep

__all__ = [
    "COMPLETION_STATUSES",
    "FAILURE_STATUSES",
    "LAUNCH_TASK",
    "PENDING_GRACE",
    "AttemptReport",
    "BackfillReport",
    "ExecutionConflict",
    "Fire",
    "SweepReport",
    "credit_budget_check",
    "credit_budget_delete",
    "credit_budget_set",
    "execution_backfill",
    "execution_cancel",
    "execution_complete",
    "execution_enqueue",
    "execution_enqueue_after_commit",
    "execution_fire",
    "execution_fire_batch",
    "execution_launch_attempt",
    "execution_launch_batch",
    "execution_prune",
    "execution_prune_history",
    "execution_rerun",
    "execution_run_now",
    "execution_sweep",
    "fleet_start_firing",
    "fleet_stop_firing",
    "fleet_switch",
    "yield_to_recording",
]
