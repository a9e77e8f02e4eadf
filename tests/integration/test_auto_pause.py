"""Auto-pause after N consecutive failures, against the real database and Redis: the streak is judged
where a run's end is recorded (`finish`, through `trigger_record_end`), the pause goes through
`trigger_pause` (its note the reason, the beat entry out of the schedule after commit, later slots
recorded `paused`), a success ends the streak, off by default; and the field in the API and admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from executions.models import Execution, ExecutionStatus
from executions.services import execution_complete, execution_fire, execution_sweep
from scheduler_project.celery import app
from schedules import services
from schedules.beat.entries import Keys
from schedules.models import Trigger, TriggerStatus
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
)
from toolkit import metrics

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TRIGGERS = "/api/v1/triggers/"


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make(user, frozen_clock, django_capture_on_commit_callbacks):
    frozen_clock.set(T0 - timedelta(seconds=30))

    def build(**fields) -> Trigger:
        values = {"name": "flaky", "workflow_id": "wf", "cron_expression": "* * * * *", **fields}
        with django_capture_on_commit_callbacks(execute=True):
            return services.trigger_register(owner=user, **values)

    return build


def scheduled(redis_client, trigger: Trigger) -> bool:
    keys = Keys.of(app)
    return redis_client.zscore(keys.schedule, keys.entry(trigger.pk)) is not None


def run_and_end(trigger: Trigger, n: int, status: str, frozen_clock) -> Execution:
    """Fire slot `n`, then report its end `status` (as a callback or poll would)."""
    frozen_clock.set(minute(n))
    rows = execution_fire(trigger_id=trigger.pk, slot=minute(n))
    (execution,) = [row for row in rows if row.slot == minute(n)]
    Execution.objects.filter(pk=execution.pk).update(status=ExecutionStatus.RUNNING, started_at=minute(n))
    frozen_clock.set(minute(n) + timedelta(seconds=20))
    return execution_complete(execution=execution, status=status, error="boom")


def test_three_failures_in_a_row_pause_the_trigger_with_the_reason_as_its_note(
    make, frozen_clock, redis_client, django_capture_on_commit_callbacks
):
    trigger = make(auto_pause_after_failures=3)
    assert scheduled(redis_client, trigger)
    for n in (0, 1):
        run_and_end(trigger, n, ExecutionStatus.FAILED, frozen_clock)
    assert Trigger.objects.get(pk=trigger.pk).status == TriggerStatus.ACTIVE
    with django_capture_on_commit_callbacks(execute=True):
        run_and_end(trigger, 2, ExecutionStatus.TIMED_OUT, frozen_clock)  # a timeout is a failure too
    trigger.refresh_from_db()
    assert (trigger.status, trigger.paused_reason, trigger.next_run_at) == (
        TriggerStatus.PAUSED,
        "paused after 3 consecutive failures",
        None,
    )
    assert trigger.paused_at == minute(2) + timedelta(seconds=20)
    assert not scheduled(redis_client, trigger), "its beat entry left the schedule on commit"
    counter = metrics.counter_field(metrics.AUTO_PAUSED)
    assert int(redis_client.hget(metrics.counters_key(), counter) or 0) == 1
    frozen_clock.set(minute(3))
    (later,) = execution_fire(trigger_id=trigger.pk, slot=minute(3))
    assert (later.status, later.skip_reason) == (ExecutionStatus.SKIPPED, "paused")


def test_a_success_ends_the_streak(make, frozen_clock):
    trigger = make(auto_pause_after_failures=2, overlap_policy="allow")
    outcomes = [ExecutionStatus.FAILED, ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED]
    outcomes += [ExecutionStatus.CANCELLED]  # a cancel is a decision, neither failure nor success
    for n, status in enumerate(outcomes):
        run_and_end(trigger, n, status, frozen_clock)
    trigger.refresh_from_db()
    assert (trigger.status, trigger.consecutive_failures) == (TriggerStatus.ACTIVE, 1)
    run_and_end(trigger, 4, ExecutionStatus.FAILED, frozen_clock)
    assert Trigger.objects.get(pk=trigger.pk).paused_reason == "paused after 2 consecutive failures"


def test_off_by_default(make, frozen_clock):
    trigger = make()
    assert trigger.auto_pause_after_failures is None
    for n in range(6):
        run_and_end(trigger, n, ExecutionStatus.FAILED, frozen_clock)
    trigger.refresh_from_db()
    assert (trigger.status, trigger.consecutive_failures) == (TriggerStatus.ACTIVE, 6)


def test_a_manual_pause_keeps_its_own_note_and_a_resume_keeps_the_streak(make, frozen_clock):
    trigger = make(auto_pause_after_failures=1, overlap_policy="allow")
    frozen_clock.set(minute(0))
    (first,) = execution_fire(trigger_id=trigger.pk, slot=minute(0))
    services.trigger_pause(trigger=trigger, reason="db migration")
    execution_complete(execution=first, status=ExecutionStatus.FAILED, error="boom")
    trigger.refresh_from_db()
    assert (trigger.status, trigger.paused_reason) == (TriggerStatus.PAUSED, "db migration")
    frozen_clock.set(minute(0) + timedelta(seconds=40))
    services.trigger_resume(trigger=trigger)
    run_and_end(trigger, 1, ExecutionStatus.FAILED, frozen_clock)
    trigger.refresh_from_db()
    assert (trigger.status, trigger.paused_reason) == (
        TriggerStatus.PAUSED,
        "paused after 2 consecutive failures",
    )


def test_the_sweeper_timing_a_run_out_counts_towards_the_streak(make, frozen_clock):
    trigger = make(auto_pause_after_failures=1, timeout_seconds=30)
    frozen_clock.set(minute(0))
    (execution,) = execution_fire(trigger_id=trigger.pk, slot=minute(0))
    Execution.objects.filter(pk=execution.pk).update(status=ExecutionStatus.RUNNING, started_at=minute(0))
    frozen_clock.set(minute(0) + timedelta(seconds=45))
    assert execution_sweep().timed_out == 1
    trigger.refresh_from_db()
    assert (trigger.status, trigger.paused_reason) == (
        TriggerStatus.PAUSED,
        "paused after 1 consecutive failure",
    )


# --- API and admin ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(0, "must be between 1 and 10000", id="zero"),
        pytest.param(10_001, "must be between 1 and 10000", id="too-many"),
        pytest.param("three", "must be an integer", id="text"),
        pytest.param(True, "must be an integer", id="boolean"),
    ],
)
def test_a_bad_value_is_a_400_naming_the_field(user, frozen_clock, value, message):
    frozen_clock.set(T0)
    api = client_for(user)
    body = {
        "name": "n",
        "workflow_id": "wf",
        "cron_expression": "* * * * *",
        "auto_pause_after_failures": value,
    }
    response = api.post(TRIGGERS, body, format="json")
    assert response.status_code == 400, response.content
    assert "auto_pause_after_failures" in response.json()
    assert not Trigger.objects.exists()


def test_the_api_sets_reads_and_clears_it(user, frozen_clock):
    frozen_clock.set(T0)
    api = client_for(user)
    body = {"name": "n", "workflow_id": "wf", "cron_expression": "* * * * *", "auto_pause_after_failures": 5}
    created = api.post(TRIGGERS, body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["auto_pause_after_failures"] == 5
    url = f"{TRIGGERS}{created.json()['id']}/"
    cleared = api.patch(url, {"auto_pause_after_failures": None}, format="json")
    assert cleared.status_code == 200, cleared.content
    assert cleared.json()["auto_pause_after_failures"] is None
    assert Trigger.objects.get().auto_pause_after_failures is None


def test_the_admin_form_offers_it(admin_client, user, frozen_clock):
    frozen_clock.set(T0)
    trigger = services.trigger_register(
        owner=user, name="n", workflow_id="wf", cron_expression="* * * * *", auto_pause_after_failures=4
    )
    page = admin_client.get(f"/admin/schedules/trigger/{trigger.pk}/change/")
    assert page.status_code == 200
    assert b'name="auto_pause_after_failures"' in page.content
    assert b'value="4"' in page.content
