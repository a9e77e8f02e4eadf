"""Executions: one row per run that was due (including the ones skipped, with the reason), and one row per
launch attempt. The unique (trigger, slot) key is the exactly-once guarantee for scheduled runs."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from executions.policies import SkipReason
from executions.usage import BudgetPeriod, Usage
from schedules.models import Priority, Trigger


class ExecutionStatus(models.TextChoices):
    PENDING = "pending", "Pending — recorded, not yet sent to a worker"
    WAITING = "waiting", "Waiting — held back by the overlap or concurrency policy"
    QUEUED = "queued", "Queued — launch task sent"
    RUNNING = "running", "Running — the target accepted the run"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"
    CANCELLED = "cancelled", "Cancelled"
    SKIPPED = "skipped", "Skipped — due, but a policy decided not to run it"


#: States from which nothing more happens to an execution.
FINISHED_STATUSES = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.SKIPPED,
    }
)
#: Finished runs that count against the success rate (stats, admin list, dashboard chart all agree on it).
UNSUCCESSFUL_STATUSES = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT})
#: States that count as "an earlier run is still going" for the overlap policy.
ACTIVE_STATUSES = frozenset({ExecutionStatus.PENDING, ExecutionStatus.QUEUED, ExecutionStatus.RUNNING})


class ExecutionOrigin(models.TextChoices):
    SCHEDULE = "schedule", "Schedule — fired by beat on time"
    CATCHUP = "catchup", "Catch-up — a slot missed while the fleet was down"
    MANUAL = "manual", "Manual — run now or re-run"
    TICK = "tick", "Tick — fired by the beat-less tick endpoint"
    BACKFILL = "backfill", "Backfill — a past slot run on an operator's request"


class Execution(models.Model):
    id = models.UUIDField(
        primary_key=True,
        default=uuid.uuid4,
        editable=False,
        help_text="Also the idempotency key sent to the target.",
    )
    trigger = models.ForeignKey(
        Trigger,
        on_delete=models.CASCADE,
        related_name="executions",
        # No index of its own: every (trigger, ...) index below starts with it, and each index is one more
        # entry written per slot recorded.
        db_index=False,
        help_text="The trigger this run belongs to.",
    )
    slot = models.DateTimeField(
        null=True, blank=True, help_text="Nominal scheduled instant (UTC); empty for manual runs."
    )
    fire_at = models.DateTimeField(
        null=True, blank=True, help_text="The slot plus its deterministic jitter: when it was due to start."
    )
    not_before = models.DateTimeField(
        null=True, blank=True, help_text="Launch no earlier than this (catch-up spread)."
    )
    origin = models.CharField(max_length=16, choices=ExecutionOrigin.choices, help_text="What started it.")
    status = models.CharField(
        max_length=16,
        choices=ExecutionStatus.choices,
        default=ExecutionStatus.PENDING,
        # No index of its own: (status, updated_at) and (status, created_at) serve every status filter.
        help_text="Where the run is in its life.",
    )
    skip_reason = models.CharField(
        max_length=32,
        choices=SkipReason.choices,
        blank=True,
        default="",
        help_text=(
            "Why it was skipped; on a waiting run, the limit that holds it back; on a run a window moved, "
            "deferred."
        ),
    )
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Launch attempts made so far.")
    priority = models.CharField(
        max_length=8,
        choices=Priority.choices,
        default=Priority.MEDIUM,
        help_text="Queue priority of its launch.",
    )
    input = models.JSONField(default=dict, blank=True, help_text="Snapshot of the input the run was given.")
    result = models.JSONField(null=True, blank=True, help_text="Small JSON result reported by the target.")
    run_id = models.CharField(
        max_length=200, blank=True, default="", help_text="The run id the target returned."
    )
    error = models.TextField(blank=True, default="", help_text="Last error text.")
    launched_by = models.CharField(
        max_length=100, blank=True, default="", help_text="Who or what launched it (beat, tick, user name)."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # a partial index below: scheduled runs (nearly all) have none
        help_text="The user who asked for a manual run.",
    )
    requested_at = models.DateTimeField(null=True, blank=True, help_text="When a manual run was asked for.")
    idempotency_key = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="Client key that makes a repeated manual request one run.",
    )
    rerun_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reruns",
        db_index=False,  # a partial index below: few runs repeat another
        help_text="The execution this one repeats.",
    )
    task_id = models.CharField(
        max_length=255, blank=True, default="", help_text="Celery id of the launch task."
    )
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When the launch task was sent.")
    started_at = models.DateTimeField(null=True, blank=True, help_text="When the target accepted the run.")
    finished_at = models.DateTimeField(null=True, blank=True, help_text="When the run ended.")
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True, help_text="Run time in milliseconds.")
    # What the run used, as its target reported it (sync answer, poll or callback); empty: not reported.
    credits_used = models.DecimalField(
        max_digits=18,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Credits the target reported this run used; counted against its owner's credit budget.",
    )
    input_tokens = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Input (prompt) tokens the target reported."
    )
    output_tokens = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Output (completion) tokens the target reported."
    )
    cost = models.DecimalField(
        max_digits=18,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Cost the target reported (in the currency its operator's targets agree on).",
    )
    created_at = models.DateTimeField(
        auto_now_add=True, db_index=True, help_text="When the row was recorded."
    )
    updated_at = models.DateTimeField(auto_now=True, help_text="Last change to the row.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["trigger", "slot"], condition=Q(slot__isnull=False), name="execution_one_per_slot"
            ),
            models.UniqueConstraint(
                fields=["trigger", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="execution_idempotency_key",
            ),
            models.CheckConstraint(
                name="execution_scheduled_has_slot",
                condition=Q(origin__in=["manual"]) | Q(slot__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["trigger", "status"], name="execution_trigger_status"),
            models.Index(fields=["trigger", "-slot"], name="execution_trigger_slot"),
            models.Index(fields=["status", "updated_at"], name="execution_status_updated"),
            # The history lists, newest first (keyset pages seek into these): one trigger's runs, and the
            # runs of one status (`?status=failed`, the admin's filters).
            models.Index(fields=["trigger", "created_at"], name="execution_trigger_created"),
            models.Index(fields=["status", "created_at"], name="execution_status_created"),
            models.Index(fields=["origin", "created_at"], name="execution_origin_created"),
            models.Index(fields=["run_id"], name="execution_run_id", condition=~Q(run_id="")),
            # An owner's credits used since a budget period began (`selectors.credit_standing_of`): only
            # runs that reported credits, by trigger and end, carrying the amount (index-only on PostgreSQL).
            models.Index(
                fields=["trigger", "finished_at"],
                name="execution_credits_used",
                condition=Q(credits_used__isnull=False),
                include=["credits_used"],
            ),
            # Runs that ended in a window (the dashboard's and `/api/v1/status/`'s completed and failed
            # counts): a range of this index, read without the table.
            # Partial: every question asked of it names a range of ends, so a row gets its entry when it ends
            # and none while it is recorded, queued and running.
            models.Index(
                fields=["finished_at"],
                include=["status"],
                name="execution_finished",
                condition=Q(finished_at__isnull=False),
            ),
            # The lookups behind deleting a user (SET NULL) and a repeated run's "re-runs" list: rare rows,
            # so only they are indexed (an insert of a scheduled run writes no entry here).
            models.Index(
                fields=["requested_by"],
                name="execution_requested_by",
                condition=Q(requested_by__isnull=False),
            ),
            models.Index(fields=["rerun_of"], name="execution_rerun_of", condition=Q(rerun_of__isnull=False)),
        ]

    def __str__(self) -> str:
        when = self.slot.isoformat() if self.slot else "manual"
        return f"{self.trigger_id} @ {when}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def usage(self) -> Usage | None:
        """What the run reported using, or None when it reported nothing."""
        usage = Usage(self.credits_used, self.input_tokens, self.output_tokens, self.cost)
        return None if usage.empty else usage


class AttemptOutcome(models.TextChoices):
    STARTED = "started", "Started — in flight"
    SUCCEEDED = "succeeded", "Accepted or completed by the target"
    RETRYABLE = "retryable", "Failed; will be retried"
    FAILED = "failed", "Failed; not retryable or out of attempts"
    TIMED_OUT = "timed_out", "Timed out"


class Attempt(models.Model):
    execution = models.ForeignKey(
        Execution,
        on_delete=models.CASCADE,
        related_name="attempt_set",
        help_text="The run this try belongs to.",
    )
    number = models.PositiveSmallIntegerField(help_text="1 for the first try.")
    started_at = models.DateTimeField(help_text="When this try began.")
    finished_at = models.DateTimeField(null=True, blank=True, help_text="When this try ended.")
    outcome = models.CharField(
        max_length=16,
        choices=AttemptOutcome.choices,
        default=AttemptOutcome.STARTED,
        help_text="How it ended.",
    )
    http_status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="HTTP status, if any.")
    exception = models.CharField(max_length=200, blank=True, default="", help_text="Exception type, if any.")
    error = models.TextField(blank=True, default="", help_text="Error text.")
    retry_delay_seconds = models.FloatField(
        null=True, blank=True, help_text="Delay before the next attempt, when one follows."
    )
    deadline_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=(
            "By then a live worker has recorded how this try ended (its call is bounded by the timeout); "
            "still in flight after it, the worker is provably gone and the try may be replaced."
        ),
    )
    worker = models.CharField(
        max_length=200, blank=True, default="", help_text="Host and process that made this try."
    )

    class Meta:
        ordering = ["execution", "number"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "number"], name="attempt_number_unique"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.execution_id}"


class FleetSwitch(models.Model):
    """The operators' fleet-wide stop (the cron service's `/worker/stop`): one row. While firing is
    stopped the beat still fires and every due slot is recorded skipped with reason `stopped`, so the
    history shows each one that was due and nothing runs twice or late when firing starts again."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    firing_stopped = models.BooleanField(default=False, help_text="Due slots are recorded skipped, not run.")
    changed_at = models.DateTimeField(null=True, blank=True, help_text="When the switch last changed.")
    changed_by = models.CharField(max_length=150, blank=True, default="", help_text="Who changed it.")
    reason = models.CharField(max_length=500, blank=True, default="", help_text="Why firing was stopped.")

    class Meta:
        verbose_name = "fleet switch"

    def __str__(self) -> str:
        return "firing stopped" if self.firing_stopped else "firing"


class CreditBudget(models.Model):
    """An operator's allowance of credits for one user (the agent task queue's `monthlyCredits`): runs
    report the credits they used, and once an owner's runs have used the budget of the current period, a
    run of theirs that is due is recorded `skipped` (`credits_exhausted`) instead of launched. No row: no
    budget, nothing is held back. Set through `services.credit_budget_set` (admin, API)."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="credit_budget",
        help_text="The user whose runs this budget covers.",
    )
    credits = models.DecimalField(
        max_digits=18,
        decimal_places=6,
        help_text="Credits this user's runs may use per period (0 stops every run).",
    )
    period = models.CharField(
        max_length=8,
        choices=BudgetPeriod.choices,
        blank=True,
        default=BudgetPeriod.MONTH,
        help_text="When the allowance starts again (UTC); empty: never (counted since it was set or reset).",
    )
    counted_from = models.DateTimeField(
        help_text="Credits used before this are not counted (set when the budget is created or reset)."
    )
    note = models.CharField(max_length=500, blank=True, default="", help_text="Why this budget was set.")
    updated_at = models.DateTimeField(auto_now=True, help_text="Last change.")

    class Meta:
        verbose_name = "credit budget"

    def __str__(self) -> str:
        return f"credit budget of {self.owner}"
