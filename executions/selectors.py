"""Reads of executions that the services decide by (and that must stay cheap: the fire path calls them with
the trigger row locked). Services change state; selectors only read it."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from django.db.models import (
    BooleanField,
    Case,
    Count,
    DecimalField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest

from executions import usage
from executions.models import (
    ACTIVE_STATUSES,
    Attempt,
    AttemptOutcome,
    CreditBudget,
    Execution,
    ExecutionStatus,
    FleetSwitch,
    SkipReason,
)
from schedules import selectors as schedule_selectors
from schedules.models import Trigger
from schedules.selectors import Limits


def concurrency_limit_reached(trigger: Trigger, limits: Limits | None = None) -> SkipReason | None:
    """Which concurrency limit holds a new run of `trigger` back, or None: its owner's limit of runs at
    once, then the limit of runs of one workflow (both per user in `OwnerLimits`, defaults from the
    environment). The value is what a waiting row records as its reason."""
    limits = limits or schedule_selectors.limits_for(trigger.owner_id)
    owner_cap, workflow_cap = limits.max_concurrent_runs, limits.max_concurrent_per_workflow
    if owner_cap > 0 and owners_active({trigger.owner_id}).get(trigger.owner_id, 0) >= owner_cap:
        return SkipReason.OWNER_LIMIT
    key = (trigger.owner_id, trigger.workflow_id)
    if workflow_cap > 0 and workflows_active({key}).get(key, 0) >= workflow_cap:
        return SkipReason.WORKFLOW_LIMIT
    return None


def recorded_slots(trigger: Trigger, candidates: list[datetime]) -> set[datetime]:
    """Which of `candidates` already have an execution (the unique key's side of catch-up)."""
    rows = Execution.objects.filter(trigger=trigger, slot__in=candidates).values_list("slot", flat=True)
    return {slot for slot in rows if slot is not None}


class SlotRow(NamedTuple):
    pk: uuid.UUID
    status: str
    skip_reason: str


def executions_at_slots(trigger: Trigger, slots: Sequence[datetime]) -> dict[datetime, SlotRow]:
    """The execution recorded at each of `slots` that has one (what a backfill leaves alone)."""
    found: dict[datetime, SlotRow] = {}
    for start in range(0, len(slots), 1000):  # a bounded IN list per query
        rows = Execution.objects.filter(trigger=trigger, slot__in=slots[start : start + 1000]).values_list(
            "slot", "pk", "status", "skip_reason"
        )
        for slot, pk, status, skip_reason in rows:
            if slot is not None:
                found[slot] = SlotRow(pk, status, skip_reason)
    return found


def running_and_waiting_of(
    trigger_ids: Sequence[uuid.UUID],
) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, int]]:
    """Each trigger's active and waiting runs (what the overlap policy decides by), in one grouped query:
    {trigger: active}, {trigger: waiting}."""
    running: dict[uuid.UUID, int] = {}
    waiting: dict[uuid.UUID, int] = {}
    if not trigger_ids:
        return running, waiting
    rows = (
        Execution.objects.filter(
            trigger_id__in=trigger_ids, status__in=[*ACTIVE_STATUSES, ExecutionStatus.WAITING]
        )
        .order_by()
        .values_list("trigger_id", "status")
        .annotate(n=Count("pk"))
    )
    for trigger_id, status, n in rows:
        into = waiting if status == ExecutionStatus.WAITING else running
        into[trigger_id] = into.get(trigger_id, 0) + n
    return running, waiting


def owners_active(owner_ids: Iterable[int]) -> dict[int, int]:
    """Active runs per owner (for the per-owner concurrency limit). Callers pass only owners that have a
    limit, so nothing is read when no one has one."""
    owners = sorted(set(owner_ids))
    if not owners:
        return {}
    rows = (
        Execution.objects.filter(trigger__owner_id__in=owners, status__in=ACTIVE_STATUSES)
        .order_by()
        .values_list("trigger__owner_id")
        .annotate(n=Count("pk"))
    )
    return {owner: n for owner, n in rows}


