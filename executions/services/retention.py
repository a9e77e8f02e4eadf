"""Retention: finished history older than the operator's limit goes, in short batches."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q

from executions.models import (
    FINISHED_STATUSES,
    Execution,
)
from toolkit import clock

logger = logging.getLogger(__name__)


def execution_prune(*, older_than: timedelta, dry_run: bool = False, batch_size: int = 1000) -> int:
    """Delete finished executions (and their attempts) that ended more than `older_than` ago; return how
    many (or, with `dry_run`, would be). Runs that have not ended are never pruned, whatever their age.
    Trigger counters live on the trigger, so they survive; so does the exactly-once guard, which also
    refuses slots at or before the trigger's `last_slot` (see `execution_fire`). Deleted in batches, each
    its own short transaction, so a large purge never holds long locks. Task results of the Celery
    launcher older than the cutoff go too (beat's own `backend_cleanup` does not run under our scheduler)."""
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
    from django_celery_results.models import TaskResult

    TaskResult.objects.filter(date_done__lt=cutoff).delete()
    return total
