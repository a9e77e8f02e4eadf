"""Fires never wait behind launches: the worker roles as Procfile.dev starts them (the prefork `worker`
recording fires, the threaded `launcher` making launch attempts) and a real beat, with every launch thread
held by slow runs. A slot of another trigger that comes due meanwhile is recorded on time, and its launch
starts as soon as a launch thread frees."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from celery import current_app as app

from executions import services
from executions.models import Execution
from schedules import services as trigger_services
from tests.support.procs import Fleet, wait_for
from tests.unit.test_project_files import procfile
from toolkit import clock

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

#: The demo target's "slow" workflow is 20 s at speed 1: 3 s here.
SPEED = 0.15
TARGETS = {"demo": {"kind": "demo", "speed": SPEED}}


def start_role(processes: Fleet, role: str, **env: str) -> None:
    """The role's Procfile.dev command, as `make run` runs it (through a shell, from the project root)."""
    command = procfile("Procfile.dev")[role]
    processes.start(role, ["bash", "-c", command], **env)


def test_a_slot_is_recorded_on_time_while_every_launch_thread_is_busy(
    processes: Fleet, redis_client: redis.Redis, user, settings
):
    settings.SCHEDULER_TARGETS = TARGETS  # this process registers the triggers; the fleet gets the env below
    env = {"SCHEDULER_TARGETS": json.dumps(TARGETS), "LAUNCHER_CONCURRENCY": "2", "WORKER_CONCURRENCY": "1"}
    for role in ("worker", "launcher", "beat"):
        start_role(processes, role, **env)
    wait_for(lambda: redis_client.exists(app.conf.redbeat_lock_key), timeout=60, what="the beat to lead")
    wait_for(
        lambda: (
            {"worker", "launcher"}
            <= {name.split("@")[0] for reply in (app.control.ping(timeout=0.5) or []) for name in reply}
        ),
        timeout=60,
        what="the worker and the launcher to answer a ping",
    )
    slow = trigger_services.trigger_register(
        owner=user, name="slow", workflow_id="slow", target="demo", cron_expression="0 0 1 1 *",
        overlap_policy="allow", timeout_seconds=60,
    )  # fmt: skip
    busy = [services.execution_run_now(trigger=slow) for _ in range(2)]
    wait_for(
        lambda: Execution.objects.filter(pk__in=[e.pk for e in busy], started_at__isnull=False).count() == 2,
        timeout=20,
        what="both launch threads to hold a slow run",
    )

    due = (clock.now() + timedelta(seconds=2)).replace(microsecond=0)
    quick = trigger_services.trigger_register(
        owner=user, name="quick", workflow_id="hello", target="demo", kind="once", run_at=due
    )

    run = wait_for(
        lambda: Execution.objects.filter(trigger=quick).first(), timeout=30, what="the slot to be recorded"
    )
    slow_ends = wait_for(
        lambda: sorted(
            e.finished_at for e in Execution.objects.filter(pk__in=[b.pk for b in busy]) if e.finished_at
        ),
        timeout=30,
        what="a slow run to end",
    )
    run = wait_for(
        lambda: (row := Execution.objects.get(pk=run.pk)).started_at and row, timeout=30, what="its launch"
    )
    assert run.slot == due
    recorded_late = (run.created_at - run.fire_at).total_seconds()
    assert recorded_late <= 1.0, f"recorded {recorded_late:.2f} s after its slot, behind no launch"
    first_free = slow_ends[0]
    assert run.started_at >= first_free - timedelta(milliseconds=50), "no launch thread was free before"
    waited = (run.started_at - first_free).total_seconds()
    assert waited <= 1.0, f"launched {waited:.2f} s after a launch thread freed"
    assert run.created_at < first_free, "it was recorded while every launch thread was busy"
