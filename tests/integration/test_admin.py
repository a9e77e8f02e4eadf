"""The operators' UI against the real database (and Redis where the page asks it): the trigger admin calls
the services and shows their messages, the execution admin is read-only with cancel and re-run, and the
dashboard summarises the last day and the fleet without ever hanging on it."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from executions.models import Attempt, AttemptOutcome, Execution, ExecutionOrigin, ExecutionStatus, SkipReason
from operations import dashboard
from schedules import services
from schedules.models import Trigger, TriggerStatus
from tests.support.procs import free_port
from tests.support.triggers import run_out
from toolkit import metrics

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, a week before US daylight saving starts
TRIGGERS = reverse("admin:schedules_trigger_changelist")
ADD_TRIGGER = reverse("admin:schedules_trigger_add")
EXECUTIONS = reverse("admin:executions_execution_changelist")
DASHBOARD = reverse("admin:scheduler-dashboard")


@pytest.fixture(autouse=True)
def plain_static_files(settings) -> None:
    """Pages link their CSS with {% static %}; the manifest storage wants a collectstatic run first, which
    the browser tests do. Here the files' names are enough."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """Every test here creates users (the admin, a trigger owner); the production hasher's deliberate
    slowness would be most of this module's run time, and no test here is about passwords."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def beat_sync_calls(monkeypatch: pytest.MonkeyPatch) -> list:
    """Calls of `beat.sync.sync_trigger` (what the services schedule after commit and "sync to beat" does
    at once), recorded instead of written to Redis."""
    from schedules.beat import sync

    calls: list = []
    monkeypatch.setattr(sync, "sync_trigger", calls.append, raising=False)
    return calls


def register(owner, **fields: Any) -> Trigger:
    values = {"name": "nightly", "workflow_id": "wf-1", "cron_expression": "0 9 * * 1-5"}
    return services.trigger_register(owner=owner, **{**values, **fields})


def execution(trigger: Trigger, status: str = ExecutionStatus.SUCCEEDED, **fields: Any) -> Execution:
    """A history row as the execution side would have left it (test data, so written directly)."""
    values: dict[str, Any] = {"origin": ExecutionOrigin.SCHEDULE, "status": status}
    if "slot" not in fields and fields.get("origin") != ExecutionOrigin.MANUAL:
        values["slot"] = T0 - timedelta(minutes=Execution.objects.count() + 1)
    return Execution.objects.create(trigger=trigger, **{**values, **fields})


def texts(response) -> list[str]:
    return [str(m).replace("\xa0", " ") for m in get_messages(response.wsgi_request)]


def page_text(response) -> str:
    """The page's visible words, tags dropped and whitespace folded, for assertions about what people read."""
    html = response.content.decode()
    html = re.sub(r"<(script|style|datalist)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#x27;", "'")