def workflows_active(keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """Active runs per (owner, workflow id), for the per-workflow concurrency limit; one grouped query."""
    pairs = set(keys)
    if not pairs:
        return {}
    owners = {owner for owner, _wf in pairs}
    workflows = {wf for _owner, wf in pairs}
    rows = (
        Execution.objects.filter(
            trigger__owner_id__in=owners, trigger__workflow_id__in=workflows, status__in=ACTIVE_STATUSES
        )
        .order_by()
        .values_list("trigger__owner_id", "trigger__workflow_id")
        .annotate(n=Count("pk"))
    )
    return {(owner, wf): n for owner, wf, n in rows if (owner, wf) in pairs}


def taken_slots(
    trigger_ids: Sequence[uuid.UUID], slots: Iterable[datetime]
) -> set[tuple[uuid.UUID, datetime]]:
    """Which (trigger, slot) pairs among these triggers and slots already have an execution."""
    rows = Execution.objects.filter(trigger_id__in=trigger_ids, slot__in=set(slots)).values_list(
        "trigger_id", "slot"
    )
    return {(trigger_id, slot) for trigger_id, slot in rows if slot is not None}


def last_runs(trigger: Trigger, *, limit: int = 10) -> list[Execution]:
    """The trigger's latest recorded runs, newest first (scheduled, backfilled, manual alike)."""
    return list(Execution.objects.filter(trigger=trigger).order_by("-created_at", "-slot")[:limit])


def firing_stopped() -> bool:
    """Whether the operators' fleet-wide stop is on: one primary-key read per fire batch."""
    return FleetSwitch.objects.filter(pk=1, firing_stopped=True).exists()


#: How many of its newest runs a trigger's page draws in its run-history strip.
STRIP_RUNS = 50


def run_strip(trigger: Trigger, *, limit: int = STRIP_RUNS) -> list[Execution]:
    """The trigger's newest `limit` runs, oldest first (the strip reads left to right like a timeline): one
    query on the (trigger, created_at) index, only the columns a cell shows."""
    rows = (
        Execution.objects.filter(trigger=trigger)
        .order_by("-created_at", "-pk")
        .only("pk", "trigger_id", "slot", "status", "skip_reason", "origin", "created_at", "requested_at")
    )
    return list(rows[:limit])[::-1]


#: Queued or running states that a run can be stuck in.
STUCK_STATUSES = (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)


def with_stuck(queryset: QuerySet, *, now: datetime) -> QuerySet:
    """`queryset` with a boolean `stuck` on each row: queued or running past its trigger's timeout (counted
    from when it started, else was sent, else last changed), or with an attempt in flight past its
    deadline. The sweeper should have timed such a run out, requeued or retried it by now, so an operator
    should look. An expression, so a list flags its rows in the query it already makes, and
    `.filter(stuck=True)` lists only them."""
    timeout = ExpressionWrapper(
        F("trigger__timeout_seconds") * Value(timedelta(seconds=1)), output_field=DurationField()
    )
    late_attempt = Attempt.objects.filter(
        execution=OuterRef("pk"), outcome=AttemptOutcome.STARTED, deadline_at__lt=now
    )
    overdue = Q(_stuck_after__lt=now) | Q(Exists(late_attempt))
    return queryset.alias(_stuck_after=Coalesce("started_at", "queued_at", "updated_at") + timeout).annotate(
        stuck=Case(
            When(Q(status__in=STUCK_STATUSES) & overdue, then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        )
    )


def blocking_run(execution: Execution) -> Execution | None:
    """For a slot skipped because an earlier run was still going: that run — the trigger's latest run
    recorded before this one that had not ended when this one was decided (skips and waiting rows never
    block). Not stored on the row: derived when the page is shown, one query on (trigger, created_at)."""
    if execution.skip_reason != SkipReason.OVERLAP:
        return None
    decided = execution.finished_at or execution.created_at
    return (
        Execution.objects.filter(trigger_id=execution.trigger_id, created_at__lte=execution.created_at)
        .exclude(pk=execution.pk)
        .exclude(status__in=[ExecutionStatus.SKIPPED, ExecutionStatus.WAITING])
        .filter(Q(finished_at__isnull=True) | Q(finished_at__gte=decided))
        .order_by("-created_at")
        .first()
    )


@dataclasses.dataclass(frozen=True)
class CreditStanding:
    """One owner's credit budget as it stands: the allowance, what their runs used since `since` (the
    start of the current period, or the budget's reset when later), and when the period ends."""

    owner_id: int
    credits: Decimal
    period: str
    since: datetime
    used: Decimal
    period_ends: datetime | None
    note: str = ""

    @property
    def left(self) -> Decimal:
        return max(Decimal(0), self.credits - self.used)

    @property
    def exhausted(self) -> bool:
        """No credit left: a run of this owner that is due is skipped (`credits_exhausted`), not launched."""
        return self.used >= self.credits


def budgets_with_usage(budgets: QuerySet[CreditBudget], *, now: datetime) -> QuerySet[CreditBudget]:
    """`budgets` annotated with `since` (the start of what counts: the current period's start, or the
    budget's reset when later) and `used` (the credits their owner's runs reported since then), in the same
    query: a subquery sums the runs over the partial index of runs that reported credits. Used in the
    current period means ended in it (`finished_at`), which is when a run's usage is known."""
    period_began = Case(
        *(When(period=p, then=Value(usage.period_start(p, now))) for p in usage.BudgetPeriod.values),
        default=F("counted_from"),
    )
    spent = (
        Execution.objects.filter(
            trigger__owner_id=OuterRef("owner_id"),
            credits_used__isnull=False,
            finished_at__gte=OuterRef("since"),
        )
        .order_by()
        .values("trigger__owner_id")
        .annotate(total=Sum("credits_used"))
        .values("total")
    )
    amount = DecimalField(max_digits=18, decimal_places=6)
    return budgets.annotate(since=Greatest(F("counted_from"), period_began)).annotate(
        used=Coalesce(Subquery(spent, output_field=amount), Value(Decimal(0)), output_field=amount)
    )


def standing(budget: CreditBudget, *, now: datetime) -> CreditStanding:
    """A budget row read through `budgets_with_usage` as its standing."""
    return CreditStanding(
        owner_id=budget.owner_id,
        credits=budget.credits,
        period=budget.period,
        since=budget.since,  # type: ignore[attr-defined] # the annotations of budgets_with_usage
        used=Decimal(budget.used),  # type: ignore[attr-defined]
        period_ends=usage.period_end(budget.period, now),
        note=budget.note,
    )


def credit_standing_of(owner_ids: Iterable[int], *, now: datetime) -> dict[int, CreditStanding]:
    """The standing of each of these owners that has a budget (one with none is absent: unlimited), in one
    query (`budgets_with_usage`)."""
    owners = sorted(set(owner_ids))
    if not owners:
        return {}
    rows = budgets_with_usage(CreditBudget.objects.filter(owner_id__in=owners), now=now)
    return {row.owner_id: standing(row, now=now) for row in rows}


def owners_out_of_credit(owner_ids: Iterable[int], *, now: datetime) -> set[int]:
    """Which of these owners have used their whole credit budget: one grouped read, for a whole fire or
    launch batch (owners without a budget are never out of credit)."""
    return {owner for owner, standing in credit_standing_of(owner_ids, now=now).items() if standing.exhausted}
