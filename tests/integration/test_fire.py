"""The fire path against the real database: one execution per (trigger, slot), policies applied and recorded,
catch-up floored and bounded, counters updated in the same transaction. The clock is frozen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from executions.models import Execution, ExecutionOrigin, ExecutionStatus, SkipReason
from executions.services import execution_complete, execution_fire
from schedules import services
from schedules.models import Trigger, TriggerStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def every_minute(user, frozen_clock):
    frozen_clock.set(T0 - timedelta(seconds=30))
    return services.trigger_register(owner=user, name="m", workflow_id="wf", cron_expression="* * * * *")


def fire(trigger: Trigger, slot: datetime, **kw) -> list[Execution]:
    return execution_fire(trigger_id=trigger.pk, slot=slot, **kw)


def statuses(trigger: Trigger) -> list[tuple[datetime, str, str]]:
    rows = Execution.objects.filter(trigger=trigger).order_by("slot")
    return [(e.slot, e.status, e.skip_reason) for e in rows]


def test_fire_records_one_execution_and_enqueues_it(
    every_minute, frozen_clock, django_capture_on_commit_callbacks
):
    frozen_clock.set(minute(0) + timedelta(milliseconds=40))
    with django_capture_on_commit_callbacks() as callbacks:
        (execution,) = fire(every_minute, minute(0))
    assert execution.status == ExecutionStatus.QUEUED, "written queued under its launch message's task id"
    assert execution.task_id
    assert execution.origin == ExecutionOrigin.SCHEDULE
    assert len(callbacks) == 1, "the launch is enqueued after commit"
    trigger = Trigger.objects.get(pk=every_minute.pk)
    assert (trigger.run_count, trigger.last_slot, trigger.next_run_at) == (1, minute(0), minute(1))


def test_duplicate_fire_is_a_no_op(every_minute, frozen_clock):
    frozen_clock.set(minute(0))
    assert len(fire(every_minute, minute(0))) == 1
    assert fire(every_minute, minute(0)) == []
    assert fire(every_minute, minute(0), origin="tick") == []
    assert Execution.objects.count() == 1
    assert Trigger.objects.get(pk=every_minute.pk).run_count == 1


def test_a_slot_the_schedule_does_not_have_is_ignored(every_minute, frozen_clock):
    frozen_clock.set(minute(0))
    assert fire(every_minute, minute(0) + timedelta(seconds=7)) == []
    services.trigger_update(trigger=every_minute, cron_expression="*/5 * * * *")
    assert fire(every_minute, minute(1)) == [], "an old-schedule slot sent before the edit does not run"
    assert not Execution.objects.exists()


def test_paused_trigger_records_the_slot_skipped(every_minute, frozen_clock):
    services.trigger_pause(trigger=every_minute)
    frozen_clock.set(minute(0))
    (execution,) = fire(every_minute, minute(0))
    assert (execution.status, execution.skip_reason) == (ExecutionStatus.SKIPPED, SkipReason.PAUSED)


def test_max_runs_completes_the_trigger(user, frozen_clock):
    frozen_clock.set(T0 - timedelta(seconds=30))
    trigger = services.trigger_register(
        owner=user,
        name="m",
        workflow_id="wf",
        cron_expression="* * * * *",
        max_runs=2,
        overlap_policy="allow",
    )
    for n in range(2):
        frozen_clock.set(minute(n))
        fire(trigger, minute(n))
    trigger.refresh_from_db()
    assert trigger.status == TriggerStatus.COMPLETED
    assert trigger.next_run_at is None


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(
            "latest",
            [("skipped", "catchup_superseded")] * 4 + [("queued", "")],
            id="latest-runs-the-due-slot-only",
        ),
        pytest.param("none", [("skipped", "catchup_none")] * 4 + [("queued", "")], id="none-skips-missed"),
        pytest.param("fire_immediately", [("queued", "")] * 5, id="fire-immediately-runs-all"),
    ],
)
def test_catchup_after_downtime(every_minute, frozen_clock, policy, expected):
    services.trigger_update(trigger=every_minute, catchup_policy=policy, overlap_policy="allow")
    frozen_clock.set(minute(0))
    fire(every_minute, minute(0))
    frozen_clock.set(minute(5) + timedelta(seconds=1))  # slots 1..4 were missed while the fleet was down
    fire(every_minute, minute(5))
    got = [(status, reason) for slot, status, reason in statuses(every_minute)][1:]
    assert got == expected
    origins = list(
        Execution.objects.filter(slot__gt=minute(0)).order_by("slot").values_list("origin", flat=True)
    )
    assert origins == ["catchup"] * 4 + ["schedule"]


def test_catchup_spread_spaces_runs_over_the_window(every_minute, frozen_clock):
    services.trigger_update(
        trigger=every_minute, catchup_policy="spread", catchup_window_seconds=600, overlap_policy="allow"
    )
    frozen_clock.set(minute(0))
    fire(every_minute, minute(0))
    now = minute(5) + timedelta(seconds=1)
    frozen_clock.set(now)
    fire(every_minute, minute(5))
    catchups = Execution.objects.filter(origin="catchup").order_by("slot")
    assert [e.not_before - now for e in catchups] == [timedelta(seconds=150 * i) for i in range(4)]


def test_catchup_never_replays_slots_from_before_a_resume(every_minute, frozen_clock):
    services.trigger_update(trigger=every_minute, catchup_policy="fire_immediately", overlap_policy="allow")
    frozen_clock.set(minute(0))
    fire(every_minute, minute(0))
    services.trigger_pause(trigger=every_minute)
    frozen_clock.set(minute(10) + timedelta(seconds=5))
    services.trigger_resume(trigger=every_minute)
    frozen_clock.set(minute(11))
    fire(every_minute, minute(11))
    assert [s for s, _, _ in statuses(every_minute)] == [minute(0), minute(11)]


def test_catchup_is_bounded_by_the_window(every_minute, frozen_clock):
    services.trigger_update(
        trigger=every_minute,
        catchup_policy="fire_immediately",
        catchup_window_seconds=120,
        overlap_policy="allow",
    )
    frozen_clock.set(minute(0))
    fire(every_minute, minute(0))
    frozen_clock.set(minute(30))
    fire(every_minute, minute(30))
    ran = Execution.objects.filter(status="queued").exclude(slot=minute(0))
    assert min(e.slot for e in ran) >= minute(30) - timedelta(seconds=120)
    assert Execution.objects.count() < 10, "nothing older than the window is even considered"


@pytest.mark.parametrize(
    ("policy", "second"),
    [
        pytest.param("allow", ("queued", ""), id="allow"),
        pytest.param("skip", ("skipped", "overlap"), id="skip"),
        pytest.param("queue", ("waiting", ""), id="queue"),
        pytest.param("buffer_one", ("waiting", ""), id="buffer-one"),
        # Written at once, before the cancel (fire._replace_running): claimed after commit, as a pending row.
        pytest.param("replace", ("pending", ""), id="replace"),
    ],
)
def test_overlap_policies(every_minute, frozen_clock, policy, second):
    services.trigger_update(trigger=every_minute, overlap_policy=policy)
    frozen_clock.set(minute(0))
    (first,) = fire(every_minute, minute(0))
    Execution.objects.filter(pk=first.pk).update(status=ExecutionStatus.RUNNING)
    frozen_clock.set(minute(1))
    (execution,) = fire(every_minute, minute(1))
    assert (execution.status, execution.skip_reason) == second
    first.refresh_from_db()
    assert first.status == (ExecutionStatus.CANCELLED if policy == "replace" else ExecutionStatus.RUNNING)


def test_buffer_one_keeps_at_most_one_waiting(every_minute, frozen_clock):
    services.trigger_update(trigger=every_minute, overlap_policy="buffer_one")
    frozen_clock.set(minute(0))
    (first,) = fire(every_minute, minute(0))
    Execution.objects.filter(pk=first.pk).update(status=ExecutionStatus.RUNNING)
    for n in (1, 2, 3):
        frozen_clock.set(minute(n))
        fire(every_minute, minute(n))
    assert [(st, r) for _, st, r in statuses(every_minute)][1:] == [
        ("waiting", ""), ("skipped", "overlap"), ("skipped", "overlap")
    ]  # fmt: skip


def test_catchup_of_a_long_outage_keeps_the_newest_slots_and_stays_bounded(user, frozen_clock, settings):
    settings.SCHEDULER_MAX_CATCHUP_SLOTS = 5
    frozen_clock.set(T0 - timedelta(seconds=1))
    trigger = services.trigger_register(
        owner=user, name="s", workflow_id="wf", cron_expression="* * * * * *", overlap_policy="allow",
        catchup_policy="fire_immediately", catchup_window_seconds=7200, misfire_grace_seconds=1,
    )  # fmt: skip
    frozen_clock.set(T0)
    fire(trigger, T0)
    due = T0 + timedelta(hours=1)
    frozen_clock.set(due + timedelta(milliseconds=5))
    fire(trigger, due)
    ran = list(
        Execution.objects.filter(origin="catchup", status="queued")
        .order_by("slot")
        .values_list("slot", flat=True)
    )
    assert ran == [due - timedelta(seconds=s) for s in range(5, 0, -1)], "the newest missed slots run"
    assert Execution.objects.count() < 100, "a 3,600-slot outage records a bounded number of rows"


def test_a_late_fire_of_a_pruned_slot_does_not_run_it_again(every_minute, frozen_clock):
    frozen_clock.set(minute(0))
    (first,) = fire(every_minute, minute(0))
    frozen_clock.set(minute(1))
    fire(every_minute, minute(1))
    Execution.objects.filter(pk=first.pk).delete()  # pruned by retention
    assert fire(every_minute, minute(0)) == [], (
        "slots up to last_slot were decided; a late duplicate is ignored"
    )
    assert not Execution.objects.filter(slot=minute(0)).exists()


def test_the_end_of_a_run_starts_the_next_waiting_slot(every_minute, frozen_clock):
    services.trigger_update(trigger=every_minute, overlap_policy="queue")
    frozen_clock.set(minute(0))
    (first,) = fire(every_minute, minute(0))
    Execution.objects.filter(pk=first.pk).update(status=ExecutionStatus.RUNNING, started_at=minute(0))
    frozen_clock.set(minute(1))
    (second,) = fire(every_minute, minute(1))
    assert second.status == ExecutionStatus.WAITING
    frozen_clock.set(minute(1) + timedelta(seconds=5))
    execution_complete(execution=first, status=ExecutionStatus.FAILED, error="boom")
    second.refresh_from_db()
    assert second.status == ExecutionStatus.PENDING, "promoted in the same transaction as the end"
    trigger = Trigger.objects.get(pk=every_minute.pk)
    assert (trigger.failure_count, trigger.consecutive_failures, trigger.last_error) == (1, 1, "boom")
    assert Execution.objects.get(pk=first.pk).duration_ms == 65_000