class FormFields(HTMLParser):
    """What a browser would submit from one form of a page: the round trip the admin must survive."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.data = form_id, False, {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside or ("name" not in a and tag != "option"):
            return
        if tag == "input" and a.get("type") not in ("submit", "button"):
            if a.get("type") in ("radio", "checkbox") and "checked" not in a:
                return
            self.data[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a["name"]
            self.data.setdefault(a["name"], "")
        elif tag == "option" and self._select and "selected" in a:
            self.data[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a["name"]
            self.data[a["name"]] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.data[self._textarea] += data.removeprefix("\n") if not self.data[self._textarea] else data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def form_data(response, form_id: str = "trigger_form") -> dict[str, str]:
    parser = FormFields(form_id)
    parser.feed(response.content.decode())
    return parser.data


ADD_FORM = {
    "name": "morning report",
    "description": "",
    "workflow_id": "wf-report",
    "target": "default",
    "input": "{}",
    "metadata": "{}",
    "kind": "cron",
    "preset": "",
    "cron_expression": "0 9 * * 1-5",
    "timezone": "America/Los_Angeles",
    "interval_seconds": "",
    "max_runs": "",
    "jitter_seconds": "0",
    "overlap_policy": "skip",
    "max_concurrent": "1",
    "auto_pause_after_failures": "",
    "catchup_policy": "latest",
    "catchup_window_seconds": "3600",
    "misfire_grace_seconds": "60",
    "max_attempts": "3",
    "backoff_seconds": "2",
    "timeout_seconds": "300",
    "priority": "medium",
    "window_action": "skip",
    **{f"{name}_{part}": "" for name in ("anchor_at", "run_at", "start_at", "end_at") for part in (0, 1)},
}


def add_form(owner, **changes: str) -> dict[str, str]:
    """The add form as a person fills it in, for `owner`."""
    return {**ADD_FORM, "owner": str(owner.pk), **changes}


# --- Trigger list -----------------------------------------------------------------------------------------


def test_trigger_list_reads_like_a_dashboard(admin_client: Client, user, frozen_clock) -> None:
    weekday = register(user, name="weekday report", timezone="America/Los_Angeles")
    paused = register(user, name="paused one", cron_expression="*/5 * * * *", paused=True)
    services.trigger_delete(trigger=register(user, name="gone"))
    for status in (ExecutionStatus.SUCCEEDED, ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED):
        execution(weekday, status)
    execution(weekday, ExecutionStatus.SKIPPED, skip_reason=SkipReason.OVERLAP)  # not an outcome
    Trigger.objects.filter(pk=weekday.pk).update(last_status="failed", last_run_at=T0 - timedelta(hours=1))

    response = admin_client.get(TRIGGERS)
    assert response.status_code == 200
    text = page_text(response)
    assert "At 09:00, Monday through Friday (America/Los_Angeles)" in text
    assert "Mon 2 Mar 09:00 PST" in text, "next run in the trigger's own zone"
    assert "Mon 2 Mar 17:00 UTC · in 5 hours" in text, "and in UTC, with how far away"
    assert "66.7%" in text, "2 of 3 ended runs succeeded; the skip is not counted"
    assert "Every 5 minutes (UTC)" in text
    assert "paused" in text
    assert "gone" not in text, "deleted triggers leave the list"
    html = response.content.decode()
    assert 'class="sched-badge sched-badge--active"' in html
    assert 'class="sched-badge sched-badge--paused"' in html
    assert 'sched-badge--failed" title="Failed">Failed</span>' in html, "the last run's status"
    assert str(paused.pk) in html


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        pytest.param("status__exact=paused", ["quiet"], ["busy"], id="status"),
        pytest.param("kind__exact=interval", ["ticker"], ["busy", "quiet"], id="kind"),
        pytest.param("last_status=failed", ["busy"], ["quiet", "ticker"], id="last-status"),
        pytest.param("q=wf-busy", ["busy"], ["quiet", "ticker"], id="search-workflow-id"),
        pytest.param("q=tick", ["ticker"], ["busy", "quiet"], id="search-name"),
    ],
)
def test_trigger_list_filters_and_search(admin_client: Client, user, frozen_clock, query, shown, hidden):
    busy = register(user, name="busy", workflow_id="wf-busy")
    Trigger.objects.filter(pk=busy.pk).update(last_status="failed")
    register(user, name="quiet", workflow_id="wf-quiet", paused=True)
    register(user, name="ticker", workflow_id="wf-tick", kind="interval", interval_seconds=60)
    response = admin_client.get(f"{TRIGGERS}?{query}")
    names = [t.name for t in response.context["cl"].result_list]
    assert sorted(names) == sorted(shown)
    assert not set(names) & set(hidden)


def test_trigger_list_filters_by_owner(admin_client: Client, user, other_user, frozen_clock) -> None:
    register(user, name="alice's")
    register(other_user, name="bob's")
    response = admin_client.get(f"{TRIGGERS}?owner__id__exact={other_user.pk}")
    assert [t.name for t in response.context["cl"].result_list] == ["bob's"]


# --- Trigger form -----------------------------------------------------------------------------------------


def test_bad_cron_shows_the_services_message_under_the_field(admin_client: Client, admin_user, frozen_clock):
    with pytest.raises(ValidationError) as api_error:
        services.trigger_register(owner=admin_user, name="n", workflow_id="w", cron_expression="0 25 * * *")
    response = admin_client.post(ADD_TRIGGER, add_form(admin_user, cron_expression="0 25 * * *"))
    assert response.status_code == 200, "the form comes back, not a 500"
    errors = response.context["adminform"].form.errors
    assert errors == {"cron_expression": ["field 2 (hour): 25 is out of range 0-23"]}
    assert errors["cron_expression"] == api_error.value.message_dict["cron_expression"], (
        "same words as the API"
    )
    assert "field 2 (hour): 25 is out of range 0-23" in page_text(response)
    assert not Trigger.objects.exists(), "nothing half-saved"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        pytest.param({"timezone": "Mars/Base"}, "timezone", "unknown time zone", id="unknown-zone"),
        pytest.param({"name": ""}, "name", "this field is required", id="empty-name"),
        pytest.param({"input": "[1, 2]"}, "input", "must be a JSON object", id="input-not-object"),
        pytest.param({"max_attempts": "0"}, "max_attempts", "must be between 1 and 20", id="attempts-zero"),
        pytest.param({"target": "elsewhere"}, "target", "unknown target 'elsewhere'", id="unknown-target"),
        pytest.param(
            {"cron_expression": "*/5 * * * *", "jitter_seconds": "300"},
            "jitter_seconds",
            "",
            id="jitter-too-big",
        ),
        pytest.param({"kind": "interval"}, "interval_seconds", "", id="interval-missing"),
    ],
)
def test_other_mistakes_land_on_the_field_they_name(
    admin_client: Client, admin_user, frozen_clock, changes, field, message
) -> None:
    response = admin_client.post(ADD_TRIGGER, add_form(admin_user, **changes))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field]
    assert message.lower() in " ".join(errors[field]).lower()
    assert not Trigger.objects.exists()


def test_add_registers_through_the_service_for_the_current_user(
    admin_client: Client, admin_user, frozen_clock, django_capture_on_commit_callbacks, beat_sync_calls
) -> None:
    add_page = admin_client.get(ADD_TRIGGER)
    assert add_page.context["adminform"].form.initial["owner"] == admin_user.pk
    assert add_page.context["inline_admin_formsets"] == [], "no history inline before there is a trigger"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(ADD_TRIGGER, add_form(admin_user))
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    trigger = Trigger.objects.get()
    assert (trigger.owner, trigger.timezone, trigger.status) == (admin_user, "America/Los_Angeles", "active")
    assert trigger.next_run_at == datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
    assert trigger.schedule_changed_at == frozen_clock.now()
    assert beat_sync_calls == [trigger.pk], "the beat entry is synced after commit, by the service"


def test_staff_may_pick_another_owner(admin_client: Client, other_user, frozen_clock) -> None:
    response = admin_client.post(ADD_TRIGGER, add_form(other_user))
    assert response.status_code == 302
    assert Trigger.objects.get().owner == other_user


def test_a_preset_fills_an_empty_expression_without_javascript(
    admin_client: Client, admin_user, frozen_clock
):
    data = add_form(admin_user, cron_expression="", preset="every-15-minutes")
    assert admin_client.post(ADD_TRIGGER, data).status_code == 302
    assert Trigger.objects.get().cron_expression == "*/15 * * * *"


def test_change_form_round_trip_changes_only_what_was_edited(
    admin_client: Client, user, frozen_clock
) -> None:
    trigger = register(user, timezone="America/New_York", input={"region": "us"})
    for _ in range(12):
        execution(trigger)
    edited_at = trigger.schedule_changed_at
    url = reverse("admin:schedules_trigger_change", args=[trigger.pk])
    page = admin_client.get(url)
    assert page_text(page).count("Succeeded") >= 10
    data = form_data(page)
    assert data["executions-TOTAL_FORMS"] == "10", "only the latest executions are inlined"
    execution(trigger)  # history moves on while the operator edits: the save must not care
    frozen_clock.advance(60)
    response = admin_client.post(url, {**data, "name": "renamed", "_continue": "Save"})
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    trigger.refresh_from_db()
    assert (trigger.name, trigger.input, trigger.timezone) == (
        "renamed",
        {"region": "us"},
        "America/New_York",
    )
    assert trigger.schedule_changed_at == edited_at, "a rename is not a schedule edit (catch-up floor kept)"

    response = admin_client.post(url, {**data, "cron_expression": "30 2 * * *"})
    assert response.status_code == 302
    trigger.refresh_from_db()
    assert trigger.cron_expression == "30 2 * * *"
    assert trigger.schedule_changed_at == frozen_clock.now()


def test_change_form_groups_fields_and_shows_ten_fire_times_with_dst_notes(
    admin_client: Client, user, frozen_clock
) -> None:
    trigger = register(user, name="half past two", cron_expression="30 2 * * *", timezone="America/New_York")
    response = admin_client.get(reverse("admin:schedules_trigger_change", args=[trigger.pk]))
    names = [fieldset.name for fieldset in response.context["adminform"]]
    assert names == [
        "State", "What to run", "When", "Windows, blackouts and calendar", "Policies", "Launch settings",
        "History",
    ]  # fmt: skip
    html = response.content.decode()
    assert html.count('<tr class="sched-preview__dst">') == 1
    text = page_text(response)
    assert "At 02:30 (America/New_York)" in text
    assert "Tue 3 Mar 02:30 EST" in text
    assert "Tue 3 Mar 07:30 UTC" in text
    assert "02:30 does not exist on 2026-03-08 (DST gap); runs at 03:00 EDT" in text
    preview = re.search(r'<div class="sched-preview" id="fire-time-preview" data-preview-url="([^"]*)"', html)
    assert preview, "the fire-time table is on the page"
    assert preview.group(1) == reverse("cron-preview"), "the script knows where to ask"
    assert 'src="/static/schedules/trigger_form.js"' in html
    options = re.findall(r'<option value="([^"]+)">[^<]*\(([^)]+)\)</option>', html)
    assert ("weekdays-0900", "0 9 * * 1-5") in options, "presets to pick from"


def test_owner_is_read_only_once_created(admin_client: Client, user, other_user, frozen_clock) -> None:
    trigger = register(user)
    url = reverse("admin:schedules_trigger_change", args=[trigger.pk])
    data = {**form_data(admin_client.get(url)), "owner": str(other_user.pk)}
    assert admin_client.post(url, data).status_code == 302
    assert Trigger.objects.get(pk=trigger.pk).owner == user


def test_cron_preview_endpoint_answers_the_admin_session(admin_client: Client) -> None:
    """The change form's script calls the API with the admin's session cookie and CSRF token."""
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.cookies = admin_client.cookies
    page = csrf_client.get(ADD_TRIGGER)
    token = form_data(page)["csrfmiddlewaretoken"]
    body = {"expression": "0 25 * * *", "timezone": "UTC", "count": 10}
    response = csrf_client.post(
        reverse("cron-preview"), body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 400
    assert response.json() == {"expression": ["field 2 (hour): 25 is out of range 0-23"]}


# --- Trigger operations -----------------------------------------------------------------------------------


def act(client: Client, action: str, *objs, url: str = TRIGGERS):
    return client.post(url, {"action": action, "_selected_action": [str(o.pk) for o in objs]}, follow=True)


def test_pause_and_resume_actions_say_what_happened(admin_client: Client, user, frozen_clock) -> None:
    a, b = register(user, name="a"), register(user, name="b")
    response = act(admin_client, "pause", a, b)
    assert sorted(texts(response)) == ["Paused 2 of 2 triggers.", "Paused “a”.", "Paused “b”."]
    a.refresh_from_db()
    assert (a.status, a.paused_reason, a.next_run_at) == ("paused", "paused by admin in the admin", None)

    frozen_clock.advance(3600)
    response = act(admin_client, "resume", a)
    assert texts(response) == ["Resumed “a”; next run Tue 3 Mar 09:00 UTC, in 20 hours."]
    assert Trigger.objects.get(pk=a.pk).resumed_at == frozen_clock.now()


def test_an_operation_refused_for_one_trigger_still_runs_for_the_rest(
    admin_client: Client, user, frozen_clock
):
    done = register(user, name="done", kind="once", run_at=frozen_clock.now() + timedelta(hours=1))
    fine = register(user, name="fine")
    assert run_out(done).status == TriggerStatus.COMPLETED
    response = act(admin_client, "pause", done, fine)
    assert texts(response) == [
        "Could not pause “done”: a completed trigger cannot be paused",
        "Paused “fine”.",
        "Paused 1 of 2 triggers; 1 refused.",
    ]
    assert Trigger.objects.get(pk=fine.pk).status == TriggerStatus.PAUSED


def test_bulk_operations_summarise(admin_client: Client, user, frozen_clock) -> None:
    triggers = [register(user, name=f"t{i}") for i in range(7)]
    assert texts(act(admin_client, "pause", *triggers)) == ["Paused 7 of 7 triggers."]


def test_sync_to_beat_calls_the_sync(admin_client: Client, user, frozen_clock, beat_sync_calls) -> None:
    trigger = register(user)
    beat_sync_calls.clear()
    response = act(admin_client, "sync_to_beat", trigger)
    assert texts(response) == ["Synced the beat entry of “nightly”."]
    assert beat_sync_calls == [trigger.pk]


def test_sync_to_beat_reports_redis_down(admin_client: Client, user, frozen_clock, monkeypatch) -> None:
    from schedules.beat import sync

    def down(trigger_id):
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(sync, "sync_trigger", down, raising=False)
    response = act(admin_client, "sync_to_beat", register(user))
    assert texts(response) == ["Could not sync to beat “nightly”: Redis is unreachable (Connection refused)"]


def test_run_now_records_a_manual_execution(admin_client: Client, admin_user, user, frozen_clock) -> None:
    trigger = register(user)
    response = act(admin_client, "run_now", trigger)
    created = Execution.objects.get(trigger=trigger)
    assert (created.origin, created.slot, created.requested_by) == ("manual", None, admin_user)
    (message,) = texts(response)
    assert message.startswith(f'Started a run of “nightly”: execution <a href="{EXECUTIONS}{created.pk}/')


def test_buttons_on_the_trigger_page_match_its_state(admin_client: Client, user, frozen_clock) -> None:
    trigger = register(user)
    url = reverse("admin:schedules_trigger_change", args=[trigger.pk])
    buttons = re.findall(r'class="sched-op sched-op--(\w+)"', admin_client.get(url).content.decode())
    assert buttons == ["pause", "run_now", "sync_to_beat"]

    operate = reverse("admin:schedules_trigger_operate", args=[trigger.pk, "pause"])
    assert admin_client.get(operate).status_code == 405, "state changes only by POST"
    response = admin_client.post(operate, follow=True)
    assert response.redirect_chain == [(url, 302)]
    assert texts(response) == ["Paused “nightly”."]
    buttons = re.findall(r'class="sched-op sched-op--(\w+)"', response.content.decode())
    assert buttons == ["resume", "run_now", "sync_to_beat"]
    assert (
        'sched-badge--paused" title="Paused — no runs until resumed: paused by admin'
        in response.content.decode()
    )

    unknown = reverse("admin:schedules_trigger_operate", args=[trigger.pk, "explode"])
    assert admin_client.post(unknown).status_code == 404


def test_operations_need_the_change_permission(client: Client, django_user_model, user, frozen_clock) -> None:
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_trigger"))
    client.force_login(viewer)
    trigger = register(user)
    action_form = client.get(TRIGGERS).context["action_form"]
    assert action_form is None, "no action a viewer may take"
    assert (
        client.post(reverse("admin:schedules_trigger_operate", args=[trigger.pk, "pause"])).status_code == 403
    )
    assert Trigger.objects.get(pk=trigger.pk).status == TriggerStatus.ACTIVE


def test_delete_is_soft_and_keeps_the_history(admin_client: Client, user, frozen_clock) -> None:
    trigger = register(user)
    execution(trigger)
    url = reverse("admin:schedules_trigger_delete", args=[trigger.pk])
    confirm = admin_client.get(url)
    assert "Its execution history is kept" in page_text(confirm)
    assert confirm.context["deleted_objects"] == ["Trigger: nightly"], "no execution listed as deleted"
    admin_client.post(url, {"post": "yes"})
    trigger.refresh_from_db()
    assert trigger.deleted_at == frozen_clock.now()
    assert Execution.objects.filter(trigger=trigger).count() == 1
    assert admin_client.get(TRIGGERS).context["cl"].result_count == 0


def test_bulk_delete_is_soft_too(admin_client: Client, user, frozen_clock) -> None:
    a, b = register(user, name="a"), register(user, name="b")
    confirm = act(admin_client, "delete_selected", a, b)
    assert "Their execution history is kept" in page_text(confirm)
    admin_client.post(
        TRIGGERS, {"action": "delete_selected", "_selected_action": [str(a.pk), str(b.pk)], "post": "yes"}
    )
    assert Trigger.objects.filter(deleted_at__isnull=False).count() == 2


# --- Execution admin --------------------------------------------------------------------------------------


def test_execution_list_columns(admin_client: Client, user, frozen_clock) -> None:
    trigger = register(user, name="la", timezone="America/Los_Angeles")
    execution(trigger, slot=datetime(2026, 3, 2, 17, 0, tzinfo=UTC), attempts=2, duration_ms=1530)
    execution(trigger, ExecutionStatus.QUEUED, origin=ExecutionOrigin.MANUAL, requested_at=T0)
    response = admin_client.get(EXECUTIONS)
    text = page_text(response)
    assert "Mon 2 Mar 09:00 PST" in text, "slot, local"
    assert "Mon 2 Mar 17:00 UTC" in text, "slot, UTC"
    assert "1.5 s" in text
    assert "manual Mon 2 Mar 04:00 PST Mon 2 Mar 12:00 UTC · now" in text, "no slot: when it was asked for"
    assert "Manual" in text, "its origin says why"
    html = response.content.decode()
    assert "sched-badge--succeeded" in html
    assert "sched-badge--queued" in html
    assert reverse("admin:schedules_trigger_change", args=[trigger.pk]) in html


def test_execution_filters_and_recorded_ranges(admin_client: Client, user, frozen_clock) -> None:
    a, b = register(user, name="a"), register(user, name="b")
    failed = execution(a, ExecutionStatus.FAILED)
    execution(a)
    execution(b)
    assert list(admin_client.get(f"{EXECUTIONS}?status__exact=failed").context["cl"].result_list) == [failed]
    by_trigger = admin_client.get(f"{EXECUTIONS}?trigger__id__exact={a.pk}").context["cl"].result_list
    assert {e.trigger_id for e in by_trigger} == {a.pk}
    assert len(by_trigger) == 2
    since = (failed.created_at - timedelta(days=1)).date().isoformat()
    response = admin_client.get(f"{EXECUTIONS}?created_at__gte={since}")
    assert response.context["cl"].date_hierarchy is None, "a hierarchy scans the history for its dates"
    assert len(response.context["cl"].result_list) == 3
    assert "Past 7 days" in response.content.decode()


def test_execution_page_is_read_only_with_attempts_and_error(
    admin_client: Client, user, frozen_clock
) -> None:
    trigger = register(user)
    run = execution(
        trigger, ExecutionStatus.FAILED, attempts=2, error="HTTP 503 from target\nretry budget spent"
    )
    for number, outcome in ((1, AttemptOutcome.RETRYABLE), (2, AttemptOutcome.FAILED)):
        Attempt.objects.create(execution=run, number=number, started_at=T0, outcome=outcome, http_status=503)
    response = admin_client.get(reverse("admin:executions_execution_change", args=[run.pk]))
    html = response.content.decode()
    assert '<pre class="sched-error">HTTP 503 from target\nretry budget spent</pre>' in html
    assert html.count("sched-badge--retryable") == 1
    assert "sched-badge--failed" in html
    assert 'name="_save"' not in html, "nothing to save: the record is read-only"
    assert re.findall(r'class="sched-op sched-op--(\w+)"', html) == ["rerun"], "cancel only while it runs"
    assert admin_client.get(reverse("admin:executions_execution_add")).status_code == 403
    assert admin_client.post(reverse("admin:executions_execution_delete", args=[run.pk])).status_code == 403


def test_cancel_action(admin_client: Client, user, frozen_clock) -> None:
    trigger = register(user)
    waiting = execution(trigger, ExecutionStatus.QUEUED)
    ended = execution(trigger, ExecutionStatus.SUCCEEDED)
    response = act(admin_client, "cancel", waiting, ended, url=EXECUTIONS)
    waiting.refresh_from_db()
    assert (waiting.status, waiting.error) == ("cancelled", "cancelled by admin in the admin")
    assert Execution.objects.get(pk=ended.pk).status == "succeeded"
    assert texts(response) == [
        f"Could not cancel “nightly, slot {utc_wall(ended.slot)} ({str(ended.pk)[:8]})”: it has already ended"
        " (succeeded)",
        f"Cancelled “nightly, slot {utc_wall(waiting.slot)} ({str(waiting.pk)[:8]})”.",
        "Cancelled 1 of 2 executions; 1 refused.",
    ]


def utc_wall(moment: datetime) -> str:
    from toolkit.admin import wall

    return wall(moment.astimezone(UTC))


def test_rerun_action_creates_a_new_execution_pointing_at_the_original(
    admin_client: Client, admin_user, user, frozen_clock
) -> None:
    trigger = register(user)
    original = execution(trigger, ExecutionStatus.FAILED)
    response = act(admin_client, "rerun", original, url=EXECUTIONS)
    rerun = Execution.objects.get(rerun_of=original)
    assert (rerun.origin, rerun.requested_by) == ("manual", admin_user)
    (message,) = texts(response)
    assert str(rerun.pk)[:8] in message
    page = admin_client.get(reverse("admin:executions_execution_change", args=[original.pk]))
    assert reverse("admin:executions_execution_change", args=[rerun.pk]) in page.content.decode()


# --- Dashboard --------------------------------------------------------------------------------------------


@pytest.fixture
def fleet_probe(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The workers' answer to the status snapshot's inspect, given by the test (a real one waits its full
    reply window), and no snapshot remembered between requests."""
    from operations import status

    answer: dict = {"workers": [status.WorkerStatus("celery@worker-1", concurrency=4, pid=7)], "calls": 0}

    def inspect_workers(timeout: float) -> list:
        answer["calls"] += 1
        return answer["workers"]

    monkeypatch.setattr(status, "inspect_workers", inspect_workers)
    monkeypatch.setattr(dashboard, "FLEET_CACHE_SECONDS", 0)
    cache.delete(dashboard.FLEET_CACHE_KEY)
    return answer


