"""Reads of executions that the services decide by (and that must stay cheap: the fire path calls them with
the trigger row locked). Services change state; selectors only read it."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from executions.models import ACTIVE_STATUSES, Execution, ExecutionStatus
from schedules.models import Trigger


def running_and_waiting(trigger: Trigger) -> tuple[int, int]:
    rows = Execution.objects.filter(trigger=trigger)
    running = rows.filter(status__in=ACTIVE_STATUSES).count()
    waiting = rows.filter(status=ExecutionStatus.WAITING).count()
    return running, waiting


def owner_at_limit(trigger: Trigger) -> bool:
    limit = settings.SCHEDULER_MAX_CONCURRENT_PER_OWNER
    if limit <= 0:
        return False
    active = Execution.objects.filter(trigger__owner_id=trigger.owner_id, status__in=ACTIVE_STATUSES).count()
    return active >= limit


def recorded_slots(trigger: Trigger, candidates: list[datetime]) -> set[datetime]:
    """Which of `candidates` already have an execution (the unique key's side of catch-up)."""
    rows = Execution.objects.filter(trigger=trigger, slot__in=candidates).values_list("slot", flat=True)
    return {slot for slot in rows if slot is not None}
