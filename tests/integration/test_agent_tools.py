"""Agent tools: definitions an agent framework accepts, calls that behave like the REST API (the same 400s,
the same isolation), and the same tools over MCP, driven by a real MCP client session against
`manage.py mcp` in a subprocess."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import jsonschema
import pytest

from schedules.models import Trigger
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
    make_execution,
    make_trigger,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = "/api/v1/agent-tools/"
CALL = "/api/v1/agent-tools/call"
NAMES = [
    "schedule_create",
    "schedule_pause",
    "schedule_resume",
    "schedule_stop",
    "schedule_list",
    "schedule_runs",
]


def call(api, tool: str, **arguments):
    return api.post(CALL, {"name": tool, "arguments": arguments}, format="json")


def test_definitions_are_function_calling_tools_with_valid_schemas(user) -> None:
    body = client_for(user).get(TOOLS).json()
    assert [tool["function"]["name"] for tool in body["tools"]] == NAMES
    for tool in body["tools"]:
        assert tool["type"] == "function"
        assert tool["function"]["description"]
        jsonschema.Draft202012Validator.check_schema(tool["function"]["parameters"])
        assert tool["function"]["parameters"]["type"] == "object"


def test_an_agent_creates_lists_pauses_resumes_and_stops_a_schedule(user) -> None:
    api = client_for(user)
    created = call(
        api,
        "schedule_create",
        name="digest",
        workflow_id="wf",
        cron_expression="0 8 * * *",
        timezone="Europe/Paris",
    )
    assert created.status_code == 200, created.content
    schedule = created.json()["result"]
    assert schedule["next_run_at"] is not None
    assert schedule["schedule_description"].endswith("(Europe/Paris)")
    assert Trigger.objects.get(pk=schedule["id"]).owner == user

    listed = call(api, "schedule_list").json()["result"]["schedules"]
    assert [s["id"] for s in listed] == [schedule["id"]]
    paused = call(api, "schedule_pause", id=schedule["id"], reason="holiday").json()["result"]
    assert (paused["status"], paused["next_run_at"]) == ("paused", None)
    assert (
        call(api, "schedule_list", status="paused").json()["result"]["schedules"][0]["id"] == schedule["id"]
    )
    assert call(api, "schedule_resume", id=schedule["id"]).json()["result"]["status"] == "active"
    stopped = call(api, "schedule_stop", id=schedule["id"]).json()["result"]
    assert stopped == {"id": schedule["id"], "stopped": True, "history_kept": True}
    assert call(api, "schedule_list").json()["result"]["schedules"] == []


def test_runs_are_the_schedules_history_newest_first(user) -> None:
    trigger = make_trigger(user)
    first, second = make_execution(trigger), make_execution(trigger)
    runs = call(client_for(user), "schedule_runs", id=str(trigger.pk), limit=5).json()["result"]["runs"]
    assert [run["id"] for run in runs] == [str(second.pk), str(first.pk)]


@pytest.mark.parametrize(
    ("name", "arguments", "field"),
    [
        pytest.param("schedule_create", {"name": "x", "workflow_id": "w", "cron_expression": "61 * * * *"},
                     "cron_expression", id="bad-cron"),
        pytest.param("schedule_create", {"name": "x", "workflow_id": "w", "cron_expression": "* * * * *",
                                         "timezone": "Mars/Olympus"}, "timezone", id="bad-zone"),
        pytest.param("schedule_create", {"workflow_id": "w"}, "name", id="missing-name"),
        pytest.param("schedule_create", {"name": "x", "workflow_id": "w", "colour": "red"}, "colour",
                     id="unknown-argument"),
        pytest.param("schedule_list", {"limit": 1000}, "limit", id="limit-too-big"),
        pytest.param("schedule_list", {"status": "sleeping"}, "status", id="bad-status"),
        pytest.param("schedule_fly", {}, "name", id="unknown-tool"),
        pytest.param("schedule_pause", {"id": "x", "reason": 5}, "reason", id="bad-reason"),
    ],
)  # fmt: skip
def test_bad_arguments_are_a_400_naming_them_and_save_nothing(user, name, arguments, field) -> None:
    if name == "schedule_pause":
        arguments = {**arguments, "id": str(make_trigger(user).pk)}
    before = Trigger.objects.count()
    response = client_for(user).post(CALL, {"name": name, "arguments": arguments}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert Trigger.objects.count() == before


def test_another_users_schedule_is_not_found(user, other_user) -> None:
    theirs = make_trigger(other_user)
    api = client_for(user)
    for name in ("schedule_pause", "schedule_resume", "schedule_stop", "schedule_runs"):
        assert call(api, name, id=str(theirs.pk)).status_code == 404, name
    assert call(api, "schedule_pause", id="not-a-uuid").status_code == 404
    assert Trigger.objects.get(pk=theirs.pk).status == "active"


def test_anonymous_callers_are_refused(client) -> None:
    assert client.get(TOOLS).status_code == 401
    assert client.post(CALL, {"name": "schedule_list"}, content_type="application/json").status_code == 401


# --- MCP ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_mcp_client_session_uses_the_same_tools(user, child_env) -> None:
    """A real MCP client starts `manage.py mcp --user alice` over stdio, lists the tools and schedules a
    workflow; a bad argument comes back as a tool error naming it, not a crashed server."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["manage.py", "mcp", "--user", user.username],
        env=child_env,
        cwd=str(ROOT),
    )

    async def session() -> dict:
        with anyio.fail_after(60):
            async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
                await client.initialize()
                listed = await client.list_tools()
                created = await client.call_tool(
                    "schedule_create",
                    {"name": "from mcp", "workflow_id": "wf-mcp", "cron_expression": "*/5 * * * *"},
                )
                refused = await client.call_tool(
                    "schedule_create", {"name": "bad", "workflow_id": "w", "cron_expression": "99 * * * *"}
                )
                return {"names": [t.name for t in listed.tools], "created": created, "refused": refused}

    outcome = anyio.run(session)
    assert outcome["names"] == NAMES
    assert not outcome["created"].isError
    schedule = json.loads(outcome["created"].content[0].text)
    assert Trigger.objects.get(pk=schedule["id"]).owner == user
    assert outcome["refused"].isError
    assert "cron_expression" in outcome["refused"].content[0].text
    assert not Trigger.objects.filter(name="bad").exists()


def test_an_agent_keeps_runs_to_business_hours(user) -> None:
    """Execution windows reach agents too: the same field, the same rule, the same 400 wording."""
    api = client_for(user)
    hours = [{"days": "mon-fri", "start": "09:00", "end": "17:00"}]
    created = call(
        api,
        "schedule_create",
        name="office",
        workflow_id="wf",
        cron_expression="0 * * * *",
        timezone="Europe/Paris",
        windows=hours,
        window_action="defer",
    )
    assert created.status_code == 200, created.content
    trigger = Trigger.objects.get(pk=created.json()["result"]["id"])
    assert trigger.window_action == "defer"
    assert len(trigger.windows) == 1
    refused = call(
        api,
        "schedule_create",
        name="bad",
        workflow_id="wf",
        cron_expression="0 * * * *",
        windows=[{"days": "someday", "start": "09:00", "end": "17:00"}],
    )
    assert refused.status_code == 400
    assert "windows" in refused.json()