def test_dashboard_shows_the_day_the_next_runs_the_failing_and_the_fleet(
    admin_client: Client, user, frozen_clock, redis_client, fleet_probe
) -> None:
    frozen_clock.set(datetime.now(UTC))  # history rows are stamped by the database's clock
    now = frozen_clock.now()
    soon = register(user, name="soon", cron_expression="* * * * *")
    register(user, name="later", cron_expression="0 0 1 1 *")
    broken = register(user, name="broken")
    Trigger.objects.filter(pk=broken.pk).update(consecutive_failures=4, last_error="HTTP 500 from target")
    for hours_ago, status, n in ((1, "succeeded", 3), (1, "failed", 1), (5, "skipped", 2), (30, "failed", 9)):
        for _ in range(n):
            row = execution(
                soon, status, slot=now - timedelta(hours=hours_ago, minutes=Execution.objects.count())
            )
            Execution.objects.filter(pk=row.pk).update(created_at=now - timedelta(hours=hours_ago))
    redis_client.set(metrics.lock_key(), "token", px=4500)

    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    text = page_text(response)
    counts = {s.value: s.count for s in response.context["status_counts"]}
    assert (counts["succeeded"], counts["failed"], counts["skipped"]) == (3, 1, 2), "30 hours ago is out"
    assert response.context["stats"]["total"] == 6
    tile = re.search(
        r'<a class="sched-tile" href="([^"]+status__exact=succeeded[^"]+)"', response.content.decode()
    )
    assert tile, "each state's count links to those runs"
    linked = admin_client.get(tile.group(1).replace("&amp;", "&"))
    assert len(linked.context["cl"].result_list) == 3, "the same runs: succeeded, in the last 24 hours"
    assert "75% success rate" in text, "3 succeeded, 1 failed; skips are not outcomes"
    rects = re.findall(r'<rect class="series-(\w+)"[^>]*><title>([^<]*)</title>', response.content.decode())
    assert sorted(series for series, _ in rects) == ["failed", "skipped", "succeeded"]
    assert any("3 succeeded" in title for _, title in rects)
    upcoming = [row["trigger"].name for row in response.context["upcoming"]]
    assert upcoming[0] == "soon"
    assert upcoming.count("soon") > 1, "a trigger due every minute holds each of its next slots"
    slots = [row["slot"] for row in response.context["upcoming"]]
    assert slots == sorted(slots), "the next slots across triggers, soonest first"
    assert "broken" in text
    assert "HTTP 500 from target" in text
    assert "A beat holds the lock" in text
    assert re.search(r"lapses in [34]\.\d s", text)
    assert "1 answering" in text
    assert "celery@worker-1 · 4 slots · 0 running" in text
    assert 'href="http://127.0.0.1:5555/"' in response.content.decode()


