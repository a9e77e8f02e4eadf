"""The operators' fleet-wide stop and start (the cron service's `/worker/stop` and `/worker/start`).

A switch in the database, not a signal to processes: every fire batch reads it, so it holds across
restarts, failovers and every worker, and stopping never loses track of a slot: each one due while
stopped is recorded skipped (`stopped`), visible in the history and never run late when firing starts.
"""

from __future__ import annotations

from django.db import transaction

from executions.models import FleetSwitch
from toolkit import clock


def fleet_switch() -> FleetSwitch:
    return FleetSwitch.objects.get_or_create(pk=1)[0]


def fleet_stop_firing(*, by: str, reason: str = "") -> FleetSwitch:
    with transaction.atomic():
        switch = FleetSwitch.objects.select_for_update().get_or_create(pk=1)[0]
        switch.firing_stopped, switch.changed_at = True, clock.now()
        switch.changed_by, switch.reason = by[:150], reason[:500]
        switch.save()
    return switch


def fleet_start_firing(*, by: str) -> FleetSwitch:
    with transaction.atomic():
        switch = FleetSwitch.objects.select_for_update().get_or_create(pk=1)[0]
        switch.firing_stopped, switch.changed_at = False, clock.now()
        switch.changed_by, switch.reason = by[:150], ""
        switch.save()
    return switch
