"""No rows after a trigger's end, against the real database and Redis: fires queued behind the run that
completes a `max_runs: 2` trigger (the worker busy, the beat entry not yet removed), caught-up slots past
the limit, slots past `end_at` and backfilled slots past the limit record nothing at all — only the
`scheduler_slots_after_end` counter in Redis says they came. The clock is frozen; fires arrive as the
worker's tasks receive them (`executions.fire` and `executions.fire_batch`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from executions import tasks
from executions.models import Execution, ExecutionStatus
from executions.services import execution_backfill, execution_complete
from scheduler_project.celery import app
from schedules import services
from schedules.beat.entries import Keys
from schedules.models import Trigger, TriggerStatus
from toolkit import metrics

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def rows(trigger: Trigger) -> list[tuple[datetime, str, str]]:
    found = Execution.objects.filter(trigger=trigger).order_by("slot")
    return [(e.slot, e.status, e.skip_reason) for e in found]


def after_end_counter(redis_client) -> int:
    return int(redis_client.hget(metrics.counters_key(), metrics.counter_field(metrics.AFTER_END)) or 0)


def scheduled(redis_client, trigger: Trigger) -> bool:
    """Whether the trigger's beat entry is in the beat's schedule (a disabled entry leaves the zset)."""
    keys = Keys.of(app)
    return redis_client.zscore(keys.schedule, keys.entry(trigger.pk)) is not None


def fire_one(trigger: Trigger, slot: datetime) -> None:
    tasks.fire(str(trigger.pk), slot.isoformat())


def fire_many(trigger: Trigger, slots: list[datetime]) -> None:
    tasks.fire_batch([[str(trigger.pk), slot.isoformat(), "schedule"] for slot in slots])


@pytest.fixture
def make(user, frozen_clock, redis_client, django_capture_on_commit_callbacks):
    """A trigger every minute, registered just before T0, with its beat entry written to Redis."""
    frozen_clock.set(T0 - timedelta(seconds=30))

    def build(**fields) -> Trigger:
        values = {"name": "two", "workflow_id": "wf", "cron_expression": "* * * * *", **fields}
        with django_capture_on_commit_callbacks(execute=True):
            trigger = services.trigger_register(owner=user, **values)
        assert scheduled(redis_client, trigger)
        return trigger

    return build


def running(trigger: Trigger, slot: datetime) -> Execution:
    """The run of `slot` accepted by its target and still going (the worker is busy with it)."""
    execution = Execution.objects.get(trigger=trigger, slot=slot)
    Execution.objects.filter(pk=execution.pk).update(status=ExecutionStatus.RUNNING, started_at=slot)
    execution.refresh_from_db()
    return execution


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batch"])
def test_fires_queued_behind_the_completing_run_record_nothing(
    make, frozen_clock, redis_client, django_capture_on_commit_callbacks, batched
):
    trigger = make(max_runs=2, overlap_policy="allow")
    slots = [minute(n) for n in range(8)]
    frozen_clock.set(minute(7) + timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        if batched:
            fire_many(trigger, slots)
        else:
            for slot in slots:
                fire_one(trigger, slot)
    # Both runs were sent on commit (to this run's own broker database): queued, not skipped.
    assert rows(trigger) == [(minute(0), "queued", ""), (minute(1), "queued", "")]
    trigger.refresh_from_db()
    assert (trigger.status, trigger.run_count, trigger.next_run_at) == (TriggerStatus.COMPLETED, 2, None)
    assert not scheduled(redis_client, trigger), "the beat entry left the schedule on commit"
    assert after_end_counter(redis_client) == 6
    # The same fires again (a redelivery, a stale reserve): two duplicates, six after the end.
    fire_many(trigger, slots)
    assert len(rows(trigger)) == 2
    assert after_end_counter(redis_client) == 12


def test_a_skip_trigger_records_its_overlaps_until_its_last_run_and_nothing_after(
    make, frozen_clock, redis_client
):
    trigger = make(max_runs=2, overlap_policy="skip")
    frozen_clock.set(minute(0))
    fire_one(trigger, minute(0))
    first = running(trigger, minute(0))
    for n in (1, 2):  # fires queued while the first run is still going
        frozen_clock.set(minute(n))
        fire_one(trigger, minute(n))
    frozen_clock.set(minute(2) + timedelta(seconds=30))
    execution_complete(execution=first, status=ExecutionStatus.SUCCEEDED)
    for n in (3, 4, 5):
        frozen_clock.set(minute(n))
        fire_one(trigger, minute(n))
    assert rows(trigger) == [
        (minute(0), "succeeded", ""),
        (minute(1), "skipped", "overlap"),
        (minute(2), "skipped", "overlap"),
        (minute(3), "queued", ""),
    ]
    assert Trigger.objects.get(pk=trigger.pk).status == TriggerStatus.COMPLETED
    assert after_end_counter(redis_client) == 2


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batch"])
def test_a_queue_trigger_counts_its_waiting_slots_against_max_runs(make, frozen_clock, redis_client, batched):
    """Waiting slots are runs to come: with `queue` and the first run still going, the second slot waits,
    and the later ones are after the end — before, each waited and ran, far past the limit."""
    trigger = make(max_runs=2, overlap_policy="queue")
    frozen_clock.set(minute(0))
    fire_one(trigger, minute(0))
    first = running(trigger, minute(0))
    frozen_clock.set(minute(5))
    later = [minute(n) for n in range(1, 6)]
    if batched:
        fire_many(trigger, later)
    else:
        for slot in later:
            fire_one(trigger, slot)
    assert rows(trigger) == [(minute(0), "running", ""), (minute(1), "waiting", "")]
    assert Trigger.objects.get(pk=trigger.pk).status == TriggerStatus.COMPLETED
    execution_complete(execution=first, status=ExecutionStatus.SUCCEEDED)
    second = Execution.objects.get(trigger=trigger, slot=minute(1))
    assert second.status == ExecutionStatus.PENDING, "the waiting slot still runs: it came before the end"
    execution_complete(execution=running(trigger, minute(1)), status=ExecutionStatus.SUCCEEDED)
    assert [r[1] for r in rows(trigger)] == ["succeeded", "succeeded"]
    assert after_end_counter(redis_client) == 4


def test_catch_up_past_max_runs_records_nothing_after_the_last_run(make, frozen_clock, redis_client):
    trigger = make(max_runs=2, overlap_policy="allow", catchup_policy="fire_immediately")
    frozen_clock.set(minute(0))
    fire_one(trigger, minute(0))
    frozen_clock.set(minute(5) + timedelta(seconds=1))  # slots 1..4 missed while the fleet was down
    fire_one(trigger, minute(5))
    assert [(slot, status) for slot, status, _ in rows(trigger)] == [
        (minute(0), "queued"),
        (minute(1), "queued"),
    ]
    assert after_end_counter(redis_client) == 4


def test_slots_past_end_at_record_nothing(make, frozen_clock, redis_client):
    trigger = make(end_at=minute(2) + timedelta(seconds=30), overlap_policy="allow", catchup_policy="none")
    frozen_clock.set(minute(0))
    fire_one(trigger, minute(0))
    frozen_clock.set(minute(6))  # down from minute 1 on; slots 3..6 are past the end
    fire_many(trigger, [minute(n) for n in range(3, 7)])
    fire_one(trigger, minute(2))  # the last slot of the schedule, late: recorded as catch-up decides
    assert rows(trigger) == [
        (minute(0), "queued", ""),
        (minute(1), "skipped", "catchup_none"),
        (minute(2), "skipped", "catchup_none"),
    ]
    trigger.refresh_from_db()
    assert trigger.status == TriggerStatus.COMPLETED
    assert after_end_counter(redis_client) == 4


def test_a_paused_trigger_past_its_end_at_records_nothing(make, frozen_clock, redis_client):
    trigger = make(end_at=minute(1) + timedelta(seconds=30))
    services.trigger_pause(trigger=trigger)
    for n in (0, 1):  # before the end: a paused slot is still history
        frozen_clock.set(minute(n))
        fire_one(trigger, minute(n))
    frozen_clock.set(minute(2))
    fire_one(trigger, minute(2))
    assert rows(trigger) == [(minute(0), "skipped", "paused"), (minute(1), "skipped", "paused")]
    assert after_end_counter(redis_client) == 1


def test_a_backfill_past_max_runs_records_nothing_beyond_it(user, frozen_clock, redis_client):
    frozen_clock.set(T0)
    trigger = services.trigger_register(
        owner=user,
        name="b",
        workflow_id="wf",
        cron_expression="0 * * * *",
        max_runs=2,
        overlap_policy="allow",
    )
    start = T0 - timedelta(hours=5)
    report = execution_backfill(trigger=trigger, start=start, end=T0 - timedelta(minutes=1))
    assert [s.outcome for s in report.slots] == ["created", "created", "refused", "refused", "refused"]
    assert Execution.objects.filter(trigger=trigger).count() == 2
    assert Trigger.objects.get(pk=trigger.pk).status == TriggerStatus.COMPLETED
    assert after_end_counter(redis_client) == 3
