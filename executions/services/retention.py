"""Retention: finished history older than the operator's limit goes, in short batches."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.db import transaction
from django.db.models import Q

from executions.models import (
    FINISHED_STATUSES,
    UNSUCCESSFUL_STATUSES,
    Execution,
    ExecutionStatus,
)
from schedules.models import Trigger
from toolkit import clock

logger = logging.getLogger(__name__)

#: Told (rows deleted so far, total or None) after each batch.
Progress = Callable[[int, int | None], None]


def execution_prune(
    *,
    older_than: timedelta,
    dry_run: bool = False,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> int:
    """Delete finished executions (and their attempts) that ended more than `older_than` ago; return how
    many (or, with `dry_run`, would be). Runs that have not ended are never pruned, whatever their age.
    Trigger counters live on the trigger, so they survive; so does the exactly-once guard, which also
    refuses slots at or before the trigger's `last_slot` (see `execution_fire`). Deleted in batches, each
    its own short transaction, so a large purge never holds long locks. Task results of the Celery
    launcher older than the cutoff go too (beat's own `backend_cleanup` does not run under our scheduler).
    `progress(deleted so far, None)` is called after each batch (the CLI's bar; no total: counting first
    would cost as much as a dry run)."""
    cutoff = clock.now() - older_than
    old = Execution.objects.filter(status__in=FINISHED_STATUSES).filter(
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
    )
    if dry_run:
        return old.count()
    total = 0
    while ids := list(old.values_list("pk", flat=True)[:batch_size]):
        with transaction.atomic():
            Execution.objects.filter(pk__in=ids).delete()
        total += len(ids)
        if progress is not None:
            progress(total, None)
    from django_celery_results.models import TaskResult

    TaskResult.objects.filter(date_done__lt=cutoff).delete()
    return total


#: The history limits of a trigger: its field, and the finished states it keeps the latest N of.
HISTORY_LIMITS = (
    ("keep_succeeded", frozenset({ExecutionStatus.SUCCEEDED})),
    ("keep_failed", UNSUCCESSFUL_STATUSES),
)


def execution_prune_history(
    *, dry_run: bool = False, batch_size: int = 1000, progress: Progress | None = None
) -> int:
    """Per-trigger history limits (`keep_succeeded`, `keep_failed`): of each trigger that sets one, delete
    its succeeded (or failed and timed-out) runs beyond the newest N, newest by when they were recorded;
    return how many (or, with `dry_run`, would be). Only those finished states are ever selected, so a run
    still going is never deleted, and skipped and cancelled runs are left to the age retention. Deleted in
    batches of `batch_size`, each its own short transaction, reading the next batch after the N kept
    (the (trigger, created_at) index serves it), so a trigger with a million old runs never holds a long
    lock. Counters and the exactly-once fence live on the trigger and survive, as with age retention."""
    limited = Trigger.objects.filter(Q(keep_succeeded__isnull=False) | Q(keep_failed__isnull=False))
    total = 0
    for trigger_id, *keeps in limited.order_by("pk").values_list("pk", *(f for f, _s in HISTORY_LIMITS)):
        for keep, (_field, statuses) in zip(keeps, HISTORY_LIMITS, strict=True):
            if keep is None:
                continue
            rows = Execution.objects.filter(trigger_id=trigger_id, status__in=statuses).order_by(
                "-created_at", "-pk"
            )
            if dry_run:
                total += max(0, rows.count() - keep)
                continue
            while ids := list(rows.values_list("pk", flat=True)[keep : keep + batch_size]):
                with transaction.atomic():
                    # The status is checked again as it is deleted: a row that changed state meanwhile stays.
                    Execution.objects.filter(pk__in=ids, status__in=statuses).delete()
                total += len(ids)
                if progress is not None:
                    progress(total, None)
                if len(ids) < batch_size:
                    break
    if total:
        logger.info("history limits: %s %d execution(s)", "would delete" if dry_run else "deleted", total)
    return total
