"""Backfill against the real database: a past range of a trigger's slots recorded through the fire path —
exactly once per (trigger, slot) whatever was recorded before and however often it is asked, the overlap
policy applied, bounds and max_runs honoured, launches spread — and its API. The clock is frozen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from executions.models import Execution, ExecutionOrigin, ExecutionStatus, SkipReason
from executions.services import execution_backfill
from schedules import services
from schedules.models import Trigger, TriggerStatus
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DAY = datetime(2026, 3, 1, tzinfo=UTC)


def hour(n: int) -> datetime:
    return DAY + timedelta(hours=n)


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def hourly(user, frozen_clock):
    frozen_clock.set(NOW)

    def make(**fields) -> Trigger:
        values = {"name": "h", "workflow_id": "wf", "cron_expression": "0 * * * *", **fields}
        return services.trigger_register(owner=user, **values)

    return make


def rows(trigger: Trigger) -> list[tuple[datetime, str, str, str]]:
    found = Execution.objects.filter(trigger=trigger).order_by("slot")
    return [(e.slot, e.status, e.skip_reason, e.origin) for e in found]


def record(trigger: Trigger, slot: datetime, status: str = ExecutionStatus.SUCCEEDED) -> Execution:
    """A slot the beat already ran (written directly: what matters is that its row exists)."""
    return Execution.objects.create(
        trigger=trigger, slot=slot, fire_at=slot, origin=ExecutionOrigin.SCHEDULE, status=status
    )


def test_dry_run_lists_the_slots_and_which_have_a_run_and_changes_nothing(hourly) -> None:
    trigger = hourly()
    done = record(trigger, hour(2))
    report = execution_backfill(trigger=trigger, start=hour(0), end=hour(5), dry_run=True)
    assert [s.slot for s in report.slots] == [hour(n) for n in range(6)]
    assert [s.outcome for s in report.slots] == ["would_run"] * 2 + ["recorded"] + ["would_run"] * 3
    assert report.slots[2].execution_id == done.pk
    assert Execution.objects.count() == 1
    assert Trigger.objects.get(pk=trigger.pk).run_count == 0


def test_a_slot_already_recorded_is_not_run_again(hourly) -> None:
    trigger = hourly(overlap_policy="allow")
    done = record(trigger, hour(2))
    report = execution_backfill(trigger=trigger, start=hour(0), end=hour(5))
    assert report.count("created") == 5
    assert report.count("recorded") == 1
    assert Execution.objects.get(trigger=trigger, slot=hour(2)) == done
    assert Execution.objects.get(pk=done.pk).status == ExecutionStatus.SUCCEEDED, "left alone"
    assert [r[3] for r in rows(trigger) if r[0] != hour(2)] == [ExecutionOrigin.BACKFILL] * 5
    refreshed = Trigger.objects.get(pk=trigger.pk)
    assert refreshed.run_count == 5
    assert refreshed.last_slot is None, "a backfill does not move the catch-up fence"
    assert refreshed.next_run_at == NOW + timedelta(hours=1)


def test_a_backfill_run_twice_records_each_slot_once(hourly) -> None:
    trigger = hourly(overlap_policy="allow")
    first = execution_backfill(trigger=trigger, start=hour(0), end=hour(3))
    second = execution_backfill(trigger=trigger, start=hour(0), end=hour(3))
    assert first.count("created") == 4
    assert second.count("created") == 0
    assert second.count("recorded") == 4
    assert [s.execution_id for s in second.slots] == [s.execution_id for s in first.slots]
    assert Execution.objects.filter(trigger=trigger).count() == 4
    assert Trigger.objects.get(pk=trigger.pk).run_count == 4


def test_the_beat_firing_a_backfilled_slot_finds_it_recorded(hourly, frozen_clock) -> None:
    from executions.services import execution_fire

    trigger = hourly(overlap_policy="allow")
    frozen_clock.set(NOW + timedelta(hours=1, seconds=1))
    execution_backfill(trigger=trigger, start=NOW + timedelta(hours=1), end=NOW + timedelta(hours=1))
    assert execution_fire(trigger_id=trigger.pk, slot=NOW + timedelta(hours=1)) == []
    assert Execution.objects.filter(trigger=trigger).count() == 1


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(
            "skip",
            [(ExecutionStatus.QUEUED, "")] + [(ExecutionStatus.SKIPPED, SkipReason.OVERLAP)] * 3,
            id="skip-while-the-first-runs",
        ),
        pytest.param(
            "queue", [(ExecutionStatus.QUEUED, "")] + [(ExecutionStatus.WAITING, "")] * 3, id="queue"
        ),
        pytest.param(
            "buffer_one",
            [(ExecutionStatus.QUEUED, ""), (ExecutionStatus.WAITING, "")]
            + [(ExecutionStatus.SKIPPED, SkipReason.OVERLAP)] * 2,
            id="buffer-one",
        ),
        pytest.param("allow", [(ExecutionStatus.QUEUED, "")] * 4, id="allow"),
    ],
)
def test_the_overlap_policy_applies_to_backfilled_slots(hourly, policy, expected) -> None:
    trigger = hourly(overlap_policy=policy)
    execution_backfill(trigger=trigger, start=hour(0), end=hour(3))
    assert [(r[1], r[2]) for r in rows(trigger)] == expected


def test_a_run_still_going_holds_back_the_backfill_under_skip(hourly) -> None:
    trigger = hourly()
    record(trigger, NOW, status=ExecutionStatus.RUNNING)
    report = execution_backfill(trigger=trigger, start=hour(0), end=hour(1))
    assert [s.status for s in report.slots] == [ExecutionStatus.SKIPPED] * 2
    assert {s.skip_reason for s in report.slots} == {SkipReason.OVERLAP}


def test_spread_spaces_the_launches_out(hourly) -> None:
    trigger = hourly(overlap_policy="allow")
    record(trigger, hour(1))
    execution_backfill(trigger=trigger, start=hour(0), end=hour(4), spread_seconds=400)
    waits = {
        e.slot: e.not_before
        for e in Execution.objects.filter(trigger=trigger, origin=ExecutionOrigin.BACKFILL)
    }
    assert waits == {
        hour(0): NOW,
        hour(2): NOW + timedelta(seconds=100),
        hour(3): NOW + timedelta(seconds=200),
        hour(4): NOW + timedelta(seconds=300),
    }


def test_start_at_bounds_the_range(user, frozen_clock) -> None:
    frozen_clock.set(DAY - timedelta(days=1))
    trigger = services.trigger_register(
        owner=user, name="b", workflow_id="wf", cron_expression="0 * * * *", start_at=hour(3)
    )
    frozen_clock.set(NOW)
    report = execution_backfill(trigger=trigger, start=hour(0), end=hour(5), dry_run=True)
    assert [s.slot for s in report.slots] == [hour(3), hour(4), hour(5)]


def test_max_runs_completes_the_trigger_and_refuses_the_rest(hourly) -> None:
    trigger = hourly(overlap_policy="allow", max_runs=3)
    report = execution_backfill(trigger=trigger, start=hour(0), end=hour(5))
    assert [s.outcome for s in report.slots] == ["created"] * 3 + ["refused"] * 3
    assert Execution.objects.filter(trigger=trigger).count() == 3, "nothing recorded after completion"
    assert Trigger.objects.get(pk=trigger.pk).status == TriggerStatus.COMPLETED


@pytest.mark.parametrize(
    ("start", "end", "extra", "field"),
    [
        pytest.param(None, hour(1), {}, "start", id="start-missing"),
        pytest.param(hour(0), hour(0).replace(tzinfo=None), {}, "end", id="end-naive"),
        pytest.param(hour(2), hour(1), {}, "end", id="reversed"),
        pytest.param(hour(0), NOW + timedelta(minutes=1), {}, "end", id="future"),
        pytest.param(hour(0), hour(1), {"spread_seconds": -1}, "spread_seconds", id="spread-negative"),
        pytest.param(hour(0), hour(1), {"spread_seconds": 1.5}, "spread_seconds", id="spread-float"),
        pytest.param(hour(0), hour(0) + timedelta(hours=4), {}, "end", id="over-the-cap"),
    ],
)
def test_bad_requests_name_the_field(hourly, settings, start, end, extra, field) -> None:
    settings.SCHEDULER_MAX_BACKFILL_SLOTS = 4
    trigger = hourly()
    with pytest.raises(ValidationError) as caught:
        execution_backfill(trigger=trigger, start=start, end=end, **extra)
    assert field in caught.value.message_dict
    assert not Execution.objects.exists()


def test_a_paused_trigger_is_refused(hourly) -> None:
    trigger = services.trigger_pause(trigger=hourly())
    with pytest.raises(ValidationError) as caught:
        execution_backfill(trigger=trigger, start=hour(0), end=hour(1))
    assert "resume it first" in caught.value.message_dict["status"][0]


# --- API --------------------------------------------------------------------------------------------------


def url(trigger: Trigger) -> str:
    return f"/api/v1/triggers/{trigger.pk}/backfill/"


def test_api_dry_run_then_backfill(hourly, user) -> None:
    trigger = hourly(overlap_policy="queue")
    api = client_for(user)
    body = {"start": "2026-03-01T00:00:00Z", "end": "2026-03-01T02:00:00+00:00", "dry_run": True}
    dry = api.post(url(trigger), body, format="json")
    assert dry.status_code == 200, dry.content
    assert dry.json()["counts"] == {"slots": 3, "recorded": 0, "would_run": 3, "created": 0, "refused": 0}
    assert dry.json()["slots"][0] == {
        "slot": "2026-03-01T00:00:00Z",
        "outcome": "would_run",
        "execution": None,
        "status": None,
        "skip_reason": None,
    }
    assert not Execution.objects.exists()
    done = api.post(url(trigger), {**body, "dry_run": False}, format="json")
    assert done.status_code == 200, done.content
    assert done.json()["counts"]["created"] == 3
    assert [s["status"] for s in done.json()["slots"]] == ["queued", "waiting", "waiting"]
    assert Execution.objects.filter(trigger=trigger, launched_by="alice").count() == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"end": "2026-03-01T02:00:00Z"}, "start", id="start-missing"),
        pytest.param({"start": "yesterday", "end": "2026-03-01T02:00:00Z"}, "start", id="start-garbage"),
        pytest.param({"start": "2026-03-01T00:00:00", "end": "2026-03-01T02:00:00Z"}, "start", id="naive"),
        pytest.param({"start": "2026-03-01T03:00:00Z", "end": "2026-03-01T02:00:00Z"}, "end", id="reversed"),
        pytest.param({"start": "2026-03-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"}, "end", id="future"),
        pytest.param({"start": "2025-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"}, "end", id="too-many"),
        pytest.param(
            {"start": "2026-03-01T00:00:00Z", "end": "2026-03-01T02:00:00Z", "spread_seconds": "x"},
            "spread_seconds",
            id="spread-garbage",
        ),
        pytest.param(
            {"start": "2026-03-01T00:00:00Z", "end": "2026-03-01T02:00:00Z", "spread_seconds": 10**9},
            "spread_seconds",
            id="spread-too-long",
        ),
    ],
)
def test_api_bad_input_is_a_400_naming_the_field(hourly, user, body, field) -> None:
    trigger = hourly()
    response = client_for(user).post(url(trigger), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not Execution.objects.exists()


def test_api_another_users_trigger_is_a_404(hourly, other_user) -> None:
    trigger = hourly()
    body = {"start": "2026-03-01T00:00:00Z", "end": "2026-03-01T02:00:00Z"}
    response = client_for(other_user).post(url(trigger), body, format="json")
    assert response.status_code == 404
    assert not Execution.objects.exists()


def test_a_one_off_whose_slot_was_lost_runs_once_and_completes(user, frozen_clock) -> None:
    frozen_clock.set(hour(0))
    trigger = services.trigger_register(owner=user, name="o", workflow_id="wf", kind="once", run_at=hour(2))
    frozen_clock.set(NOW)  # its slot passed with no fire (Redis lost it, say)
    first = execution_backfill(trigger=trigger, start=hour(0), end=hour(5))
    assert [(s.slot, s.outcome) for s in first.slots] == [(hour(2), "created")]
    assert Trigger.objects.get(pk=trigger.pk).status == TriggerStatus.COMPLETED
    with pytest.raises(ValidationError):
        execution_backfill(trigger=Trigger.objects.get(pk=trigger.pk), start=hour(0), end=hour(5))
    assert Execution.objects.filter(trigger=trigger).count() == 1
