"""Execution statistics for one trigger, one owner's triggers, or everything.

The counts, average and last run come from one aggregate query. Percentiles use PostgreSQL's
`percentile_cont` inside that same query; SQLite has no ordered-set aggregates, so there each percentile
is one indexed `ORDER BY duration_ms LIMIT 2 OFFSET k` read, interpolated exactly as `percentile_cont`
does, so both databases give the same figures.

Definitions (what a dashboard reader needs to know):

* `total` — every execution in scope, skipped and unfinished ones included;
* `successful` — `succeeded`; `failed` — `failed` plus `timed_out`; `skipped` — `skipped`;
* `successRate` — percent of `successful / (successful + failed)`, one decimal; None when nothing has
  finished yet. Cancelled and skipped runs say nothing about the workflow's health, so they are left out;
* durations (ms) — over runs that ended succeeded/failed/timed out and have a duration;
* `creditsUsed`, `inputTokens`, `outputTokens`, `cost` — sums of the usage runs reported (0 when none did);
* `lastRunAt` — latest start of a run; `nextRunAt` — the trigger's next slot (for an owner or everything:
  the soonest next slot among active triggers).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, cast

from django.db import connection
from django.db.models import Aggregate, Avg, Count, FloatField, Max, Min, Q, QuerySet, Sum

from executions.models import UNSUCCESSFUL_STATUSES, Execution, ExecutionStatus
from schedules.models import Trigger

_FAILED = tuple(UNSUCCESSFUL_STATUSES)
_TIMED = Q(status__in=(ExecutionStatus.SUCCEEDED, *_FAILED), duration_ms__isnull=False)
PERCENTILES = {"p50DurationMs": 0.5, "p95DurationMs": 0.95}
#: Usage summed over the runs in scope (what targets reported; `executions.usage`).
USAGE_SUMS = {
    "creditsUsed": "credits_used", "inputTokens": "input_tokens", "outputTokens": "output_tokens",
    "cost": "cost",
}  # fmt: skip


class PercentileCont(Aggregate):
    """PostgreSQL's continuous percentile (linear interpolation between the two nearest ranks)."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, fraction: float, **extra: Any) -> None:
        if not 0 <= fraction <= 1:
            raise ValueError("fraction must be within [0, 1]")
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def _scope(*, trigger: Trigger | None, owner: Any, since: datetime | None) -> QuerySet[Execution]:
    rows = Execution.objects.all()
    if trigger is not None:
        rows = rows.filter(trigger=trigger)
    if owner is not None:
        rows = rows.filter(trigger__owner=owner)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    return rows


def _percentile_by_offset(rows: QuerySet[Execution], count: int, fraction: float) -> float | None:
    if count == 0:
        return None
    position = fraction * (count - 1)
    low = math.floor(position)
    # The caller passes rows filtered by _TIMED (duration_ms__isnull=False), so no value is None.
    values = cast(
        list[int], list(rows.order_by("duration_ms").values_list("duration_ms", flat=True)[low : low + 2])
    )
    if len(values) == 1 or position == low:
        return float(values[0])
    return values[0] + (values[1] - values[0]) * (position - low)


def _ms(value: float | None) -> int | None:
    return None if value is None else round(value)


def trigger_stats(
    *, trigger: Trigger | None = None, owner: Any = None, since: datetime | None = None
) -> dict:
    """Statistics of the executions in scope (a trigger, an owner's triggers, or all; optionally only those
    recorded since `since`). Keys are camelCase, ready for the API."""
    rows = _scope(trigger=trigger, owner=owner, since=since)
    on_postgres = connection.vendor == "postgresql"
    aggregates: dict[str, Aggregate] = {
        "total": Count("pk"),
        "successful": Count("pk", filter=Q(status=ExecutionStatus.SUCCEEDED)),
        "failed": Count("pk", filter=Q(status__in=_FAILED)),
        "skipped": Count("pk", filter=Q(status=ExecutionStatus.SKIPPED)),
        "timed": Count("pk", filter=_TIMED),
        "avgDurationMs": Avg("duration_ms", filter=_TIMED),
        "lastRunAt": Max("started_at"),
        **{key: Sum(field) for key, field in USAGE_SUMS.items()},
    }
    if on_postgres:
        aggregates.update(
            {key: PercentileCont("duration_ms", p, filter=_TIMED) for key, p in PERCENTILES.items()}
        )
    figures = rows.aggregate(**aggregates)
    if not on_postgres:
        timed_rows = rows.filter(_TIMED)
        for key, fraction in PERCENTILES.items():
            figures[key] = _percentile_by_offset(timed_rows, figures["timed"], fraction)
    finished = figures["successful"] + figures["failed"]
    if trigger is not None:
        next_run_at = trigger.next_run_at
    else:
        active = Trigger.objects.active()
        if owner is not None:
            active = active.filter(owner=owner)
        next_run_at = active.aggregate(soonest=Min("next_run_at"))["soonest"]
    return {
        "total": figures["total"],
        "successful": figures["successful"],
        "failed": figures["failed"],
        "skipped": figures["skipped"],
        "successRate": round(100 * figures["successful"] / finished, 1) if finished else None,
        "avgDurationMs": _ms(figures["avgDurationMs"]),
        "p50DurationMs": _ms(figures["p50DurationMs"]),
        "p95DurationMs": _ms(figures["p95DurationMs"]),
        "lastRunAt": figures["lastRunAt"],
        "nextRunAt": next_run_at,
        "creditsUsed": float(figures["creditsUsed"] or 0),
        "inputTokens": int(figures["inputTokens"] or 0),
        "outputTokens": int(figures["outputTokens"] or 0),
        "cost": float(figures["cost"] or 0),
    }
