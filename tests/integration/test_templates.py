"""Trigger templates through the API and the admin: save a trigger as a template, create triggers from one
(validated as any new trigger), owner-scoped; the presets stay the read-only defaults."""

from __future__ import annotations

import pytest

from schedules import services
from schedules.models import Trigger, TriggerTemplate
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

TEMPLATES = "/api/v1/templates/"
TRIGGERS = "/api/v1/triggers/"


def test_save_a_trigger_as_a_template_and_create_from_it(user, other_user, frozen_clock) -> None:
    alice = client_for(user)
    source = alice.post(
        TRIGGERS,
        {
            "name": "nightly",
            "workflow_id": "wf-etl",
            "cron_expression": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "windows": [{"days": "mon-fri", "start": "01:00", "end": "05:00"}],
            "window_action": "defer",
            "end_at": "2027-01-01T00:00:00Z",
            "input": {"table": "orders"},
        },
        format="json",
    ).json()
    saved = alice.post(f"{TRIGGERS}{source['id']}/save-as-template/", {"name": "etl"}, format="json")
    assert saved.status_code == 201, saved.content
    template = saved.json()
    assert template["definition"]["cron_expression"] == "30 2 * * *"
    assert template["definition"]["end_at"] == "2027-01-01T00:00:00Z"
    assert template["definition"]["window_action"] == "defer"

    made = alice.post(f"{TEMPLATES}{template['id']}/create-trigger/", {"name": "nightly 2"}, format="json")
    assert made.status_code == 201, made.content
    copy = made.json()
    for field in (
        "workflow_id",
        "cron_expression",
        "timezone",
        "windows",
        "window_action",
        "end_at",
        "input",
    ):
        assert copy[field] == source[field], field
    assert (copy["name"], copy["id"] != source["id"]) == ("nightly 2", True)

    bob = client_for(other_user)
    assert bob.get(f"{TEMPLATES}{template['id']}/").status_code == 404
    assert bob.post(f"{TEMPLATES}{template['id']}/create-trigger/", {}, format="json").status_code == 404
    assert bob.get(TEMPLATES).json()["results"] == []
    assert (
        bob.post(f"{TRIGGERS}{source['id']}/save-as-template/", {"name": "x"}, format="json").status_code
        == 404
    )
    presets = alice.get("/api/v1/presets/").json()
    assert any(p["key"] == "weekdays-0900" for p in presets), "the presets are still there, read-only"


def test_a_template_from_a_definition_is_checked_field_by_field(user, frozen_clock) -> None:
    alice = client_for(user)
    bad = alice.post(
        TEMPLATES,
        {"name": "t", "definition": {"cron_expression": "0 25 * * *", "priority": "asap"}},
        format="json",
    )
    assert bad.status_code == 400
    messages = " ".join(bad.json()["definition"])
    assert "priority:" in messages
    bad_instant = alice.post(TEMPLATES, {"name": "t", "definition": {"run_at": "soon"}}, format="json")
    assert bad_instant.json() == {"definition": ["run_at: must be an ISO 8601 date-time"]}
    ok = alice.post(
        TEMPLATES,
        {"name": "t", "definition": {"cron_expression": "0 9 * * 1-5", "timezone": "UTC"}},
        format="json",
    )
    assert ok.status_code == 201, ok.content
    duplicate = alice.post(TEMPLATES, {"name": "t", "definition": {}}, format="json")
    assert "already have a template named 't'" in duplicate.json()["name"][0]
    # What the template lacks (a name, a workflow) is the new trigger's to give; without it, a 400 naming it.
    missing = alice.post(f"{TEMPLATES}{ok.json()['id']}/create-trigger/", {}, format="json")
    assert missing.status_code == 400
    assert set(missing.json()) == {"name", "workflow_id"}
    made = alice.post(
        f"{TEMPLATES}{ok.json()['id']}/create-trigger/", {"name": "r", "workflow_id": "wf"}, format="json"
    )
    assert made.status_code == 201, made.content
    assert Trigger.objects.get(pk=made.json()["id"]).cron_expression == "0 9 * * 1-5"


def test_the_admin_saves_templates_and_creates_paused_triggers(
    admin_client, admin_user, user, frozen_clock
) -> None:
    trigger = services.trigger_register(
        owner=user, name="report", workflow_id="wf", cron_expression="0 9 * * *"
    )
    response = admin_client.post(
        "/admin/schedules/trigger/",
        {"action": "save_as_templates", "_selected_action": [str(trigger.pk)]},
    )
    assert response.status_code == 302
    template = TriggerTemplate.objects.get(owner=user, name="report")
    assert admin_client.get("/admin/schedules/triggertemplate/").status_code == 200
    assert admin_client.get(f"/admin/schedules/triggertemplate/{template.pk}/change/").status_code == 200
    assert admin_client.get("/admin/schedules/triggertemplate/add/").status_code == 200
    services.trigger_delete(trigger=trigger)  # the name is free again
    response = admin_client.post(
        "/admin/schedules/triggertemplate/",
        {"action": "create_triggers", "_selected_action": [str(template.pk)]},
    )
    assert response.status_code == 302
    made = Trigger.objects.live().get(owner=user, name="report")
    assert (made.status, made.cron_expression) == ("paused", "0 9 * * *")
