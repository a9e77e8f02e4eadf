"""The site's front door (issue #20): `/` is a page that links to the admin, the dashboard, the API docs and
Flower; every page has an icon and `/favicon.ico` is no 404; the admin's "View site" leads to `/`; an
execution's breadcrumb names its trigger and slot in words."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from executions.models import Execution, ExecutionOrigin, ExecutionStatus
from tests.integration import test_admin
from tests.integration.test_admin import register

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

plain_static_files = test_admin.plain_static_files
fast_password_hashing = test_admin.fast_password_hashing


def test_the_landing_page_links_to_where_people_work(client: Client, settings) -> None:
    settings.FLOWER_URL = "https://flower.example.test/"
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    links = set(re.findall(r'href="([^"]+)"', html))
    assert {"/admin/", "/admin/dashboard/", "/api/docs/", "https://flower.example.test/", "/readyz"} <= links
    assert "<title>Workflow scheduler</title>" in html
    assert client.post("/").status_code == 405, "a page to read"


def test_the_favicon_is_served_not_a_404(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/operations/favicon.svg"
    assert finders.find("operations/favicon.svg"), "the icon ships as a static file"


def test_admin_pages_carry_the_icon_and_view_site_leads_home(admin_client: Client) -> None:
    for url in (reverse("admin:index"), reverse("admin:schedules_trigger_changelist")):
        html = admin_client.get(url).content.decode()
        assert '<link rel="icon" href="/static/operations/favicon.svg"' in html
        assert '<a href="/">View site</a>' in html


def test_an_executions_breadcrumb_and_title_name_trigger_and_slot(admin_client: Client, user) -> None:
    trigger = register(user, name="nightly-etl", timezone="America/Los_Angeles")
    run = Execution.objects.create(
        trigger=trigger,
        origin=ExecutionOrigin.SCHEDULE,
        status=ExecutionStatus.SUCCEEDED,
        slot=datetime(2026, 3, 2, 17, 0, tzinfo=UTC),
    )
    html = admin_client.get(reverse("admin:executions_execution_change", args=[run.pk])).content.decode()
    (crumbs,) = re.findall(r'<div class="breadcrumbs">(.*?)</div>', html, flags=re.S)
    assert "nightly-etl, slot" in crumbs
    assert "09:00" in crumbs, "the slot in the trigger's zone (17:00 UTC is 09:00 in Los Angeles)"
    assert str(trigger.pk) not in crumbs, "no ids for people to decode"
    (title,) = re.findall(r"<title>(.*?)</title>", html, flags=re.S)
    assert "nightly-etl, slot" in title
    manual = Execution.objects.create(
        trigger=trigger, origin=ExecutionOrigin.MANUAL, status=ExecutionStatus.SUCCEEDED
    )
    html = admin_client.get(reverse("admin:executions_execution_change", args=[manual.pk])).content.decode()
    (crumbs,) = re.findall(r'<div class="breadcrumbs">(.*?)</div>', html, flags=re.S)
    assert "nightly-etl, manual run" in crumbs
