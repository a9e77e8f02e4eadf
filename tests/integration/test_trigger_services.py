"""Trigger services against the real database: validation keyed by field, nothing half-saved, next run kept
true, pause/resume/delete semantics, caps, and the beat sync hook after commit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from executions.models import Execution
from schedules import services
from schedules.models import Trigger, TriggerStatus
from tests.support.triggers import run_out

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def register(owner, **fields):
    values = {"name": "nightly", "workflow_id": "wf-1", "cron_expression": "0 9 * * 1-5"}
    values.update(fields)
    return services.trigger_register(owner=owner, **values)


def field_of(excinfo: pytest.ExceptionInfo[ValidationError]) -> str:
    (field,) = excinfo.value.message_dict
    return field


def test_register_cron_sets_next_run_in_the_trigger_zone(
    user, frozen_clock, django_capture_on_commit_callbacks
):
    frozen_clock.set(utc(2026, 3, 2, 12, 0))  # Monday
    with django_capture_on_commit_callbacks() as callbacks:
        trigger = register(user, timezone="America/Los_Angeles")
    assert trigger.status == TriggerStatus.ACTIVE
    assert trigger.next_run_at == utc(2026, 3, 2, 17, 0)  # 09:00 PST
    assert trigger.schedule_changed_at == frozen_clock.now()
    assert len(callbacks) == 1, "the beat entry is synced after commit"
    assert Trigger.objects.get(pk=trigger.pk).owner == user


def test_register_interval_anchors_at_now_without_drift(user, frozen_clock):
    frozen_clock.set(utc(2026, 3, 2, 12, 0, 30))
    trigger = register(user, kind="interval", interval_seconds=900, cron_expression="ignored")
    assert trigger.cron_expression == ""
    assert trigger.anchor_at == utc(2026, 3, 2, 12, 0, 30)
    assert trigger.next_run_at == utc(2026, 3, 2, 12, 15, 30)


def test_register_once_by_delay(user, frozen_clock):
    trigger = register(user, kind="once", delay_ms=90_000)
    assert trigger.run_at == frozen_clock.now() + timedelta(seconds=90)
    assert trigger.next_run_at == trigger.run_at


def test_register_paused_has_no_next_run(user, frozen_clock):
    trigger = services.trigger_register(
        owner=user, paused=True, name="n", workflow_id="w", cron_expression="* * * * *"
    )
    assert trigger.status == TriggerStatus.PAUSED
    assert trigger.next_run_at is None


BAD_INPUT = [
    pytest.param({"cron_expression": "0 25 * * *"}, "cron_expression", id="hour-out-of-range"),
    pytest.param({"cron_expression": "* * * *"}, "cron_expression", id="four-fields"),
    pytest.param({"cron_expression": "* * * * * * *"}, "cron_expression", id="seven-fields"),
    pytest.param({"cron_expression": "@reboot"}, "cron_expression", id="reboot"),
    pytest.param({"cron_expression": "0 0 30 2 *"}, "cron_expression", id="never-fires"),
    pytest.param({"cron_expression": "0 0 * * *\x00"}, "cron_expression", id="nul-in-cron"),
    pytest.param({"timezone": "Mars/Base"}, "timezone", id="unknown-zone"),
    pytest.param({"timezone": "localtime"}, "timezone", id="localtime-zone"),
    pytest.param({"timezone": "/etc/localtime"}, "timezone", id="path-zone"),
    pytest.param({"timezone": 5}, "timezone", id="zone-not-string"),
    pytest.param({"name": ""}, "name", id="empty-name"),
    pytest.param({"name": "a\x00b"}, "name", id="nul-in-name"),
    pytest.param({"name": "x" * 201}, "name", id="long-name"),
    pytest.param({"workflow_id": 7}, "workflow_id", id="workflow-not-string"),
    pytest.param({"target": "elsewhere"}, "target", id="unknown-target"),
    pytest.param({"input": [1, 2]}, "input", id="input-not-object"),
    pytest.param({"input": "text"}, "input", id="input-string"),
    pytest.param({"metadata": {"k": "v\x00"}}, "metadata", id="nul-in-metadata"),
    pytest.param({"metadata": {"k\x00": 1}}, "metadata", id="nul-in-metadata-key"),
    pytest.param({"input": {"x": float("nan")}}, "input", id="nan-in-input"),
    pytest.param({"input": {"x": "y" * 70_000}}, "input", id="input-too-big"),
    pytest.param({"max_runs": 0}, "max_runs", id="max-runs-zero"),
    pytest.param({"max_runs": 10**30}, "max_runs", id="max-runs-absurd"),
    pytest.param({"max_runs": True}, "max_runs", id="max-runs-bool"),
    pytest.param({"max_attempts": 0}, "max_attempts", id="attempts-zero"),
    pytest.param({"timeout_seconds": -1}, "timeout_seconds", id="timeout-negative"),
    pytest.param({"timeout_seconds": "300"}, "timeout_seconds", id="timeout-string"),
    pytest.param({"overlap_policy": "sometimes"}, "overlap_policy", id="bad-overlap"),
    pytest.param({"catchup_policy": None}, "catchup_policy", id="null-catchup"),
    pytest.param({"priority": "asap"}, "priority", id="bad-priority"),
    pytest.param({"kind": "weekly"}, "kind", id="bad-kind"),
    pytest.param({"start_at": datetime(2026, 1, 1)}, "start_at", id="naive-start"),  # noqa: DTZ001
    pytest.param({"start_at": "tomorrow"}, "start_at", id="start-not-datetime"),
    pytest.param({"start_at": utc(2027, 1, 1), "end_at": utc(2026, 12, 1)}, "end_at", id="end-before-start"),
    pytest.param({"kind": "once", "run_at": utc(2020, 1, 1)}, "run_at", id="once-in-the-past"),
    pytest.param({"kind": "once"}, "run_at", id="once-without-run-at"),
    pytest.param({"kind": "interval"}, "interval_seconds", id="interval-missing"),
    pytest.param({"kind": "interval", "interval_seconds": 0}, "interval_seconds", id="interval-zero"),
    pytest.param({"kind": "interval", "interval_seconds": 10**12}, "interval_seconds", id="interval-absurd"),
    pytest.param(
        {"cron_expression": "*/5 * * * *", "jitter_seconds": 300}, "jitter_seconds", id="jitter-too-big"
    ),
    pytest.param({"owner_id": 99}, "owner_id", id="owner-not-settable"),
    pytest.param({"run_count": 5}, "run_count", id="counter-not-settable"),
    pytest.param({"kind": "once", "delay_ms": -5}, "delay_ms", id="negative-delay"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_INPUT)
def test_bad_input_is_a_validation_error_naming_the_field(user, frozen_clock, fields, field):
    with pytest.raises(ValidationError) as excinfo:
        register(user, **fields)
    assert field_of(excinfo) == field
    assert excinfo.value.message_dict[field][0]
    assert not Trigger.objects.exists(), "nothing half-saved"


def test_owner_cap(user, other_user, frozen_clock, settings):
    settings.SCHEDULER_MAX_TRIGGERS_PER_OWNER = 2
    register(user)
    register(user)
    with pytest.raises(ValidationError) as excinfo:
        register(user)
    assert field_of(excinfo) == "owner"
    register(other_user)  # the cap is per owner


def test_min_interval_cap(user, frozen_clock, settings):
    settings.SCHEDULER_MIN_INTERVAL_SECONDS = 60
    with pytest.raises(ValidationError) as excinfo:
        register(user, kind="interval", interval_seconds=30)
    assert field_of(excinfo) == "interval_seconds"


def test_update_schedule_moves_next_run_and_marks_the_edit(user, frozen_clock):
    trigger = register(user, cron_expression="0 9 * * *")
    frozen_clock.advance(60)
    updated = services.trigger_update(trigger=trigger, cron_expression="30 14 * * *", timezone="Europe/Paris")
    assert updated.next_run_at == utc(2026, 3, 2, 13, 30)  # 14:30 CET
    assert updated.schedule_changed_at == frozen_clock.now()


def test_update_without_schedule_change_keeps_schedule_changed_at(user, frozen_clock):
    trigger = register(user)
    before = trigger.schedule_changed_at
    frozen_clock.advance(60)
    updated = services.trigger_update(trigger=trigger, name="renamed", input={"a": 1})
    assert updated.name == "renamed"
    assert updated.schedule_changed_at == before


def test_bad_update_changes_nothing(user, frozen_clock):
    trigger = register(user)
    with pytest.raises(ValidationError) as excinfo:
        services.trigger_update(trigger=trigger, name="renamed", cron_expression="61 * * * *")
    assert field_of(excinfo) == "cron_expression"
    trigger.refresh_from_db()
    assert trigger.name == "nightly"
    assert trigger.cron_expression == "0 9 * * 1-5"


def test_pause_then_resume_starts_from_now(user, frozen_clock):
    trigger = register(user, cron_expression="*/5 * * * *")
    paused = services.trigger_pause(trigger=trigger, reason="maintenance")
    assert (paused.status, paused.next_run_at, paused.paused_reason) == (
        TriggerStatus.PAUSED,
        None,
        "maintenance",
    )
    frozen_clock.advance(3600 + 60)  # 13:01
    resumed = services.trigger_resume(trigger=paused)
    assert resumed.status == TriggerStatus.ACTIVE
    assert resumed.resumed_at == frozen_clock.now()
    assert resumed.next_run_at == utc(2026, 3, 2, 13, 5)
    assert resumed.paused_at is None


def test_pause_and_resume_are_idempotent(user, frozen_clock):
    trigger = register(user)
    services.trigger_pause(trigger=trigger)
    services.trigger_pause(trigger=trigger)
    services.trigger_resume(trigger=trigger)
    assert services.trigger_resume(trigger=trigger).status == TriggerStatus.ACTIVE


def test_completed_trigger_cannot_be_paused_but_a_new_schedule_revives_it(user, frozen_clock):
    trigger = register(user, kind="once", run_at=frozen_clock.now() + timedelta(hours=1))
    trigger = run_out(trigger)
    assert trigger.status == TriggerStatus.COMPLETED
    assert trigger.next_run_at is None
    with pytest.raises(ValidationError) as excinfo:
        services.trigger_pause(trigger=trigger)
    assert field_of(excinfo) == "status"
    revived = services.trigger_update(trigger=trigger, run_at=frozen_clock.now() + timedelta(hours=2))
    assert revived.status == TriggerStatus.ACTIVE
    assert revived.next_run_at == frozen_clock.now() + timedelta(hours=2)


def test_delete_is_soft_and_keeps_history(user, frozen_clock, django_capture_on_commit_callbacks):
    trigger = register(user)
    Execution.objects.create(trigger=trigger, slot=utc(2026, 3, 2, 9), origin="schedule", status="succeeded")
    with django_capture_on_commit_callbacks() as callbacks:
        services.trigger_delete(trigger=trigger)
    assert len(callbacks) == 1, "the beat entry is removed after commit"
    assert not Trigger.objects.live().filter(pk=trigger.pk).exists()
    assert Execution.objects.filter(trigger_id=trigger.pk).count() == 1
    assert Trigger.objects.get(pk=trigger.pk).next_run_at is None


def test_restore_brings_a_deleted_trigger_back_with_its_history(
    user, frozen_clock, django_capture_on_commit_callbacks
):
    frozen_clock.set(utc(2026, 3, 2, 12, 0))
    trigger = register(user)
    Execution.objects.create(trigger=trigger, slot=utc(2026, 3, 2, 9), origin="schedule", status="succeeded")
    services.trigger_delete(trigger=trigger)
    frozen_clock.set(utc(2026, 3, 5, 12, 0))
    with django_capture_on_commit_callbacks() as callbacks:
        restored = services.trigger_restore(trigger=trigger, cron_expression="*/15 * * * *")
    assert len(callbacks) == 1, "the beat entry is written again after commit"
    row = Trigger.objects.get(pk=trigger.pk)
    assert (row.deleted_at, row.status, row.cron_expression) == (None, TriggerStatus.ACTIVE, "*/15 * * * *")
    assert row.next_run_at == restored.next_run_at == utc(2026, 3, 5, 12, 15)
    assert row.schedule_changed_at == row.resumed_at == utc(2026, 3, 5, 12, 0)
    assert Execution.objects.filter(trigger_id=trigger.pk).count() == 1
    services.trigger_delete(trigger=row)
    paused = services.trigger_restore(trigger=row, paused=True)
    assert (paused.status, paused.paused_at, paused.next_run_at) == (
        TriggerStatus.PAUSED,
        utc(2026, 3, 5, 12, 0),
        None,
    )


def test_restore_refuses_a_live_trigger_bad_fields_and_the_cap(user, frozen_clock, settings):
    trigger = register(user)
    with pytest.raises(ValidationError) as live:
        services.trigger_restore(trigger=trigger)
    assert field_of(live) == "id"
    services.trigger_delete(trigger=trigger)
    with pytest.raises(ValidationError) as bad:
        services.trigger_restore(trigger=trigger, cron_expression="0 25 * * *")
    assert field_of(bad) == "cron_expression"
    assert Trigger.objects.get(pk=trigger.pk).deleted_at is not None, "nothing half-saved"
    settings.SCHEDULER_MAX_TRIGGERS_PER_OWNER = 1
    register(user, name="another")
    with pytest.raises(ValidationError) as cap:
        services.trigger_restore(trigger=trigger)
    assert field_of(cap) == "owner"


def test_restore_never_replays_the_slots_that_fell_while_deleted(user, frozen_clock):
    from executions.services import execution_fire

    frozen_clock.set(utc(2026, 3, 2, 11, 59, 30))
    trigger = register(user, cron_expression="* * * * *", catchup_policy="fire_immediately")
    frozen_clock.set(utc(2026, 3, 2, 12, 0))
    assert len(execution_fire(trigger_id=trigger.pk, slot=utc(2026, 3, 2, 12, 0))) == 1
    services.trigger_delete(trigger=trigger)
    frozen_clock.set(utc(2026, 3, 2, 12, 10, 30))
    services.trigger_restore(trigger=trigger)
    frozen_clock.set(utc(2026, 3, 2, 12, 11))
    (run,) = execution_fire(trigger_id=trigger.pk, slot=utc(2026, 3, 2, 12, 11))
    assert run.slot == utc(2026, 3, 2, 12, 11), "minutes 1-10 fell while it was deleted"


def test_visible_to(user, other_user, frozen_clock, django_user_model):
    mine = register(user)
    theirs = register(other_user)
    staff = django_user_model.objects.create_user(username="ops", is_staff=True)
    assert list(Trigger.objects.visible_to(user)) == [mine]
    assert set(Trigger.objects.visible_to(staff)) == {mine, theirs}


def test_preview_of_unsaved_fields_and_of_a_trigger(user, frozen_clock):
    frozen_clock.set(utc(2026, 3, 7, 5, 0))
    times = services.trigger_preview(cron_expression="30 2 * * *", timezone="America/New_York", count=3)
    assert [t.slot for t in times] == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]
    assert times[1].note, "the DST gap is explained"
    trigger = register(user, cron_expression="0 12 * * *")
    assert [t.slot for t in services.trigger_preview(trigger=trigger, count=2)] == [
        utc(2026, 3, 7, 12), utc(2026, 3, 8, 12)
    ]  # fmt: skip
    with pytest.raises(ValidationError) as excinfo:
        services.trigger_preview(cron_expression="nope", count=3)
    assert field_of(excinfo) == "cron_expression"
    with pytest.raises(ValidationError) as excinfo:
        services.trigger_preview(cron_expression="* * * * *", count=1000)
    assert field_of(excinfo) == "count"
