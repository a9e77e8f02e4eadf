"""The agent task queue adapter, replaying that system's documented requests (`../shared/seeds/004_*`):
`POST /api/agent/execute` with its curl body and Bearer key, `GET`/`POST /api/cron/check-scheduled-tasks`
with `Authorization: Bearer $CRON_SECRET`, and its response shape `{status, scheduledTasks,
tasksCurrentlyDue, timestamp}`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from executions.models import Execution, ExecutionOrigin, ExecutionStatus
from schedules.models import Trigger
from tests.integration.test_api_plumbing import api_test_defaults  # noqa: F401 - an autouse fixture

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

EXECUTE = "/api/agent/execute"
CHECK = "/api/cron/check-scheduled-tasks"
DOCUMENTED = {
    "goal": "Check competitor pricing and send report",
    "agentType": "research_agent",
    "async": True,
    "schedule": {"enabled": True, "cron": "0 9 * * *", "timezone": "America/New_York"},
}


@pytest.fixture
def api(user, frozen_clock) -> APIClient:
    frozen_clock.set(datetime(2025, 2, 5, 12, 0, tzinfo=UTC))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.get_or_create(user=user)[0].key}")
    return client


def test_the_documented_scheduled_task_is_a_cron_trigger_in_its_zone(api, user, redis_client) -> None:
    response = api.post(EXECUTE, DOCUMENTED, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body == {
        "success": True,
        "taskId": body["taskId"],
        "status": "scheduled",
        "schedule": {"enabled": True, "cron": "0 9 * * *", "timezone": "America/New_York"},
        "nextRunAt": "2025-02-05T14:00:00Z",  # 09:00 EST
    }
    trigger = Trigger.objects.get(pk=body["taskId"])
    assert (trigger.owner, trigger.workflow_id, trigger.priority) == (user, "research_agent", "medium")
    assert trigger.input == {"goal": DOCUMENTED["goal"], "agentType": "research_agent"}


def test_a_schedule_without_a_zone_is_read_in_that_systems_default(api, redis_client) -> None:
    body = {**DOCUMENTED, "schedule": {"enabled": True, "cron": "0 9 * * 1"}}
    response = api.post(EXECUTE, body, format="json")
    assert response.status_code == 201, response.content
    assert Trigger.objects.get(pk=response.json()["taskId"]).timezone == settings.AGENT_ADAPTER_TIMEZONE


def test_an_immediate_task_is_one_manual_run_started_at_once(api, redis_client) -> None:
    response = api.post(EXECUTE, {"goal": "Summarise the news", "priority": "urgent"}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["success"] is True
    run = Execution.objects.get(pk=body["executionId"])
    assert (run.origin, run.priority) == (ExecutionOrigin.MANUAL, "urgent")
    assert run.idempotency_key == f"agent-execute:{body['taskId']}"
    trigger = Trigger.objects.get(pk=body["taskId"])
    assert trigger.status == "paused", "the holder never fires a scheduled run beside the manual one"


def test_a_synchronous_task_answers_its_result_when_the_run_ends(api, settings, redis_client, monkeypatch):
    """`async: false` polls the run; here it ends during the first poll (as a worker would record it)."""
    from executions.api import agent

    def run_ends(_seconds: float) -> None:
        Execution.objects.filter(trigger__name="quick").update(
            status=ExecutionStatus.SUCCEEDED, result={"answer": 42}
        )

    monkeypatch.setattr(agent.time, "sleep", run_ends)
    response = api.post(EXECUTE, {"goal": "quick", "async": False}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["success"], body["result"], body["error"]) == (
        "completed",
        True,
        {"answer": 42},
        None,
    )


def test_a_synchronous_task_still_running_when_the_wait_ends_is_a_202(api, settings, redis_client) -> None:
    settings.AGENT_SYNC_WAIT_SECONDS = 0.3
    waiting = api.post(EXECUTE, {"goal": "slow", "async": False}, format="json")
    assert waiting.status_code == 202, "still going when the wait ends: read it again later"
    assert waiting.json()["status"] == "pending"
    assert "result" not in waiting.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"agentType": "x"}, "goal", id="no-goal"),
        pytest.param({**DOCUMENTED, "priority": "whenever"}, "priority", id="bad-priority"),
        pytest.param({**DOCUMENTED, "schedule": {"enabled": True, "cron": "0 25 * * *"}}, "schedule.cron",
                     id="bad-cron"),
        pytest.param({**DOCUMENTED, "schedule": {"enabled": True, "cron": "0 9 * * *", "timezone": "Nope"}},
                     "schedule.timezone", id="bad-zone"),
        pytest.param({**DOCUMENTED, "async": "perhaps"}, "async", id="bad-async"),
    ],
)  # fmt: skip
def test_bad_input_is_a_400_naming_the_field_and_saves_nothing(api, body, field) -> None:
    response = api.post(EXECUTE, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Trigger.objects.exists()


def test_the_cron_endpoint_reports_with_its_secret(client, api, settings, redis_client, frozen_clock) -> None:
    settings.CRON_SECRET = "cron-secret-for-this-test"
    api.post(EXECUTE, DOCUMENTED, format="json")
    frozen_clock.set(datetime(2025, 2, 5, 15, 0, tzinfo=UTC))  # past 09:00 New York: one task due
    auth = {"HTTP_AUTHORIZATION": "Bearer cron-secret-for-this-test"}
    body = client.get(CHECK, **auth).json()
    assert body == {"status": "healthy", "scheduledTasks": 1, "tasksCurrentlyDue": 1,
                    "timestamp": "2025-02-05T15:00:00Z"}  # fmt: skip
    posted = client.post(CHECK, **auth)
    assert posted.status_code == 200
    assert set(posted.json()) == {"status", "scheduledTasks", "tasksCurrentlyDue", "timestamp", "queued"}
    assert client.get(CHECK, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get(CHECK).status_code == 401
    assert client.delete(CHECK, **auth).status_code == 405


def test_the_cron_endpoint_does_not_exist_without_a_secret(client, settings) -> None:
    settings.CRON_SECRET = ""
    assert client.get(CHECK, HTTP_AUTHORIZATION="Bearer anything").status_code == 404
