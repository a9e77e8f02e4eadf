"""The Python cron service adapter, replaying its README's requests (`../shared/seeds/002_*`): upsert with a
client-chosen id, 5- and 6-field seconds-first expressions, pause, get, list, runs, delete, the run
launcher with its idempotency key, and /health."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from executions.models import Execution, ExecutionOrigin
from schedules.api.cronsvc import trigger_id_of
from schedules.models import Trigger
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
    make_execution,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

QUICKSTART = {
    "workflow_id": "example_workflow",
    "version": 1,
    "user_id": "user123",
    "cron_expr": "0 */5 * * * *",
    "timezone": "America/New_York",
}
FULL = {
    "schedule_id": "optional_custom_id",
    "workflow_id": "workflow_123",
    "version": 1,
    "user_id": "user_456",
    "cron_expr": "0 */5 * * * *",
    "timezone": "America/New_York",
    "start_at": "2024-01-01T00:00:00Z",
    "end_at": "2027-12-31T23:59:59Z",
    "jitter_ms": 1000,
    "overlap_policy": "skip",
    "catchup_policy": "none",
}


@pytest.fixture
def api(user, frozen_clock, redis_client):
    frozen_clock.set(datetime(2026, 3, 2, 12, 1, tzinfo=UTC))
    return client_for(user)


def test_the_quickstart_upsert_fires_every_five_minutes(api, user) -> None:
    response = api.post("/schedules/upsert", QUICKSTART, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["cron_expr"] == "0 */5 * * * *"
    assert body["next_run_at"] == "2026-03-02T12:05:00Z"
    assert (body["workflow_id"], body["version"], body["user_id"], body["paused"]) == (
        "example_workflow", 1, "user123", False,
    )  # fmt: skip
    assert Trigger.objects.get(pk=trigger_id_of(user, body["schedule_id"])).owner == user


def test_a_client_chosen_id_is_the_same_schedule_on_every_upsert(api, user) -> None:
    first = api.post("/schedules/upsert", FULL, format="json").json()
    assert first["schedule_id"] == "optional_custom_id"
    assert (first["jitter_ms"], first["overlap_policy"], first["catchup_policy"]) == (1000, "skip", "none")
    again = api.post("/schedules/upsert", {**FULL, "cron_expr": "0 0 12 * * 1"}, format="json").json()
    assert again["schedule_id"] == "optional_custom_id"
    assert Trigger.objects.filter(owner=user).count() == 1
    stored = Trigger.objects.get(pk=trigger_id_of(user, "optional_custom_id"))
    assert stored.cron_expression == "0 0 12 * * 1", "Monday at noon, seconds first"
    assert api.get("/schedules/optional_custom_id").json()["cron_expr"] == "0 0 12 * * 1"


@pytest.mark.parametrize(
    ("cron_expr", "next_run"),
    [
        pytest.param("0 0 * * *", "2026-03-02T13:00:00Z", id="five-fields-every-hour"),
        pytest.param("0 0 0 * *", "2026-03-03T05:00:00Z", id="five-fields-midnight"),  # New York
        pytest.param("0 0 12 * * 1", "2026-03-02T17:00:00Z", id="six-fields-monday-noon"),
    ],
)
def test_its_five_field_expressions_are_seconds_first(api, cron_expr, next_run) -> None:
    body = api.post("/schedules/upsert", {**QUICKSTART, "cron_expr": cron_expr}, format="json").json()
    assert body["next_run_at"] == next_run
    assert body["cron_expr"] == cron_expr, "given back as sent"


def test_pause_get_list_runs_and_delete(api, user) -> None:
    api.post("/schedules/upsert", FULL, format="json")
    api.post("/schedules/upsert", {**QUICKSTART, "schedule_id": "other", "workflow_id": "w2"}, format="json")
    paused = api.post("/schedules/optional_custom_id/pause", {"paused": True}, format="json").json()
    assert (paused["paused"], paused["next_run_at"]) == (True, None)
    unpaused = api.post("/schedules/optional_custom_id/pause", {"paused": False}, format="json").json()
    assert unpaused["paused"] is False

    listed = api.get("/schedules?user_id=user_456&workflow_id=workflow_123&limit=100").json()
    assert [s["schedule_id"] for s in listed] == ["optional_custom_id"]
    assert len(api.get("/schedules?limit=1").json()) == 1

    trigger = Trigger.objects.get(pk=trigger_id_of(user, "optional_custom_id"))
    make_execution(trigger)
    runs = api.get("/schedules/optional_custom_id/runs?limit=10").json()
    assert len(runs) == 1
    assert runs[0]["schedule_id"] == "optional_custom_id"

    deleted = api.delete("/schedules/optional_custom_id").json()
    assert deleted == {"deleted": True, "schedule_id": "optional_custom_id"}
    assert api.get("/schedules/optional_custom_id").status_code == 404
    assert Execution.objects.filter(trigger=trigger).exists(), "its runs stay"
    again = api.post("/schedules/upsert", FULL, format="json")
    assert again.status_code == 200, "an id deleted can be upserted again"


def test_the_run_launcher_starts_one_run_per_idempotency_key(api, user) -> None:
    url = ("/run-launcher/start?workflow_id=workflow123&version=1&user_id=user456"
           "&scheduled_for=2024-01-01T00:00:00Z&idempotency_key=abc123")  # fmt: skip
    first = api.post(url)
    assert first.status_code == 201, first.content
    again = api.post(url)
    assert again.status_code == 200
    assert again.json()["run_id"] == first.json()["run_id"]
    run = Execution.objects.get(pk=first.json()["run_id"])
    assert (run.origin, run.idempotency_key) == (ExecutionOrigin.MANUAL, "abc123")
    assert run.trigger.workflow_id == "workflow123"
    assert run.input["scheduled_for"] == "2024-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({**QUICKSTART, "cron_expr": "0 */5 * *"}, "cron_expr", id="four-fields"),
        pytest.param({**QUICKSTART, "cron_expr": "0 */5 * * * * *"}, "cron_expr", id="seven-fields"),
        pytest.param({**QUICKSTART, "cron_expr": "0 99 * * * *"}, "cron_expr", id="out-of-range"),
        pytest.param({**QUICKSTART, "timezone": "Moon/Base"}, "timezone", id="bad-zone"),
        pytest.param({**QUICKSTART, "overlap_policy": "replace"}, "overlap_policy", id="not-its-policy"),
        pytest.param({**QUICKSTART, "jitter_ms": -5}, "jitter_ms", id="negative-jitter"),
        pytest.param({**QUICKSTART, "workflow_id": ""}, "workflow_id", id="no-workflow"),
    ],
)
def test_bad_input_is_a_400_naming_its_field(api, body, field) -> None:
    response = api.post("/schedules/upsert", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Trigger.objects.exists()


def test_another_users_schedule_id_is_their_own(api, other_user) -> None:
    api.post("/schedules/upsert", FULL, format="json")
    theirs = client_for(other_user)
    assert theirs.get("/schedules/optional_custom_id").status_code == 404
    assert theirs.get("/schedules").json() == []
    created = theirs.post("/schedules/upsert", FULL, format="json")
    assert created.status_code == 200, "the same client id names a different schedule for another owner"
    assert Trigger.objects.count() == 2


def test_health_answers_in_json(client) -> None:
    response = client.get("/health")
    assert response["Content-Type"].startswith("application/json")
    assert "status" in response.json()


# --- The worker switch -----------------------------------------------------------------------------------


def test_stopping_the_worker_records_due_slots_skipped_and_start_runs_them_again(
    api, user, django_user_model, frozen_clock
) -> None:
    from executions.models import ExecutionStatus
    from executions.services import execution_fire

    staff = client_for(
        django_user_model.objects.create_user(username="ops", password="pw-ops", is_staff=True)
    )
    assert api.post("/worker/stop").status_code == 403, "staff only"
    body = api.post("/schedules/upsert", {**QUICKSTART, "schedule_id": "s"}, format="json").json()
    trigger = Trigger.objects.get(pk=trigger_id_of(user, "s"))

    stopped = staff.post("/worker/stop", {"reason": "maintenance"}, format="json").json()
    assert (stopped["running"], stopped["changed_by"], stopped["reason"]) == (False, "ops", "maintenance")
    slot = datetime.fromisoformat(body["next_run_at"].replace("Z", "+00:00"))
    frozen_clock.set(slot)
    (row,) = execution_fire(trigger_id=trigger.pk, slot=slot)
    assert (row.status, row.skip_reason) == (ExecutionStatus.SKIPPED, "stopped"), "recorded, not run"

    status = staff.get("/worker/status").json()
    assert status["running"] is False
    assert {"leader", "last_tick_at"} <= set(status["beat"])
    assert "queues" in status["fleet"]

    assert staff.post("/worker/start").json()["running"] is True
    later = slot.replace(minute=slot.minute + 5)
    frozen_clock.set(later)
    (again,) = execution_fire(trigger_id=trigger.pk, slot=later)
    assert again.status != ExecutionStatus.SKIPPED
    runs = api.get("/schedules/s/runs").json()
    assert [r["skip_reason"] for r in runs] == [None, "stopped"]
