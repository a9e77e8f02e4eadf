"""The triggers' audit trail (django-simple-history, `Trigger.history`): every change made through the API
and the admin — register, edit, pause, resume, run now, delete — is recorded with its actor, its time, a
reason and the fields it changed, and the admin's History page shows it. What the fire and launch paths
write (counters, last slot, next run) is deliberately not audited."""

from __future__ import annotations

import html
import itertools
from datetime import UTC, datetime

import pytest
from django.test import Client
from django.urls import reverse

from executions import services as execution_services
from executions.models import ExecutionStatus
from schedules import services
from schedules.models import Trigger
from tests.integration import test_admin, test_api_plumbing
from tests.integration.test_admin import act, form_data, register

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

TRIGGERS = "/api/v1/triggers/"
# The modules' autouse fixtures, reused: plain static files for admin pages, a fast hasher, fresh throttles.
plain_static_files = test_admin.plain_static_files
fast_password_hashing = test_admin.fast_password_hashing
api_test_defaults = test_api_plumbing.api_test_defaults


def trail(trigger: Trigger) -> list[tuple[str, str, str]]:
    """(type, actor, reason) of each version, oldest first."""
    return [
        (h.history_type, h.history_user.get_username() if h.history_user else "", h.history_change_reason)
        for h in trigger.history.order_by("history_date", "history_id")
    ]


def changed_fields(trigger: Trigger) -> list[set[str]]:
    """The fields each version changed against the one before it, oldest first (none for the first)."""
    versions = list(trigger.history.order_by("history_date", "history_id"))
    return [set(new.diff_against(old).changed_fields) for old, new in itertools.pairwise(versions)]


def test_api_changes_are_recorded_with_their_actor_and_fields(user, frozen_clock) -> None:
    frozen_clock.set(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    api = test_api_plumbing.client_for(user)  # token auth: the actor comes from DRF's authenticated user
    created = api.post(
        TRIGGERS,
        {"name": "Morning report", "workflow_id": "wf-report", "cron_expression": "0 9 * * 1-5"},
        format="json",
    )
    assert created.status_code == 201, created.content
    trigger = Trigger.objects.get(pk=created.json()["id"])
    url = f"{TRIGGERS}{trigger.pk}/"
    frozen_clock.advance(60)
    assert api.patch(url, {"cron_expression": "0 10 * * 1-5"}, format="json").status_code == 200
    assert api.post(f"{url}pause/", {"reason": "maintenance"}, format="json").status_code == 200
    assert api.post(f"{url}resume/").status_code == 200
    assert api.post(f"{url}run/").status_code == 201
    assert api.delete(url).status_code == 204

    run = trigger.executions.get()
    assert trail(trigger) == [
        ("+", "alice", "Registered"),
        ("~", "alice", "Edited (schedule changed)"),
        ("~", "alice", "Paused: maintenance"),
        ("~", "alice", "Resumed"),
        ("~", "alice", f"Run now (execution {run.pk})"),
        ("~", "alice", "Deleted"),
    ]
    edit, pause, resume, run_now, delete = changed_fields(trigger)
    assert {"cron_expression", "schedule_changed_at"} <= edit
    assert {"status", "paused_at", "paused_reason"} <= pause
    assert {"status", "resumed_at", "paused_at", "paused_reason"} <= resume
    assert run_now == set(), "run now changes no field of the trigger; the reason says what happened"
    assert delete == {"deleted_at"}


def test_admin_changes_show_on_the_history_page(admin_client: Client, admin_user, user, frozen_clock) -> None:
    trigger = register(user, name="nightly")
    act(admin_client, "pause", trigger)
    act(admin_client, "resume", trigger)
    act(admin_client, "run_now", trigger)
    url = reverse("admin:schedules_trigger_change", args=[trigger.pk])
    data = form_data(admin_client.get(url))
    response = admin_client.post(url, {**data, "name": "nightly-renamed", "max_attempts": "5"})
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors

    assert [(kind, actor) for kind, actor, _ in trail(trigger)] == [
        ("+", ""),  # registered by a service call outside any request: no actor
        ("~", "admin"),
        ("~", "admin"),
        ("~", "admin"),
        ("~", "admin"),
    ]
    reasons = [reason for _, _, reason in trail(trigger)]
    assert reasons[1:4] == ["Paused: paused by admin in the admin", "Resumed", reasons[3]]
    assert reasons[3].startswith("Run now (execution ")
    assert reasons[4] == "Edited"
    assert changed_fields(trigger)[-1] == {"name", "max_attempts"}

    page = admin_client.get(reverse("admin:schedules_trigger_history", args=[trigger.pk]))
    assert page.status_code == 200
    text = " ".join(html.unescape(test_admin.page_text(page)).split())
    for words in ("Paused: paused by admin in the admin", "Resumed", "Run now (execution", "Edited"):
        assert words in text
    assert "Name: nightly → nightly-renamed" in text
    assert "Max attempts: 3 → 5" in text
    assert "admin" in text


def test_a_past_version_can_be_read_but_not_restored(admin_client: Client, user) -> None:
    trigger = register(user, name="before")
    services.trigger_update(trigger=trigger, name="after")
    first = trigger.history.earliest("history_date")
    url = reverse("admin:schedules_trigger_simple_history", args=[trigger.pk, first.history_id])
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, {"name": "before"}).status_code == 405
    trigger.refresh_from_db()
    assert trigger.name == "after"


def test_the_fire_and_launch_paths_write_no_audit_row(user, frozen_clock) -> None:
    """Counters are the executions' record, kept off the trail so a fire or a run's end stays one UPDATE."""
    trigger = register(user)
    before = trigger.history.count()
    services.trigger_record_slots(
        trigger=Trigger.objects.get(pk=trigger.pk),
        through=frozen_clock.now(),
        started=1,
        last_status=ExecutionStatus.PENDING,
        now=frozen_clock.now(),
    )
    services.trigger_record_end(
        trigger=Trigger.objects.get(pk=trigger.pk),
        status=ExecutionStatus.FAILED,
        failed=True,
        succeeded=False,
        started_at=frozen_clock.now(),
        error="boom",
    )
    trigger.refresh_from_db()
    assert (trigger.run_count, trigger.failure_count) == (1, 1)
    assert trigger.history.count() == before


def test_a_backfill_is_an_action_on_the_trail(user, frozen_clock) -> None:
    frozen_clock.set(datetime(2026, 3, 5, 12, 0, tzinfo=UTC))
    trigger = register(user, cron_expression="0 9 * * *")
    execution_services.execution_backfill(
        trigger=trigger,
        start=datetime(2026, 3, 2, 0, 0, tzinfo=UTC),
        end=datetime(2026, 3, 3, 23, 0, tzinfo=UTC),
        launched_by="alice",
    )
    reason = trail(trigger)[-1][2]
    assert reason == "Backfill: 2 runs, slots 2026-03-02 09:00 to 2026-03-03 09:00 UTC (alice)"
