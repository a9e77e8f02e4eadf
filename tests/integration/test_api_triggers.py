"""`/api/v1/triggers/`, its actions, and the schedule helpers (`cron/preview/`, `presets/`): happy paths,
filters, read-only fields that cannot be mass-assigned, PUT vs PATCH, and previews in UTC and local time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from executions.models import Execution, ExecutionStatus
from schedules.models import Trigger, TriggerStatus
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
    make_execution,
    make_trigger,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

TRIGGERS = "/api/v1/triggers/"
CRON = {"name": "Morning report", "workflow_id": "wf-report", "cron_expression": "0 9 * * 1-5"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def api(user, frozen_clock):
    frozen_clock.set(utc(2026, 3, 2, 12, 0))  # a Monday
    return client_for(user)


# --- CRUD -------------------------------------------------------------------------------------------------


def test_create_cron_trigger_reads_back_with_description_and_next_run(api, user) -> None:
    response = api.post(
        TRIGGERS, {**CRON, "timezone": "America/Los_Angeles", "input": {"a": 1}}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["owner"] == "alice"
    assert body["status"] == "active"
    assert body["next_run_at"] == "2026-03-02T17:00:00Z"  # 09:00 PST
    assert "America/Los_Angeles" in body["schedule_description"]
    assert body["input"] == {"a": 1}
    assert body["run_count"] == 0
    trigger = Trigger.objects.get(pk=body["id"])
    assert trigger.owner == user
    assert api.get(f"{TRIGGERS}{body['id']}/").json() == body


@pytest.mark.parametrize(
    ("fields", "expected_next"),
    [
        pytest.param({"kind": "interval", "interval_seconds": 900}, "2026-03-02T12:15:00Z", id="interval"),
        pytest.param({"kind": "once", "delay_ms": 90_000}, "2026-03-02T12:01:30Z", id="once-by-delay"),
        pytest.param({"kind": "once", "run_at": "2026-03-03T08:00:00+01:00"}, "2026-03-03T07:00:00Z",
                     id="once-at-offset"),
        pytest.param({"cron_expression": "*/10 * * * * *"}, "2026-03-02T12:00:10Z", id="six-field-cron"),
    ],
)  # fmt: skip
def test_create_each_kind(api, fields: dict[str, Any], expected_next: str) -> None:
    payload = {"name": "t", "workflow_id": "w", **fields}
    response = api.post(TRIGGERS, payload, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["next_run_at"] == expected_next


def test_create_paused(api) -> None:
    body = api.post(TRIGGERS, {**CRON, "paused": True}, format="json").json()
    assert body["status"] == "paused"
    assert body["next_run_at"] is None


def test_post_without_trailing_slash_is_not_redirected(api) -> None:
    response = api.post("/api/v1/triggers", CRON, format="json")
    assert response.status_code == 201
    trigger_id = response.json()["id"]
    assert api.post(f"/api/v1/triggers/{trigger_id}/pause", {}, format="json").status_code == 200
    assert api.get(f"/api/v1/triggers/{trigger_id}").status_code == 200


def test_list_filters_search_ordering_and_pagination(api, user, other_user) -> None:
    make_trigger(user, name="Alpha report", workflow_id="wf-a")
    make_trigger(user, name="Beta sync", workflow_id="wf-b", kind="interval", interval_seconds=60)
    paused = make_trigger(user, name="Gamma report", workflow_id="wf-a", paused=True)
    make_trigger(other_user, name="Alpha of bob", workflow_id="wf-a")

    def names(query: str) -> list[str]:
        response = api.get(f"{TRIGGERS}?{query}")
        assert response.status_code == 200, response.content
        return [t["name"] for t in response.json()["results"]]

    assert names("ordering=name") == ["Alpha report", "Beta sync", "Gamma report"]
    assert names("ordering=-name&limit=2") == ["Gamma report", "Beta sync"]
    assert names("ordering=name&limit=1&offset=1") == ["Beta sync"]
    assert names("status=paused") == [paused.name]
    assert names("kind=interval") == ["Beta sync"]
    assert names("workflow_id=wf-a&ordering=name") == ["Alpha report", "Gamma report"]
    assert names("target=default&search=REPORT&ordering=name") == ["Alpha report", "Gamma report"]
    page = api.get(f"{TRIGGERS}?limit=2").json()
    assert page["count"] == 3
    assert page["next"] is not None
    assert page["previous"] is None


def test_patch_changes_only_what_it_names(api, user) -> None:
    trigger = make_trigger(user, description="keep me", timezone="Europe/Paris")
    response = api.patch(f"{TRIGGERS}{trigger.pk}/", {"cron_expression": "30 8 * * *"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["cron_expression"] == "30 8 * * *"
    assert body["description"] == "keep me"
    assert body["timezone"] == "Europe/Paris"
    assert body["next_run_at"] == "2026-03-03T07:30:00Z"  # 08:30 CET


def test_put_replaces_settings_and_resets_omitted_ones(api, user) -> None:
    trigger = make_trigger(user, description="old", timezone="Europe/Paris", input={"x": 1})
    response = api.put(f"{TRIGGERS}{trigger.pk}/", {**CRON, "cron_expression": "0 10 * * *"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["description"], body["timezone"], body["input"]) == ("", "UTC", {})
    assert body["next_run_at"] == "2026-03-03T10:00:00Z"
    missing = api.put(f"{TRIGGERS}{trigger.pk}/", {"cron_expression": "0 10 * * *"}, format="json")
    assert missing.status_code == 400
    assert {"name", "workflow_id"} <= set(missing.json())


def test_update_rejects_paused_and_leaves_the_trigger_as_it_was(api, user) -> None:
    trigger = make_trigger(user)
    response = api.patch(f"{TRIGGERS}{trigger.pk}/", {"paused": True}, format="json")
    assert response.status_code == 400
    assert "pause" in response.json()["paused"][0]
    bad = api.patch(
        f"{TRIGGERS}{trigger.pk}/", {"name": "new", "cron_expression": "0 25 * * *"}, format="json"
    )
    assert bad.status_code == 400
    assert "cron_expression" in bad.json()
    trigger.refresh_from_db()
    assert (trigger.name, trigger.status) == ("nightly", TriggerStatus.ACTIVE)


def test_delete_is_soft_and_the_history_stays_readable(api, user) -> None:
    trigger = make_trigger(user)
    execution = make_execution(trigger)
    assert api.delete(f"{TRIGGERS}{trigger.pk}/").status_code == 204
    assert api.get(f"{TRIGGERS}{trigger.pk}/").status_code == 404
    assert api.get(TRIGGERS).json()["count"] == 0
    assert Trigger.objects.get(pk=trigger.pk).deleted_at is not None
    assert api.get(f"/api/v1/executions/{execution.pk}/").status_code == 200
    assert api.get(f"/api/v1/executions/?trigger={trigger.pk}").json()["count"] == 1


# --- Read-only fields: sending them changes nothing (silently ignored, not a 400) -------------------------

READ_ONLY = {
    "id": "00000000-0000-0000-0000-000000000001",
    "owner": "bob",
    "status": "completed",
    "next_run_at": "2030-01-01T00:00:00Z",
    "last_run_at": "2030-01-01T00:00:00Z",
    "last_slot": "2030-01-01T00:00:00Z",
    "run_count": 99,
    "failure_count": 7,
    "consecutive_failures": 7,
    "last_status": "failed",
    "last_error": "boom",
    "paused_at": "2030-01-01T00:00:00Z",
    "schedule_description": "whatever",
    "created_at": "2000-01-01T00:00:00Z",
}


def test_mass_assignment_on_create_is_ignored(api, user, other_user) -> None:
    response = api.post(TRIGGERS, {**CRON, **READ_ONLY}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    trigger = Trigger.objects.get(pk=body["id"])
    assert str(trigger.pk) != READ_ONLY["id"]
    assert trigger.owner == user
    assert (trigger.status, trigger.run_count, trigger.failure_count, trigger.last_error) == (
        "active",
        0,
        0,
        "",
    )
    assert body["next_run_at"] == "2026-03-03T09:00:00Z"
    assert trigger.created_at.year == 2026


@pytest.mark.parametrize("method", ["patch", "put"])
def test_mass_assignment_on_update_is_ignored(api, user, other_user, method: str) -> None:
    trigger = make_trigger(user)
    before = Trigger.objects.filter(pk=trigger.pk).values().get()
    payload = {**CRON, "name": "nightly", "workflow_id": "wf-1", **READ_ONLY}
    response = getattr(api, method)(f"{TRIGGERS}{trigger.pk}/", payload, format="json")
    assert response.status_code == 200, response.content
    after = Trigger.objects.filter(pk=trigger.pk).values().get()
    for field in ("owner_id", "status", "run_count", "failure_count", "consecutive_failures", "last_status",
                  "last_error", "last_run_at", "last_slot", "paused_at", "created_at"):  # fmt: skip
        assert after[field] == before[field], field
    assert not Trigger.objects.filter(pk=READ_ONLY["id"]).exists()
    assert get_user_model().objects.get(username="bob").triggers.count() == 0


def test_get_then_put_round_trips(api, user) -> None:
    trigger = make_trigger(user, kind="interval", interval_seconds=300, cron_expression="")
    representation = api.get(f"{TRIGGERS}{trigger.pk}/").json()
    response = api.put(f"{TRIGGERS}{trigger.pk}/", representation, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["interval_seconds"] == 300


# --- Actions ----------------------------------------------------------------------------------------------


def test_pause_and_resume(api, user) -> None:
    trigger = make_trigger(user)
    paused = api.post(f"{TRIGGERS}{trigger.pk}/pause/", {"reason": "maintenance"}, format="json")
    assert paused.status_code == 200
    assert (paused.json()["status"], paused.json()["paused_reason"]) == ("paused", "maintenance")
    assert paused.json()["next_run_at"] is None
    assert api.post(f"{TRIGGERS}{trigger.pk}/pause/").json()["status"] == "paused", "no body is fine"
    resumed = api.post(f"{TRIGGERS}{trigger.pk}/resume/")
    assert resumed.status_code == 200
    assert (resumed.json()["status"], resumed.json()["next_run_at"]) == ("active", "2026-03-03T09:00:00Z")
    bad = api.post(f"{TRIGGERS}{trigger.pk}/pause/", {"reason": "x" * 501}, format="json")
    assert bad.status_code == 400
    assert "reason" in bad.json()


def test_run_now_with_input_and_idempotency_key(api, user) -> None:
    trigger = make_trigger(user, input={"default": True})
    url = f"{TRIGGERS}{trigger.pk}/run/"
    first = api.post(url, {"input": {"date": "2026-03-01"}}, format="json", HTTP_IDEMPOTENCY_KEY="click-1")
    assert first.status_code == 201, first.content
    body = first.json()
    assert (body["trigger"], body["origin"], body["input"]) == (
        str(trigger.pk),
        "manual",
        {"date": "2026-03-01"},
    )
    assert body["requested_by"] == "alice"
    again = api.post(url, {"input": {"date": "2026-03-01"}}, format="json", HTTP_IDEMPOTENCY_KEY="click-1")
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    plain = api.post(url, format="json")
    assert plain.status_code == 201
    assert plain.json()["input"] == {"default": True}
    assert Execution.objects.filter(trigger=trigger).count() == 2


@pytest.mark.parametrize(
    ("payload", "headers", "field"),
    [
        pytest.param({"input": [1]}, {}, "input", id="input-not-object"),
        pytest.param({}, {"HTTP_IDEMPOTENCY_KEY": "k" * 201}, "Idempotency-Key", id="key-too-long"),
        pytest.param({}, {"HTTP_IDEMPOTENCY_KEY": "a\tb"}, "Idempotency-Key", id="key-not-printable"),
    ],
)
def test_run_now_bad_input(api, user, payload, headers, field: str) -> None:
    trigger = make_trigger(user)
    response = api.post(f"{TRIGGERS}{trigger.pk}/run/", payload, format="json", **headers)
    assert response.status_code == 400
    assert field in response.json()
    assert not Execution.objects.exists()


def test_preview_lists_utc_and_local_times_with_dst_notes(api, user) -> None:
    trigger = make_trigger(user, cron_expression="30 2 * * *", timezone="America/New_York")
    response = api.get(f"{TRIGGERS}{trigger.pk}/preview/?count=3&start=2026-03-07T12:00:00Z")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["timezone"] == "America/New_York"
    assert body["valid"] is True
    runs = body["next_runs"]
    assert [r["utc"] for r in runs] == [
        "2026-03-08T07:00:00Z",
        "2026-03-09T06:30:00Z",
        "2026-03-10T06:30:00Z",
    ]
    assert runs[0]["local"] == "2026-03-08T03:00:00-04:00", (
        "02:30 does not exist that night: first instant after"
    )
    assert runs[0]["note"]
    assert runs[1]["local"] == "2026-03-09T02:30:00-04:00"
    assert runs[1]["note"] is None
    assert len(api.get(f"{TRIGGERS}{trigger.pk}/preview/").json()["next_runs"]) == 10
    for query in ("count=0", "count=101", "count=x", "start=yesterday"):
        bad = api.get(f"{TRIGGERS}{trigger.pk}/preview/?{query}")
        assert bad.status_code == 400, query
        assert query.split("=")[0] in bad.json()


def test_trigger_executions_and_stats(api, user) -> None:
    trigger = make_trigger(user)
    other = make_trigger(user, name="other")
    make_execution(trigger, status=ExecutionStatus.SUCCEEDED, duration_ms=100)
    make_execution(trigger, status=ExecutionStatus.FAILED, duration_ms=300, error="boom")
    make_execution(other)
    listed = api.get(f"{TRIGGERS}{trigger.pk}/executions/")
    assert listed.status_code == 200
    assert listed.json()["count"] == 2
    assert {e["status"] for e in listed.json()["results"]} == {"succeeded", "failed"}
    failed = api.get(f"{TRIGGERS}{trigger.pk}/executions/?status=failed").json()
    assert [e["error"] for e in failed["results"]] == ["boom"]
    assert api.get(f"{TRIGGERS}{trigger.pk}/executions/?status=exploded").status_code == 400
    stats = api.get(f"{TRIGGERS}{trigger.pk}/stats/")
    assert stats.status_code == 200, stats.content
    body = stats.json()
    assert set(body) == {
        "total", "successful", "failed", "skipped", "success_rate", "avg_duration_ms", "p50_duration_ms",
        "p95_duration_ms", "last_run_at", "next_run_at", "credits_used", "input_tokens", "output_tokens",
        "cost",
    }  # fmt: skip
    assert (body["total"], body["successful"], body["failed"]) == (2, 1, 1)
    assert api.get(f"{TRIGGERS}{trigger.pk}/stats/?since=2030-01-01T00:00:00Z").json()["total"] == 0
    assert "since" in api.get(f"{TRIGGERS}{trigger.pk}/stats/?since=soon").json()


# --- Schedule helpers -------------------------------------------------------------------------------------


def test_cron_preview_describes_and_lists_next_runs(api) -> None:
    response = api.post(
        "/api/v1/cron/preview/",
        {
            "expression": "0 9 * * 1-5",
            "timezone": "America/New_York",
            "count": 2,
            "start": "2026-03-06T00:00:00Z",
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["valid"] is True
    assert "America/New_York" in body["description"]
    runs = {"decision": "run", "reason": None, "not_before": None, "rule": ""}  # no windows in a form
    assert body["next_runs"] == [
        {"utc": "2026-03-06T14:00:00Z", "local": "2026-03-06T09:00:00-05:00", "note": None, **runs},
        {"utc": "2026-03-09T13:00:00Z", "local": "2026-03-09T09:00:00-04:00", "note": None, **runs},
    ]
    assert body["excluded_days"] == []
    default = api.post("/api/v1/cron/preview", {"expression": "@hourly"}, format="json").json()
    assert len(default["next_runs"]) == 10
    assert default["next_runs"][0]["utc"] == "2026-03-02T13:00:00Z"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({"expression": "0 25 * * *"}, "expression", id="hour-out-of-range"),
        pytest.param({"expression": "* * * * * * *"}, "expression", id="seven-fields"),
        pytest.param({"expression": "0 0 30 2 *"}, "expression", id="never-fires"),
        pytest.param({"expression": "* * * * *", "timezone": "Mars/Base"}, "timezone", id="unknown-zone"),
        pytest.param({"expression": "* * * * *", "count": 500}, "count", id="count-too-big"),
        pytest.param({"expression": "* * * * *", "start": "2026-01-01"}, "start", id="start-without-time"),
        pytest.param({}, "expression", id="missing-expression"),
    ],
)
def test_cron_preview_errors_name_the_field(api, payload: dict[str, Any], field: str) -> None:
    response = api.post("/api/v1/cron/preview/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()


def test_presets_are_templates_with_label_expression_and_description(api) -> None:
    response = api.get("/api/v1/presets/")
    assert response.status_code == 200
    presets = response.json()
    assert {"key", "label", "expression", "description"} == set(presets[0])
    weekdays = next(p for p in presets if p["expression"] == "0 9 * * 1-5")
    assert weekdays["label"]
    assert weekdays["description"]


def nested(depth: int) -> str:
    """The JSON text of an object `depth` levels deep, written out (encoding it would recurse too)."""
    return '{"k":' * (depth - 1) + "{}" + "}" * (depth - 1)


def body(**fields: str) -> str:
    """A JSON body whose values are already JSON text."""
    return "{" + ", ".join(f"{json.dumps(name)}: {text}" for name, text in fields.items()) + "}"


BASE = {"name": '"deep"', "workflow_id": '"wf"', "cron_expression": '"0 9 * * *"'}


@pytest.mark.parametrize("depth", [33, 330, 700, 990], ids=lambda d: f"depth-{d}")
@pytest.mark.parametrize("field", ["input", "metadata"])
def test_json_nested_past_the_limit_is_a_400_naming_the_field(api, user, field: str, depth: int) -> None:
    """Found by hostile-input drills: ~330-990 levels ran validation out of stack (a 500)."""
    response = api.post(TRIGGERS, body(**BASE, **{field: nested(depth)}), content_type="application/json")
    assert response.status_code == 400, response.content[:200]
    assert "nested" in response.json()[field][0]
    assert not Trigger.objects.filter(name="deep").exists()
    trigger = make_trigger(user)
    response = api.post(
        f"{TRIGGERS}{trigger.pk}/run/", body(input=nested(depth)), content_type="application/json"
    )
    assert response.status_code == 400, response.content[:200]
    assert "input" in response.json()


def test_json_at_the_depth_limit_is_accepted(api) -> None:
    response = api.post(TRIGGERS, body(**BASE, input=nested(32)), content_type="application/json")
    assert response.status_code == 201, response.content[:300]


@pytest.mark.parametrize("blank", ["", "   "], ids=["empty", "spaces"])
def test_a_blank_timezone_is_stored_as_the_utc_it_means(api, blank: str) -> None:
    response = api.post(
        TRIGGERS,
        {"name": "z", "workflow_id": "wf", "cron_expression": "0 9 * * *", "timezone": blank},
        format="json",
    )
    assert response.status_code == 201, response.content[:300]
    assert response.json()["timezone"] == "UTC"
    assert Trigger.objects.get(pk=response.json()["id"]).timezone == "UTC"


def test_every_problem_of_a_create_comes_in_one_400(user) -> None:
    """An unknown target, a bad zone and a bad expression: one answer names all three, nothing is saved."""
    api = client_for(user)
    body = {"name": "n", "workflow_id": "wf", "cron_expression": "0 25 * * *", "timezone": "Mars/Olympus"}
    response = api.post(TRIGGERS, {**body, "target": "nowhere"}, format="json")
    assert response.status_code == 400, response.content
    assert {"target", "cron_expression", "timezone"} <= set(response.json())
    assert not Trigger.objects.exists()


def test_the_preview_reports_a_bad_expression_and_a_bad_zone_together(user) -> None:
    response = client_for(user).post(
        "/api/v1/cron/preview/", {"expression": "61 * * * *", "timezone": "Nowhere/City"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert {"expression", "timezone"} <= set(response.json())
