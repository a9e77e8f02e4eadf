"""Trigger states that take the execution side to reach, reached through the service it calls."""

from __future__ import annotations

from django.db import transaction

from schedules import services
from schedules.models import Trigger
from toolkit import clock


def run_out(trigger: Trigger) -> Trigger:
    """Record a one-off trigger's only slot as started, as the fire path does, which completes it."""
    assert trigger.kind == "once"
    assert trigger.run_at is not None
    with transaction.atomic():
        locked = Trigger.objects.select_for_update().get(pk=trigger.pk)
        services.trigger_record_slots(
            trigger=locked, through=trigger.run_at, started=1, last_status="pending", now=clock.now()
        )
    return Trigger.objects.get(pk=trigger.pk)
