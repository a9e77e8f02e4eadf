"""Limits per owner, per workflow and per trigger, against the real database: an operator's per-user values
(`OwnerLimits`) over the environment's defaults for the trigger cap and the concurrency caps, waiting runs
that name the limit holding them back, promotion once it frees, a trigger's `max_concurrent` > 1 under
each overlap policy; the `limits/` endpoint, the field's 400s and the admin page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from executions.models import Execution, ExecutionStatus
from executions.services import execution_complete, execution_fire, execution_sweep
from schedules import services
from schedules.models import OwnerLimits, Trigger
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make(frozen_clock):
    frozen_clock.set(T0 - timedelta(seconds=30))

    def build(owner, name: str = "t", **fields) -> Trigger:
        values = {"name": name, "workflow_id": "wf", "cron_expression": "* * * * *", **fields}
        return services.trigger_register(owner=owner, **values)

    return build


def fire(trigger: Trigger, n: int) -> Execution:
    (row,) = [r for r in execution_fire(trigger_id=trigger.pk, slot=minute(n)) if r.slot == minute(n)]
    return row


def start(execution: Execution) -> Execution:
    Execution.objects.filter(pk=execution.pk).update(status=ExecutionStatus.RUNNING, started_at=T0)
    execution.refresh_from_db()
    return execution


def state(execution: Execution) -> tuple[str, str]:
    execution.refresh_from_db()
    return execution.status, execution.skip_reason


# --- The trigger cap ---------------------------------------------------------------------------------------


def test_a_per_user_trigger_cap_overrides_the_default(make, user, other_user, settings):
    settings.SCHEDULER_MAX_TRIGGERS_PER_OWNER = 5
    services.owner_limits_set(owner=user, max_triggers=1, note="trial account")
    make(user)
    with pytest.raises(ValidationError) as caught:
        make(user, name="second")
    assert caught.value.message_dict == {"owner": ["this owner's limit of 1 triggers per owner reached"]}
    make(other_user)
    make(other_user, name="second")  # the default, 5, for everyone else


# --- Concurrency per owner and per workflow ----------------------------------------------------------------


def test_a_per_user_concurrency_limit_holds_runs_back_and_names_itself(
    make, user, other_user, frozen_clock, settings
):
    settings.SCHEDULER_MAX_CONCURRENT_PER_OWNER = 0  # unlimited by default
    services.owner_limits_set(owner=user, max_concurrent_runs=1)
    first, second = make(user, "a"), make(user, "b", workflow_id="other")
    free = make(other_user, "c")
    frozen_clock.set(minute(0))
    running = start(fire(first, 0))
    held = fire(second, 0)
    assert state(held) == (ExecutionStatus.WAITING, "owner_limit")
    assert state(fire(free, 0))[0] == ExecutionStatus.QUEUED, "another user's default is unlimited"
    execution_complete(execution=running, status=ExecutionStatus.SUCCEEDED)
    assert state(held) == (ExecutionStatus.WAITING, "owner_limit"), "its own trigger had nothing to promote"
    assert execution_sweep().promoted == 1, "the sweeper starts it once the owner has room"
    assert state(held) == (ExecutionStatus.PENDING, "")


def test_the_per_workflow_limit_counts_one_workflow_across_triggers(make, user, frozen_clock, settings):
    settings.SCHEDULER_MAX_CONCURRENT_PER_WORKFLOW = 1
    first, same, different = make(user, "a"), make(user, "b"), make(user, "c", workflow_id="other")
    frozen_clock.set(minute(0))
    start(fire(first, 0))
    assert state(fire(same, 0)) == (ExecutionStatus.WAITING, "workflow_limit")
    assert state(fire(different, 0))[0] == ExecutionStatus.QUEUED


def test_a_user_may_be_let_off_the_default_workflow_limit(make, user, frozen_clock, settings):
    settings.SCHEDULER_MAX_CONCURRENT_PER_WORKFLOW = 1
    services.owner_limits_set(owner=user, max_concurrent_per_workflow=0)  # 0 = unlimited for this user
    first, same = make(user, "a"), make(user, "b")
    frozen_clock.set(minute(0))
    start(fire(first, 0))
    assert state(fire(same, 0))[0] == ExecutionStatus.QUEUED


# --- A trigger's own max_concurrent ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "third"),
    [
        pytest.param("skip", (ExecutionStatus.SKIPPED, "overlap"), id="skip"),
        pytest.param("queue", (ExecutionStatus.WAITING, ""), id="queue"),
        pytest.param("buffer_one", (ExecutionStatus.WAITING, ""), id="buffer-one"),
    ],
)
def test_max_concurrent_two_lets_a_second_run_overlap(make, user, frozen_clock, policy, third):
    trigger = make(user, overlap_policy=policy, max_concurrent=2)
    frozen_clock.set(minute(0))
    first = start(fire(trigger, 0))
    frozen_clock.set(minute(1))
    second = start(fire(trigger, 1))
    assert second.status == ExecutionStatus.RUNNING
    frozen_clock.set(minute(2))
    row = fire(trigger, 2)
    assert state(row) == third
    execution_complete(execution=first, status=ExecutionStatus.SUCCEEDED)
    if policy != "skip":
        assert state(row)[0] == ExecutionStatus.PENDING, "one run ended: the waiting slot takes its place"


def test_replace_with_max_concurrent_two_cancels_only_the_oldest(make, user, frozen_clock):
    trigger = make(user, overlap_policy="replace", max_concurrent=2)
    frozen_clock.set(minute(0))
    first = start(fire(trigger, 0))
    frozen_clock.set(minute(1))
    second = start(fire(trigger, 1))
    frozen_clock.set(minute(2))
    third = fire(trigger, 2)
    assert state(first)[0] == ExecutionStatus.CANCELLED
    assert state(second)[0] == ExecutionStatus.RUNNING
    assert state(third)[0] == ExecutionStatus.PENDING


# --- API and admin ----------------------------------------------------------------------------------------


def test_limits_endpoint_shows_the_defaults_then_the_operators_values(user, frozen_clock, settings, make):
    settings.SCHEDULER_MAX_TRIGGERS_PER_OWNER = 7
    settings.SCHEDULER_MAX_CONCURRENT_PER_OWNER = 3
    settings.SCHEDULER_MAX_CONCURRENT_PER_WORKFLOW = 0
    make(user)
    api = client_for(user)
    body = api.get("/api/v1/limits/").json()
    assert body == {
        "max_triggers": 7,
        "max_concurrent_runs": 3,
        "max_concurrent_per_workflow": 0,
        "custom": False,
        "triggers": 1,
    }
    services.owner_limits_set(owner=user, max_concurrent_runs=10)
    body = api.get("/api/v1/limits").json()
    assert (body["max_concurrent_runs"], body["max_triggers"], body["custom"]) == (10, 7, True)


@pytest.mark.parametrize("value", [0, 1001, "two", None])
def test_a_bad_max_concurrent_is_a_400_naming_the_field(user, frozen_clock, value):
    frozen_clock.set(T0)
    body = {"name": "n", "workflow_id": "wf", "cron_expression": "* * * * *", "max_concurrent": value}
    response = client_for(user).post("/api/v1/triggers/", body, format="json")
    assert response.status_code == 400, response.content
    assert "max_concurrent" in response.json()


def test_the_admin_edits_a_users_limits_through_the_service(admin_client, user):
    page = admin_client.get("/admin/schedules/ownerlimits/add/")
    assert page.status_code == 200
    response = admin_client.post(
        "/admin/schedules/ownerlimits/add/",
        {"owner": user.pk, "max_triggers": "", "max_concurrent_runs": "2", "note": "batch team"},
    )
    assert response.status_code == 302, response.content[:2000]
    row = OwnerLimits.objects.get(owner=user)
    assert (row.max_triggers, row.max_concurrent_runs, row.note) == (None, 2, "batch team")
    assert admin_client.get("/admin/schedules/ownerlimits/").status_code == 200


def test_the_service_refuses_a_negative_or_unknown_limit(user):
    with pytest.raises(ValidationError) as caught:
        services.owner_limits_set(owner=user, max_concurrent_runs=-1)
    assert "max_concurrent_runs" in caught.value.message_dict
    with pytest.raises(ValidationError):
        services.owner_limits_set(owner=user, max_runs=3)
