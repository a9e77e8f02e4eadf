"""`/api/scheduler/…`: the earlier scheduler's endpoints, with their exact JSON, for frontends written
against it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from executions.models import FINISHED_STATUSES, Execution, ExecutionOrigin, ExecutionStatus
from schedules import services
from schedules.api.compat import HISTORY_STATUSES, HistoryStatus
from schedules.models import Trigger, TriggerStatus
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
    make_execution,
    make_trigger,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TRIGGER_ID = "3f2b8c1e-6a0d-4a8e-9d67-0c4f5b2e7a91"
REGISTER = {
    "triggerId": TRIGGER_ID,
    "workflowId": "wf-report",
    "cronExpression": "0 9 * * 1-5",
    "timezone": "America/Los_Angeles",
    "enabled": True,
}


@pytest.fixture
def api(user, frozen_clock):
    frozen_clock.set(T0)
    return client_for(user)


@pytest.mark.parametrize("slash", ["", "/"])
def test_register_creates_the_trigger_with_the_client_id(api, user, slash: str) -> None:
    response = api.post(f"/api/scheduler/register{slash}", REGISTER, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"success": True, "message": "Schedule registered successfully"}
    trigger = Trigger.objects.get(pk=TRIGGER_ID)
    assert (trigger.owner, trigger.name, trigger.workflow_id) == (user, "wf-report", "wf-report")
    assert (trigger.cron_expression, trigger.timezone, trigger.status) == (
        "0 9 * * 1-5",
        "America/Los_Angeles",
        TriggerStatus.ACTIVE,
    )
    assert trigger.next_run_at == datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


def test_register_disabled_is_paused_and_registering_again_updates(api) -> None:
    api.post("/api/scheduler/register", {**REGISTER, "enabled": False}, format="json")
    assert Trigger.objects.get(pk=TRIGGER_ID).status == TriggerStatus.PAUSED
    response = api.post(
        "/api/scheduler/register",
        {**REGISTER, "cronExpression": "*/15 * * * *", "enabled": True},
        format="json",
    )
    assert response.json() == {"success": True, "message": "Schedule registered successfully"}
    trigger = Trigger.objects.get(pk=TRIGGER_ID)
    assert (trigger.cron_expression, trigger.status) == ("*/15 * * * *", TriggerStatus.ACTIVE)
    api.post("/api/scheduler/register", {**REGISTER, "enabled": False}, format="json")
    assert Trigger.objects.get(pk=TRIGGER_ID).status == TriggerStatus.PAUSED
    assert Trigger.objects.count() == 1


def test_register_defaults_to_utc_and_enabled(api) -> None:
    body = {k: v for k, v in REGISTER.items() if k not in ("timezone", "enabled")}
    assert api.post("/api/scheduler/register", body, format="json").json()["success"] is True
    trigger = Trigger.objects.get(pk=TRIGGER_ID)
    assert (trigger.timezone, trigger.status) == ("UTC", TriggerStatus.ACTIVE)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        pytest.param({"cronExpression": "0 25 * * *"},
                     "cronExpression: field 2 (hour): 25 is out of range 0-23", id="bad-cron"),
        pytest.param({"timezone": "Mars/Base"}, "timezone: ", id="bad-zone"),
        pytest.param({"triggerId": "nope"}, "triggerId: ", id="bad-id"),
        pytest.param({"workflowId": ""}, "workflowId: ", id="empty-workflow"),
        pytest.param({"workflowId": "w" * 201}, "workflowId: ", id="long-workflow"),
        pytest.param({"cronExpression": None}, "cronExpression: ", id="null-cron"),
    ],
)  # fmt: skip
def test_register_errors_are_the_compat_envelope_naming_the_field(api, change, error: str) -> None:
    response = api.post("/api/scheduler/register", {**REGISTER, **change}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"success", "error"}
    assert body["success"] is False
    assert body["error"].startswith(error), body
    assert not Trigger.objects.exists()


def test_register_missing_fields_and_malformed_json(api) -> None:
    missing = api.post("/api/scheduler/register", {"triggerId": TRIGGER_ID}, format="json").json()
    assert missing == {"success": False, "error": "workflowId: This field is required."}
    broken = api.post("/api/scheduler/register", "{", content_type="application/json")
    assert broken.status_code == 400
    assert broken.json()["error"].startswith("body: JSON parse error")


def test_unregister_and_pause_resume(api) -> None:
    api.post("/api/scheduler/register", REGISTER, format="json")
    paused = api.post("/api/scheduler/pause", {"triggerId": TRIGGER_ID, "action": "pause"}, format="json")
    assert paused.json() == {"success": True, "message": "Schedule paused successfully"}
    assert Trigger.objects.get(pk=TRIGGER_ID).status == TriggerStatus.PAUSED
    resumed = api.post("/api/scheduler/pause/", {"triggerId": TRIGGER_ID, "action": "resume"}, format="json")
    assert resumed.json() == {"success": True, "message": "Schedule resumed successfully"}
    assert Trigger.objects.get(pk=TRIGGER_ID).status == TriggerStatus.ACTIVE
    bad = api.post("/api/scheduler/pause", {"triggerId": TRIGGER_ID, "action": "stop"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("action: ")
    gone = api.post("/api/scheduler/unregister", {"triggerId": TRIGGER_ID}, format="json")
    assert gone.json() == {"success": True, "message": "Schedule unregistered successfully"}
    assert Trigger.objects.get(pk=TRIGGER_ID).deleted_at is not None
    again = api.post("/api/scheduler/unregister", {"triggerId": TRIGGER_ID}, format="json")
    assert again.status_code == 404
    assert again.json() == {"success": False, "error": "triggerId: no schedule with this id"}


def test_history_has_the_exact_shape_newest_first_and_limited(api, user) -> None:
    api.post("/api/scheduler/register", REGISTER, format="json")
    trigger = Trigger.objects.get(pk=TRIGGER_ID)
    scheduled = make_execution(
        trigger,
        origin=ExecutionOrigin.SCHEDULE,
        slot=T0 - timedelta(hours=1),
        requested_at=None,
        started_at=T0 - timedelta(hours=1),
        duration_ms=5120,
        run_id="run-42",
    )
    failed = make_execution(trigger, status=ExecutionStatus.FAILED, error="HTTP 500", attempts=3)
    response = api.get(f"/api/scheduler/history?triggerId={TRIGGER_ID}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"executions", "stats"}
    assert body["stats"] == {
        "total": 2,
        "successful": 1,
        "failed": 1,
        "skipped": 0,
        "successRate": 50.0,
        "avgDurationMs": 5120,
    }
    newest, oldest = body["executions"]
    assert newest["executionId"] == str(failed.pk)
    assert (newest["status"], newest["error"], newest["runId"]) == ("failed", "HTTP 500", None)
    assert newest["metadata"]["attempts"] == 3
    assert oldest == {
        "executionId": str(scheduled.pk),
        "triggerId": TRIGGER_ID,
        "workflowId": "wf-report",
        "scheduledAt": "2026-03-02T11:00:00Z",
        "executedAt": "2026-03-02T11:00:00Z",
        "status": "success",
        "error": None,
        "runId": "run-42",
        "durationMs": 5120,
        "metadata": {
            "state": "succeeded",
            "origin": "schedule",
            "attempts": 0,
            "skipReason": None,
            "rerunOf": None,
            "usage": None,
        },
    }
    limited = api.get(f"/api/scheduler/history/?triggerId={TRIGGER_ID}&limit=1").json()
    assert [e["executionId"] for e in limited["executions"]] == [str(failed.pk)]
    assert limited["stats"]["total"] == 2, "stats cover the whole history, not the page"


def test_an_unregistered_id_is_registered_again_with_its_history(api, user, frozen_clock) -> None:
    api.post("/api/scheduler/register", REGISTER, format="json")
    earlier = make_execution(Trigger.objects.get(pk=TRIGGER_ID), duration_ms=100)
    api.post("/api/scheduler/unregister", {"triggerId": TRIGGER_ID}, format="json")
    frozen_clock.set(T0 + timedelta(days=1))
    again = {**REGISTER, "cronExpression": "*/15 * * * *"}
    response = api.post("/api/scheduler/register", again, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"success": True, "message": "Schedule registered successfully"}
    trigger = Trigger.objects.get(pk=TRIGGER_ID)
    assert (trigger.deleted_at, trigger.status, trigger.cron_expression) == (
        None,
        TriggerStatus.ACTIVE,
        "*/15 * * * *",
    )
    assert trigger.next_run_at == T0 + timedelta(days=1, minutes=15)
    assert trigger.schedule_changed_at == T0 + timedelta(days=1), "no catch-up of the deleted time"
    history = api.get(f"/api/scheduler/history?triggerId={TRIGGER_ID}").json()
    assert [e["executionId"] for e in history["executions"]] == [str(earlier.pk)]
    assert Trigger.objects.count() == 1
    # Registered again disabled, it comes back paused; and an invalid body changes nothing.
    api.post("/api/scheduler/unregister", {"triggerId": TRIGGER_ID}, format="json")
    bad = api.post("/api/scheduler/register", {**REGISTER, "timezone": "Mars/Base"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("timezone: ")
    assert Trigger.objects.get(pk=TRIGGER_ID).deleted_at is not None, "nothing half-saved"
    api.post("/api/scheduler/register", {**REGISTER, "enabled": False}, format="json")
    trigger = Trigger.objects.get(pk=TRIGGER_ID)
    assert (trigger.deleted_at, trigger.status, trigger.next_run_at) == (None, TriggerStatus.PAUSED, None)


def test_someone_elses_unregistered_id_stays_theirs(api, other_user) -> None:
    theirs = make_trigger(other_user, id=uuid.UUID(TRIGGER_ID))
    services.trigger_delete(trigger=theirs)
    response = api.post("/api/scheduler/register", REGISTER, format="json")
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "triggerId: no schedule with this id"}
    theirs.refresh_from_db()
    assert (theirs.owner, theirs.deleted_at is not None) == (other_user, True)


def test_history_survives_unregister(api, user) -> None:
    trigger = make_trigger(user, id=uuid.UUID(TRIGGER_ID))
    make_execution(trigger)
    api.post("/api/scheduler/unregister", {"triggerId": TRIGGER_ID}, format="json")
    body = api.get(f"/api/scheduler/history?triggerId={TRIGGER_ID}").json()
    assert len(body["executions"]) == 1


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        pytest.param("", 400, "triggerId: This field is required.", id="missing-id"),
        pytest.param("triggerId=nope", 400, "triggerId: Must be a valid UUID.", id="bad-id"),
        pytest.param(f"triggerId={TRIGGER_ID}&limit=0", 400, "limit: ", id="limit-zero"),
        pytest.param(f"triggerId={TRIGGER_ID}&limit=lots", 400, "limit: ", id="limit-not-a-number"),
        pytest.param(f"triggerId={uuid.uuid4()}", 404, "triggerId: no schedule with this id", id="unknown"),
    ],
)
def test_history_errors(api, query: str, status: int, error: str) -> None:
    api.post("/api/scheduler/register", REGISTER, format="json")
    response = api.get(f"/api/scheduler/history?{query}")
    assert response.status_code == status
    assert response.json()["success"] is False
    assert response.json()["error"].startswith(error)


def test_compat_needs_the_same_authentication(client) -> None:
    response = client.post("/api/scheduler/register", REGISTER, content_type="application/json")
    assert response.status_code == 401
    assert response.json() == {"success": False, "error": "Authentication credentials were not provided."}
    assert client.get(f"/api/scheduler/history?triggerId={TRIGGER_ID}").status_code == 401


# --- The documented client, verbatim (../shared/seeds/000: "Workflow Scheduling System") --------------------
#
# Each request below is the one that document shows, byte for byte as a browser sends it: `JSON.stringify`
# writes compact JSON, and `fetch` with a string body and no headers declares `text/plain;charset=UTF-8`. Only
# the placeholder `'trigger-uuid'` is a real UUID here, as the API reference says it is.

FETCH_TEXT = "text/plain;charset=UTF-8"


def stringify(value: dict) -> str:
    """What JavaScript's `JSON.stringify` writes: no spaces."""
    return json.dumps(value, separators=(",", ":"))


