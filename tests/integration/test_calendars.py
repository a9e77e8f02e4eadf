"""Calendars (holiday and exclusion dates) through the API, the admin, the preview and the fire batch, on the
real database and Redis with a frozen clock: owner-scoped (shared ones readable by all, another user's a
404), imported from ICS text or the holidays package, excluded by a trigger in its own zone, read once per
fire batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions import tasks
from executions.models import Execution
from schedules import services
from schedules.models import Calendar
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
)
from tests.unit.test_calendars import ICS

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

CALENDARS = "/api/v1/calendars/"
TRIGGERS = "/api/v1/triggers/"
CHRISTMAS_0900_BERLIN = datetime(2026, 12, 25, 8, 0, tzinfo=UTC)


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(username="ops", password="pw-ops-123", is_staff=True)


def test_calendars_are_made_from_dates_ics_or_holidays_and_scoped_to_their_owner(
    user, other_user, staff, frozen_clock
) -> None:
    alice, bob = client_for(user), client_for(other_user)
    listed = alice.post(CALENDARS, {"name": "closures", "dates": ["2026-08-14", "2026-08-13"]}, format="json")
    assert listed.status_code == 201, listed.content
    assert (listed.json()["dates"], listed.json()["source"]) == (["2026-08-13", "2026-08-14"], "manual")
    imported = alice.post(CALENDARS, {"name": "team", "ics": ICS}, format="json").json()
    assert (imported["source"], imported["date_count"]) == ("ics", 7)
    bavaria = client_for(staff).post(
        CALENDARS,
        {
            "name": "Bavaria",
            "shared": True,
            "holidays": {"country": "de", "subdivision": "by", "years": [2026]},
        },
        format="json",
    )
    assert bavaria.status_code == 201, bavaria.content
    body = bavaria.json()
    assert (body["source"], body["country"], body["subdivision"], body["shared"]) == (
        "holidays",
        "DE",
        "BY",
        True,
    )
    assert "2026-01-06" in body["dates"]

    names = lambda client: sorted(c["name"] for c in client.get(CALENDARS).json()["results"])  # noqa: E731
    assert names(alice) == ["Bavaria", "closures", "team"]
    assert names(bob) == ["Bavaria"], "another user's calendars are not listed; shared ones are"
    assert bob.get(f"{CALENDARS}{listed.json()['id']}/").status_code == 404
    assert bob.patch(f"{CALENDARS}{listed.json()['id']}/", {"name": "x"}, format="json").status_code == 404
    assert bob.get(f"{CALENDARS}{body['id']}/").status_code == 200
    assert bob.patch(f"{CALENDARS}{body['id']}/", {"name": "mine"}, format="json").status_code == 403
    assert bob.delete(f"{CALENDARS}{body['id']}/").status_code == 403


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        pytest.param({"name": "", "dates": []}, "name", "must not be empty", id="empty-name"),
        pytest.param({"name": "x", "dates": ["2026-02-30"]}, "dates", "is not a date", id="bad-date"),
        pytest.param({"name": "x", "ics": "nonsense"}, "ics", "is not an ICS file", id="bad-ics"),
        pytest.param(
            {"name": "x", "holidays": {"country": "XX"}}, "country", "holidays package", id="country"
        ),
        pytest.param(
            {"name": "x", "holidays": {"country": "DE", "years": "2026"}}, "years", "list", id="years"
        ),
        pytest.param({"name": "x", "dates": [], "ics": ICS}, "ics", "give one of", id="two-sources"),
        pytest.param({"name": "x", "shared": True}, "shared", "only staff", id="share-as-user"),
        pytest.param({"name": "x", "colour": "red"}, "colour", "not a field", id="unknown"),
    ],
)
def test_bad_calendars_are_400s_naming_the_field(user, body, field, words) -> None:
    response = client_for(user).post(CALENDARS, body, format="json")
    assert response.status_code == 400, response.content
    assert words in " ".join(response.json()[field]), response.json()
    assert not Calendar.objects.exists(), "nothing half-saved"


def test_a_trigger_excludes_a_calendar_by_its_zone_and_the_preview_shows_it(
    user, other_user, frozen_clock
) -> None:
    frozen_clock.set(datetime(2026, 12, 23, 12, 0, tzinfo=UTC))
    alice = client_for(user)
    holidays = alice.post(
        CALENDARS, {"name": "xmas", "dates": ["2026-12-25", "2026-12-26"]}, format="json"
    ).json()
    private = client_for(other_user).post(
        CALENDARS, {"name": "bob's", "dates": ["2026-12-24"]}, format="json"
    )
    trigger = alice.post(
        TRIGGERS,
        {
            "name": "daily",
            "workflow_id": "wf",
            "cron_expression": "0 9 * * *",
            "timezone": "Europe/Berlin",
            "excluded_calendar": private.json()["id"],
        },
        format="json",
    )
    assert trigger.status_code == 400
    assert trigger.json()["excluded_calendar"] == [f"no calendar with id {private.json()['id']}"]
    body = {
        "name": "daily",
        "workflow_id": "wf",
        "cron_expression": "0 9 * * *",
        "timezone": "Europe/Berlin",
        "excluded_calendar": holidays["id"],
    }
    created = alice.post(TRIGGERS, body, format="json").json()
    assert created["excluded_calendar"] == holidays["id"]
    preview = alice.get(f"{TRIGGERS}{created['id']}/preview/?count=4").json()
    assert [(r["local"][:10], r["decision"], r["reason"]) for r in preview["next_runs"]] == [
        ("2026-12-24", "run", None),
        ("2026-12-25", "skipped", "calendar"),
        ("2026-12-26", "skipped", "calendar"),
        ("2026-12-27", "run", None),
    ]
    assert preview["excluded_days"] == ["2026-12-25", "2026-12-26"]
    assert "'xmas'" in preview["next_runs"][1]["rule"]
    deleting = alice.delete(f"{CALENDARS}{holidays['id']}/")
    assert deleting.status_code == 400
    assert "excluded by 1 trigger" in deleting.json()["calendar"][0]


def test_the_fire_batch_skips_excluded_dates_reading_calendars_once(user, frozen_clock) -> None:
    frozen_clock.set(CHRISTMAS_0900_BERLIN - timedelta(seconds=30))
    calendars = [
        services.calendar_create(owner=user, name=f"cal {n}", dates=["2026-12-25"]) for n in range(3)
    ]
    triggers = [
        services.trigger_register(
            owner=user,
            name=f"t{n}",
            workflow_id="wf",
            cron_expression="0 9 * * *",
            timezone="Europe/Berlin",
            excluded_calendar=calendars[n % 3] if n < 4 else None,
        )
        for n in range(5)
    ]
    frozen_clock.set(CHRISTMAS_0900_BERLIN)
    with CaptureQueriesContext(connection) as queries:
        tasks.fire_batch([[str(t.pk), CHRISTMAS_0900_BERLIN.isoformat(), "schedule"] for t in triggers])
    assert sum('"schedules_calendar"' in q["sql"] for q in queries.captured_queries) == 1
    recorded = {
        e.trigger.name: (e.status, e.skip_reason) for e in Execution.objects.select_related("trigger")
    }
    assert recorded == {
        **{f"t{n}": ("skipped", "calendar") for n in range(4)},
        "t4": ("queued", ""),
    }


def test_the_calendar_admin_lists_adds_and_imports(admin_client, admin_user) -> None:
    assert admin_client.get("/admin/schedules/calendar/add/").status_code == 200
    response = admin_client.post(
        "/admin/schedules/calendar/add/",
        {
            "name": "NY",
            "owner": admin_user.pk,
            "description": "",
            "country": "US",
            "subdivision": "NY",
            "years": "2026",
            "dates": "",
        },
    )
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    calendar = Calendar.objects.get(name="NY")
    assert (calendar.source, calendar.country) == ("holidays", "US")
    assert "2026-07-03" in calendar.dates  # Independence Day observed
    page = admin_client.get("/admin/schedules/calendar/")
    assert page.status_code == 200
    assert b"NY" in page.content
    assert admin_client.get(f"/admin/schedules/calendar/{calendar.pk}/change/").status_code == 200
    bad = admin_client.post(
        "/admin/schedules/calendar/add/", {"name": "bad", "owner": admin_user.pk, "dates": "2026-02-30"}
    )
    assert bad.status_code == 200
    assert "is not a date" in str(bad.context["adminform"].form.errors["dates"])
