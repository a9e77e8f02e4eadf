"""Execution windows and blackouts through the fire batch, the API and the preview, on the real database and
Redis, the clock frozen: a slot outside a window is recorded skipped with its reason, or deferred (kept as
its own (trigger, slot) row, its launch held by `not_before` and sent by dispatch when near)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from executions import tasks
from executions.models import Execution, ExecutionStatus
from executions.services import dispatch
from schedules import services
from schedules.models import Trigger
from tests.integration.test_admin import add_form, form_data, page_text
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

TRIGGERS = "/api/v1/triggers/"
WEEKDAYS_9_TO_5 = [{"days": "mon-fri", "start": "09:00", "end": "17:00"}]
SATURDAY_10 = datetime(2026, 3, 7, 15, 0, tzinfo=UTC)  # 10:00 in New York (EST)
MONDAY_OPENING = datetime(2026, 3, 9, 13, 0, tzinfo=UTC)  # 09:00 EDT, the day after spring forward


def rows(trigger: Trigger) -> list[tuple[datetime, str, str, datetime | None]]:
    found = Execution.objects.filter(trigger=trigger).order_by("slot")
    return [(e.slot, e.status, e.skip_reason, e.not_before) for e in found]


@pytest.fixture
def hourly(user, frozen_clock):
    """An hourly trigger in New York, Mon-Fri 09:00-17:00, registered just before `first` (nothing missed)."""

    def build(first: datetime = SATURDAY_10, **fields) -> Trigger:
        frozen_clock.set(first - timedelta(seconds=30))
        values = {
            "name": "hourly",
            "workflow_id": "wf",
            "cron_expression": "0 * * * *",
            "timezone": "America/New_York",
            "windows": WEEKDAYS_9_TO_5,
            "overlap_policy": "allow",
            **fields,
        }
        return services.trigger_register(owner=user, **values)

    return build


def fire(trigger: Trigger, *slots: datetime) -> None:
    tasks.fire_batch([[str(trigger.pk), slot.isoformat(), "schedule"] for slot in slots])


def test_a_slot_outside_the_window_is_skipped_with_its_reason(hourly, frozen_clock) -> None:
    trigger = hourly()
    frozen_clock.set(SATURDAY_10)
    fire(trigger, SATURDAY_10)
    assert rows(trigger) == [(SATURDAY_10, ExecutionStatus.SKIPPED, "outside_window", None)]
    trigger.refresh_from_db()
    assert trigger.run_count == 0, "a skipped slot does not count as a run"


def test_a_deferred_slot_keeps_its_identity_and_waits_for_the_opening(
    hourly, frozen_clock, django_capture_on_commit_callbacks
) -> None:
    trigger = hourly(window_action="defer")
    frozen_clock.set(SATURDAY_10)
    with django_capture_on_commit_callbacks(execute=True):
        fire(trigger, SATURDAY_10)
    # Far off (beyond the broker's countdown cap): dispatch left it pending for the sweeper.
    assert rows(trigger) == [(SATURDAY_10, ExecutionStatus.PENDING, "deferred", MONDAY_OPENING)]
    fire(trigger, SATURDAY_10)  # a duplicate fire of the same slot: the unique key, nothing new
    assert len(rows(trigger)) == 1
    frozen_clock.set(MONDAY_OPENING - timedelta(seconds=5))
    assert dispatch.execution_enqueue_many(execution_ids=[e.pk for e in trigger.executions.all()]) == 1
    assert rows(trigger)[0][1] == ExecutionStatus.QUEUED


def test_inside_the_window_runs_as_before(hourly, frozen_clock) -> None:
    slot = MONDAY_OPENING + timedelta(hours=1)
    trigger = hourly(slot, window_action="defer")
    frozen_clock.set(slot)
    fire(trigger, slot)
    assert rows(trigger) == [(slot, ExecutionStatus.QUEUED, "", None)]


def test_a_blackout_skips_and_caught_up_slots_meet_the_rules_too(hourly, frozen_clock) -> None:
    hour = [MONDAY_OPENING + timedelta(hours=n) for n in range(5)]  # 09:00 ... 13:00 EDT
    trigger = hourly(
        hour[1],
        catchup_policy="fire_immediately",
        catchup_window_seconds=86_400,
        blackouts=[{"start": "2026-03-09T15:30:00Z", "end": "2026-03-09T16:30:00Z", "note": "db upgrade"}],
    )
    frozen_clock.set(hour[4] + timedelta(seconds=1))  # down since 10:00: 10, 11, 12 missed, 13 due
    fire(trigger, hour[4])
    assert [(slot, status, reason) for slot, status, reason, _ in rows(trigger)] == [
        (hour[1], ExecutionStatus.QUEUED, ""),
        (hour[2], ExecutionStatus.QUEUED, ""),
        (hour[3], ExecutionStatus.SKIPPED, "blackout"),
        (hour[4], ExecutionStatus.QUEUED, ""),
    ]
    trigger.refresh_from_db()
    assert trigger.run_count == 3


def test_the_api_takes_rules_reads_them_back_normalised_and_refuses_bad_ones(user, frozen_clock) -> None:
    frozen_clock.set(SATURDAY_10)
    api = client_for(user)
    body = {
        "name": "report",
        "workflow_id": "wf",
        "cron_expression": "0 * * * *",
        "timezone": "Europe/Berlin",
        "windows": [{"days": ["MON", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}],
        "blackouts": [{"start": "2026-03-10T10:00:00+01:00", "end": "2026-03-10T12:00:00+01:00"}],
        "window_action": "defer",
    }
    created = api.post(TRIGGERS, body, format="json")
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["windows"] == [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}
    ]
    assert data["blackouts"] == [{"start": "2026-03-10T09:00:00Z", "end": "2026-03-10T11:00:00Z", "note": ""}]
    assert (data["window_action"], data["excluded_calendar"]) == ("defer", None)
    for field, value, words in [
        ("windows", [{"start": "9", "end": "17:00"}], "window 1 start"),
        ("windows", {"start": "09:00"}, "must be a list"),
        ("blackouts", [{"start": "2026-03-10T12:00:00Z", "end": "2026-03-10T10:00:00Z"}], "after start"),
        ("window_action", "later", "is not one of: skip, defer"),
        ("excluded_calendar", 987654, "no calendar with id 987654"),
        ("excluded_calendar", "x", "calendar id"),
    ]:
        response = api.patch(f"{TRIGGERS}{data['id']}/", {field: value}, format="json")
        assert response.status_code == 400, (field, response.content)
        assert words in " ".join(response.json()[field]), response.json()
    assert Trigger.objects.get(pk=data["id"]).window_action == "defer", "nothing half-saved"


def test_the_preview_marks_what_the_rules_do(user, frozen_clock) -> None:
    frozen_clock.set(datetime(2026, 3, 6, 20, 0, tzinfo=UTC))  # Friday 15:00 in New York
    trigger = services.trigger_register(
        owner=user,
        name="daily",
        workflow_id="wf",
        cron_expression="0 10 * * *",
        timezone="America/New_York",
        windows=WEEKDAYS_9_TO_5,
        window_action="defer",
    )
    body = client_for(user).get(f"{TRIGGERS}{trigger.pk}/preview/?count=4").json()
    got = [(r["local"][:10], r["decision"], r["reason"], r["not_before"]) for r in body["next_runs"]]
    assert got == [
        ("2026-03-07", "deferred", None, "2026-03-09T13:00:00Z"),
        ("2026-03-08", "deferred", None, "2026-03-09T13:00:00Z"),
        ("2026-03-09", "run", None, None),
        ("2026-03-10", "run", None, None),
    ]
    assert "deferred to 2026-03-09T13:00:00Z" in body["next_runs"][0]["rule"]
    services.trigger_update(trigger=trigger, window_action="skip")
    body = client_for(user).get(f"{TRIGGERS}{trigger.pk}/preview/?count=1").json()
    assert (body["next_runs"][0]["decision"], body["next_runs"][0]["reason"]) == ("skipped", "outside_window")


@pytest.mark.parametrize(
    ("zone", "window", "slot", "deferred_to"),
    [
        # Berlin springs forward at 01:00 UTC on 2026-03-29: 02:30 does not exist, the window opens at 03:00.
        pytest.param(
            "Europe/Berlin",
            {"days": "sun", "start": "02:30", "end": "05:00"},
            datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
            datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
            id="berlin-spring-gap",
        ),
        # New York falls back at 06:00 UTC on 2026-11-01: a window until 01:30 closed at the first 01:30
        # (05:30 UTC), so the second 01:00 (06:00 UTC) is outside it: deferred to the next midnight (EST).
        pytest.param(
            "America/New_York",
            {"days": "mon-sun", "start": "00:00", "end": "01:30"},
            datetime(2026, 11, 1, 6, 0, tzinfo=UTC),
            datetime(2026, 11, 2, 5, 0, tzinfo=UTC),
            id="ny-fall-repeat",
        ),
    ],
)
def test_deferral_across_a_transition_through_the_fire_batch(
    user, frozen_clock, zone, window, slot, deferred_to
) -> None:
    frozen_clock.set(slot - timedelta(seconds=30))
    trigger = services.trigger_register(
        owner=user,
        name="half-hourly",
        workflow_id="wf",
        cron_expression="*/30 * * * *",
        timezone=zone,
        windows=[window],
        window_action="defer",
    )
    frozen_clock.set(slot)
    fire(trigger, slot)
    assert rows(trigger) == [(slot, ExecutionStatus.PENDING, "deferred", deferred_to)]


def test_the_admin_form_takes_windows_and_its_fire_times_say_what_they_do(
    admin_client, admin_user, user, frozen_clock
) -> None:
    frozen_clock.set(datetime(2026, 3, 6, 20, 0, tzinfo=UTC))  # Friday 15:00 in New York
    url = reverse("admin:schedules_trigger_add")
    bad = admin_client.post(url, add_form(user, windows='[{"start": "9", "end": "17:00"}]'))
    assert bad.status_code == 200
    assert "window 1 start" in str(bad.context["adminform"].form.errors["windows"])
    assert not Trigger.objects.exists(), "nothing half-saved"
    made = admin_client.post(
        url,
        add_form(
            user,
            cron_expression="0 10 * * *",
            timezone="America/New_York",
            windows='[{"days": "mon-fri", "start": "09:00", "end": "17:00"}]',
        ),
    )
    assert made.status_code == 302, made.context and made.context["adminform"].form.errors
    trigger = Trigger.objects.get()
    assert trigger.windows == [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}
    ]
    assert trigger.window_action == "skip"
    page = admin_client.get(reverse("admin:schedules_trigger_change", args=[trigger.pk]))
    assert "skipped: outside the execution windows" in page_text(page)
    assert form_data(page)["window_action"] == "skip"
