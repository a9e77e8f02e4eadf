"""Manual runs (run now, re-run): no slot, an optional idempotency key unique per trigger."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from executions.models import (
    Execution,
    ExecutionOrigin,
    ExecutionStatus,
)
from executions.services.dispatch import execution_enqueue_after_commit
from schedules import services as trigger_services
from schedules import validation
from schedules.models import Trigger
from toolkit import clock, metrics

logger = logging.getLogger(__name__)


def _clean_idempotency_key(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or "\x00" in value or len(value.strip()) > 200:
        raise ValidationError({"idempotency_key": ["must be text of at most 200 characters"]})
    return value.strip()


def execution_run_now(
    *, trigger: Trigger, input: Any = None, idempotency_key: str | None = None, requested_by: Any = None
) -> Execution:
    """Start a manual run of `trigger` now (no slot). With an idempotency key, asking twice — a double
    click, a client retrying a timed-out request — returns the first execution; the unique
    (trigger, idempotency_key) constraint settles concurrent requests. `input` (a JSON object) replaces the
    trigger's input for this run only. Manual runs are explicit, so the overlap policy does not hold them
    back; they do count as running for the scheduled slots that follow."""
    key = _clean_idempotency_key(idempotency_key)
    payload = trigger.input if input is None else validation.clean_fields({"input": input})["input"]
    return _create_manual(trigger_id=trigger.pk, input=payload, key=key, requested_by=requested_by)


def execution_rerun(*, execution: Execution, requested_by: Any = None) -> Execution:
    """A new manual run with the same input, pointing at the run it repeats (`rerun_of`). Only a run that has
    ended (or was skipped) can be re-run: re-running one still going would be a second concurrent copy."""
    original = Execution.objects.get(pk=execution.pk)
    if not original.is_finished:
        raise ValidationError(
            {"execution": [f"only a finished run can be re-run; this one is {original.status}"]}
        )
    return _create_manual(
        trigger_id=original.trigger_id,
        input=original.input,
        key="",
        requested_by=requested_by,
        rerun_of=original,
    )


def _create_manual(
    *, trigger_id: uuid.UUID, input: Any, key: str, requested_by: Any, rerun_of: Execution | None = None
) -> Execution:
    now = clock.now()
    with transaction.atomic():
        trigger = Trigger.objects.select_for_update().get(pk=trigger_id)
        if trigger.deleted_at is not None:
            raise ValidationError({"trigger": ["a deleted trigger cannot run"]})
        if key:
            existing = Execution.objects.filter(trigger=trigger, idempotency_key=key).first()
            if existing is not None:
                return existing
        execution = Execution(
            trigger=trigger,
            origin=ExecutionOrigin.MANUAL,
            status=ExecutionStatus.PENDING,
            priority=trigger.priority,
            input=input,
            requested_by=requested_by,
            requested_at=now,
            idempotency_key=key,
            rerun_of=rerun_of,
            launched_by=(requested_by.get_username() if requested_by is not None else "manual")[:100],
        )
        try:
            with transaction.atomic():
                execution.save(force_insert=True)
        except IntegrityError:
            if not key:
                raise
            return Execution.objects.get(trigger=trigger, idempotency_key=key)  # a concurrent request won
        action = f"Re-run of {rerun_of.pk}" if rerun_of is not None else "Run now"
        trigger_services.trigger_record_action(
            trigger=trigger, action=f"{action} (execution {execution.pk})", actor=requested_by
        )
        execution_enqueue_after_commit(execution)
    metrics.runs_recorded([execution])
    return execution