def test_documented_register_snippet(api) -> None:
    body = stringify(
        {
            "triggerId": TRIGGER_ID,
            "workflowId": "workflow-uuid",
            "cronExpression": "0 9 * * 1-5",
            "timezone": "America/Los_Angeles",
            "enabled": True,
        }
    )
    response = api.post("/api/scheduler/register", body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json() == {"success": True, "message": "Schedule registered successfully"}


@pytest.mark.parametrize(
    ("action", "status", "message"),
    [
        pytest.param("pause", TriggerStatus.PAUSED, "Schedule paused successfully", id="pause"),
        pytest.param("resume", TriggerStatus.ACTIVE, "Schedule resumed successfully", id="resume"),
    ],
)
def test_documented_pause_and_resume_snippets_without_headers(api, action, status, message) -> None:
    api.post("/api/scheduler/register", {**REGISTER, "enabled": action == "resume"}, format="json")
    body = stringify({"triggerId": TRIGGER_ID, "action": action})
    response = api.post("/api/scheduler/pause", body, content_type=FETCH_TEXT)
    assert response.status_code == 200, response.content
    assert response.json() == {"success": True, "message": message}
    assert Trigger.objects.get(pk=TRIGGER_ID).status == status


@pytest.mark.parametrize(
    ("content_type", "body", "error"),
    [
        pytest.param(FETCH_TEXT, "{triggerId:", "body: JSON parse error - ", id="text-plain-broken"),
        pytest.param(FETCH_TEXT, "", "triggerId: This field is required.", id="text-plain-empty"),
        pytest.param(FETCH_TEXT, "[1]", "Invalid data. Expected a dictionary", id="text-plain-array"),
        pytest.param("application/x-www-form-urlencoded", "a=b", "body: JSON parse error - ",
                     id="form-is-read-as-json"),
        pytest.param("application/octet-stream", "\xff", "body: JSON parse error - ", id="not-utf8"),
    ],
)  # fmt: skip
def test_a_body_that_is_not_json_is_a_400_naming_the_problem(api, content_type, body, error) -> None:
    api.post("/api/scheduler/register", REGISTER, format="json")
    raw = body.encode("latin-1") if body == "\xff" else body.encode()
    response = api.generic("POST", "/api/scheduler/pause", raw, content_type=content_type)
    assert response.status_code == 400, response.content
    assert set(response.json()) == {"success", "error"}
    assert response.json()["error"].startswith(error), response.json()
    assert Trigger.objects.get(pk=TRIGGER_ID).status == TriggerStatus.ACTIVE


def test_documented_history_snippet_reads_success_and_that_systems_stats(api) -> None:
    """`const { executions, stats } = await response.json()`, with the document's own figures: 95 of 100
    successful, 3 failed, 2 skipped → successRate 95.0 (the skipped runs count in the total)."""
    api.post("/api/scheduler/register", REGISTER, format="json")
    trigger = Trigger.objects.get(pk=TRIGGER_ID)
    statuses = [ExecutionStatus.SUCCEEDED] * 95 + [ExecutionStatus.FAILED] * 2 + [ExecutionStatus.TIMED_OUT]
    Execution.objects.bulk_create(
        [
            Execution(trigger=trigger, origin=ExecutionOrigin.MANUAL, requested_at=T0, status=status,
                      duration_ms=2500)
            for status in statuses
        ]
        + [
            Execution(trigger=trigger, origin=ExecutionOrigin.SCHEDULE, slot=T0 - timedelta(days=d),
                      status=ExecutionStatus.SKIPPED, skip_reason="overlap")
            for d in (1, 2)
        ]
        # Not ended yet: that system wrote a history row only when a run had ended.
        + [Execution(trigger=trigger, origin=ExecutionOrigin.MANUAL, requested_at=T0, status=status)
           for status in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)]
    )  # fmt: skip
    response = api.get("/api/scheduler/history?triggerId=" + TRIGGER_ID + "&limit=50")
    assert response.status_code == 200
    executions, stats = response.json()["executions"], response.json()["stats"]
    assert stats == {
        "total": 100,
        "successful": 95,
        "failed": 3,
        "skipped": 2,
        "successRate": 95.0,
        "avgDurationMs": 2500,
    }
    assert len(executions) == 50
    full = api.get(f"/api/scheduler/history?triggerId={TRIGGER_ID}&limit=1000").json()["executions"]
    words = sorted({e["status"] for e in full})
    assert words == ["failed", "skipped", "success"]
    assert sum(e["status"] == "success" for e in full) == 95