def test_dashboard_says_when_no_beat_and_no_worker(admin_client: Client, redis_client, fleet_probe) -> None:
    fleet_probe["workers"] = []
    text = page_text(admin_client.get(DASHBOARD))
    assert "No beat holds the lock" in text
    assert "0 answering" in text
    assert "No finished runs in the last 24 hours" in text


def test_dashboard_with_redis_down_answers_fast_and_says_so(
    admin_client: Client, settings, fleet_probe
) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    response = admin_client.get(DASHBOARD)
    assert time.monotonic() - started < 3
    assert response.status_code == 200
    assert "Redis is unreachable" in page_text(response)
    assert fleet_probe["calls"] == 0, "no ping through a broker that is down"


def test_a_real_fleet_snapshot_with_no_worker_is_bounded(redis_client, monkeypatch) -> None:
    monkeypatch.setattr(dashboard, "INSPECT_TIMEOUT_SECONDS", 0.3)
    cache.delete(dashboard.FLEET_CACHE_KEY)
    started = time.monotonic()
    snapshot = dashboard.fleet_snapshot()
    assert time.monotonic() - started < 3
    assert (snapshot.workers, snapshot.errors) == ([], {})


def test_dashboard_needs_view_permissions(client: Client, django_user_model) -> None:
    assert client.get(DASHBOARD).status_code == 302, "anonymous: to the login page"
    staff = django_user_model.objects.create_user("staff", password="pw-staff-123", is_staff=True)
    client.force_login(staff)
    assert client.get(DASHBOARD).status_code == 403


def test_admin_index_links_to_the_dashboard(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:index"))
    assert f'href="{DASHBOARD}"' in response.content.decode()
    assert "Workflow scheduler" in page_text(response)


@pytest.mark.parametrize(
    ("value", "step"),
    [
        pytest.param(0.2, 1, id="tiny"),
        pytest.param(3, 5, id="three"),
        pytest.param(7.5, 10, id="seven-and-a-half"),
        pytest.param(12, 20, id="twelve"),
        pytest.param(250, 500, id="hundreds"),
    ],
)
def test_chart_gridlines_are_round_numbers(value: float, step: int) -> None:
    assert dashboard._nice_step(value) == step


def test_chart_stacks_series_in_order_and_scales_to_the_peak() -> None:
    start = datetime(2026, 3, 2, 0, tzinfo=UTC)
    hours = [
        dashboard.Hour(start + timedelta(hours=i), {"succeeded": s, "failed": f, "skipped": k})
        for i, (s, f, k) in enumerate([(6, 2, 0), (0, 0, 0), (1, 0, 1)])
    ]
    chart = dashboard.stacked_bar_chart(hours, width=340, height=124)
    assert [g.text for g in chart.gridlines] == ["0", "2", "4", "6", "8"]
    first = [r for r in chart.rects if r.title.startswith("00:00")]
    assert [r.series for r in first] == ["succeeded", "failed"], "bottom to top"
    succeeded, failed = (float(r.height) for r in first)
    assert succeeded == pytest.approx(3 * failed, abs=0.2)
    assert float(first[1].y) + failed == pytest.approx(float(first[0].y), abs=0.2), "stacked, not overlapping"
    assert succeeded + failed == pytest.approx(90, abs=0.2), "the peak bar fills the plot"
    assert chart.total == 10
    assert not [r for r in chart.rects if r.title.startswith("01:00")], "an empty hour draws nothing"


# --- Backfill action --------------------------------------------------------------------------------------


def test_backfill_action_asks_for_the_range_then_runs_it_once(admin_client: Client, user, frozen_clock):
    trigger = register(user, name="weekdays", overlap_policy="allow")
    page = act(admin_client, "backfill", trigger)
    assert "Backfill triggers" in page_text(page)
    assert 'name="start"' in page.content.decode()
    assert not Execution.objects.exists()

    def send(**fields: Any):
        body = {
            "action": "backfill",
            "apply": "yes",
            "_selected_action": [str(trigger.pk)],
            "start": "2026-02-23 00:00",
            "end": "2026-02-27 23:59",
            "spread_seconds": "0",
            **fields,
        }
        return admin_client.post(TRIGGERS, body, follow=True)

    dry = send(dry_run="on")
    assert texts(dry) == ["Dry run of “weekdays”: 5 slots, 0 already recorded, 5 would run."]
    assert not Execution.objects.exists()
    assert texts(send()) == ["Backfilled “weekdays”: 5 slots, 5 recorded now, 0 already recorded, 0 refused."]
    assert texts(send()) == ["Backfilled “weekdays”: 5 slots, 0 recorded now, 5 already recorded, 0 refused."]
    assert Execution.objects.filter(trigger=trigger, origin=ExecutionOrigin.BACKFILL).count() == 5


def test_backfill_action_says_why_a_range_is_refused(admin_client: Client, user, frozen_clock):
    trigger = register(user, name="weekdays")
    body = {
        "action": "backfill",
        "apply": "yes",
        "_selected_action": [str(trigger.pk)],
        "start": "2026-03-01 00:00",
        "end": "2026-03-09 00:00",
    }
    response = admin_client.post(TRIGGERS, body, follow=True)
    (message,) = texts(response)
    assert message.startswith("Could not backfill “weekdays”: must not be in the future")
    assert not Execution.objects.exists()


def test_the_counters_say_that_manual_runs_count_in_the_rate_but_not_in_the_run_count(
    admin_client: Client, user, frozen_clock
) -> None:
    """Issue #20: a manual run is in the success rate (and the failure counters) but not in "Run count",
    which follows the schedule (`max_runs` limits it). Both happen, and the admin and the API say so."""
    from executions.services import execution_complete, execution_fire, execution_run_now
    from schedules.vocabulary import COUNTER_HELP

    frozen_clock.set(T0 - timedelta(minutes=1))
    trigger = register(user, cron_expression="* * * * *")
    frozen_clock.set(T0)
    (scheduled,) = [row for row in execution_fire(trigger_id=trigger.pk, slot=T0) if row.slot == T0]
    manual = execution_run_now(trigger=Trigger.objects.get(pk=trigger.pk))
    for row, status in ((scheduled, ExecutionStatus.SUCCEEDED), (manual, ExecutionStatus.FAILED)):
        Execution.objects.filter(pk=row.pk).update(status=ExecutionStatus.RUNNING, started_at=T0)
        execution_complete(execution=Execution.objects.get(pk=row.pk), status=status, error="exit 1")
    trigger.refresh_from_db()
    assert (trigger.run_count, trigger.failure_count) == (1, 1)

    listed = admin_client.get(TRIGGERS).content.decode()
    assert 'title="1 of 2 ended runs (scheduled and manual) succeeded">50%' in listed
    page = page_text(admin_client.get(reverse("admin:schedules_trigger_change", args=[trigger.pk])))
    for name in ("run_count", "failure_count", "success_rate"):
        assert COUNTER_HELP[name] in page, name
    schema = admin_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    properties = schema["components"]["schemas"]["Trigger"]["properties"]
    assert properties["run_count"]["description"] == COUNTER_HELP["run_count"]
    assert "manual runs are not counted" in properties["run_count"]["description"]