def test_every_finished_state_has_exactly_one_word_of_that_system() -> None:
    covered = [status for statuses in HISTORY_STATUSES.values() for status in statuses]
    assert sorted(covered) == sorted(FINISHED_STATUSES)
    assert set(HISTORY_STATUSES) == set(HistoryStatus)
    assert HistoryStatus.values == ["success", "failed", "skipped"]


def test_a_cancelled_run_is_a_failure_saying_so(api) -> None:
    api.post("/api/scheduler/register", REGISTER, format="json")
    make_execution(Trigger.objects.get(pk=TRIGGER_ID), status=ExecutionStatus.CANCELLED)
    body = api.get(f"/api/scheduler/history?triggerId={TRIGGER_ID}").json()
    (run,) = body["executions"]
    assert (run["status"], run["error"], run["metadata"]["state"]) == ("failed", "cancelled", "cancelled")
    assert body["stats"]["successRate"] == 0.0


def test_an_empty_history_has_no_rate(api) -> None:
    api.post("/api/scheduler/register", REGISTER, format="json")
    body = api.get(f"/api/scheduler/history?triggerId={TRIGGER_ID}").json()
    assert body == {
        "executions": [],
        "stats": {"total": 0, "successful": 0, "failed": 0, "skipped": 0, "successRate": None,
                  "avgDurationMs": None},
    }  # fmt: skip
