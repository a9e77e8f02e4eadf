"""The operators' UI in a real browser: what a person does on a first day — log in, add a trigger with a
typo in its cron expression, read the error, fix it with a preset and see when it will fire, pause and resume
it, run it now and find the run, then read the dashboard. Screenshots land in test-artifacts/screenshots/."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from executions.models import Execution, ExecutionOrigin, ExecutionStatus
from schedules import services
from schedules.models import Trigger
from tests.browser.conftest import App, screenshot
from toolkit import clock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-operator-123"
BAD_HOUR = "field 2 (hour): 25 is out of range 0-23"


@pytest.fixture
def operator():
    return get_user_model().objects.create_superuser("operator", "ops@example.com", PASSWORD)


def log_in(page: Page, app: App) -> None:
    page.goto(app.url("/admin/login/?next=/admin/"))
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_contain_text("Workflow scheduler")


def messages(page: Page):
    return page.locator("ul.messagelist li")


def test_a_trigger_from_typo_to_first_run(page: Page, app: App, operator) -> None:
    log_in(page, app)
    screenshot(page, "01-admin-index")

    page.goto(app.url("/admin/schedules/trigger/add/"))
    page.fill("#id_name", "Morning report")
    page.fill("#id_workflow_id", "wf-morning-report")
    page.fill("#id_timezone", "America/Los_Angeles")
    page.fill("#id_cron_expression", "0 25 * * 1-5")
    live_error = page.locator("#fire-time-preview .sched-preview__error")
    expect(live_error).to_have_text(BAD_HOUR)  # the preview endpoint, asked while typing
    expect(page.locator(".field-interval_seconds")).to_be_hidden()  # only the cron kind's fields show
    page.click("input[name=_continue]")

    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-cron_expression ul.errorlist")).to_have_text(BAD_HOUR)
    assert not Trigger.objects.exists(), "a rejected form saves nothing"
    screenshot(page, "02-trigger-bad-cron")

    page.select_option("#id_preset", "weekdays-0900")
    expect(page.locator("#id_cron_expression")).to_have_value("0 9 * * 1-5")
    rows = page.locator("#fire-time-preview tbody tr")
    expect(rows).to_have_count(10)
    expect(live_error).to_be_hidden()
    expect(page.locator(".sched-preview__description")).to_have_text(
        "At 09:00, Monday through Friday (America/Los_Angeles)"
    )
    expect(rows.first).to_contain_text(re.compile(r"09:00 P[SD]T"))
    screenshot(page, "03-trigger-fixed-with-preview")
    page.click("input[name=_continue]")

    expect(messages(page).first).to_contain_text("was added successfully")
    trigger = Trigger.objects.get()
    assert (trigger.owner, trigger.cron_expression, trigger.status) == (operator, "0 9 * * 1-5", "active")
    expect(rows).to_have_count(10)  # now computed by the server from the saved trigger
    screenshot(page, "04-trigger-saved")

    page.click("button.sched-op--pause")
    expect(messages(page)).to_have_text(["Paused “Morning report”."])
    expect(page.locator(".field-status_badge .sched-badge")).to_have_text(re.compile("paused", re.I))
    assert Trigger.objects.get().status == "paused"
    page.click("button.sched-op--resume")
    expect(messages(page).first).to_contain_text("Resumed “Morning report”; next run")
    assert Trigger.objects.get().status == "active"

    page.click("button.sched-op--run_now")
    expect(messages(page).first).to_contain_text("Started a run of “Morning report”: execution")
    expect(page.locator("#executions-group tr.has_original")).to_have_count(1)
    run = Execution.objects.get()
    assert (run.origin, run.requested_by) == (ExecutionOrigin.MANUAL, operator)
    screenshot(page, "05-trigger-after-run-now")

    messages(page).first.locator("a").click()
    expect(page.locator("#content h2").first).to_have_text(f"Morning report, manual run {str(run.pk)[:8]}")
    screenshot(page, "06-execution")

    page.goto(app.url("/admin/schedules/trigger/"))
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list td.field-schedule")).to_have_text(
        "At 09:00, Monday through Friday (America/Los_Angeles)"
    )
    screenshot(page, "07-trigger-list")


def test_the_dashboard_draws_the_day(page: Page, app: App, operator) -> None:
    now = clock.now()
    trigger = services.trigger_register(
        owner=operator, name="Hourly sync", workflow_id="wf-sync", cron_expression="0 * * * *"
    )
    services.trigger_register(owner=operator, name="Nightly export", workflow_id="wf-export",
                              cron_expression="30 2 * * *", timezone="Europe/Berlin")  # fmt: skip
    history = []
    for hours_ago in range(24):
        statuses = [ExecutionStatus.SUCCEEDED] * (2 + hours_ago % 4)
        statuses += [ExecutionStatus.FAILED] * (hours_ago % 5 == 0) + [ExecutionStatus.SKIPPED] * (
            hours_ago % 7 == 3
        )
        for i, status in enumerate(statuses):
            history.append(Execution(trigger=trigger, slot=now - timedelta(hours=hours_ago, minutes=i),
                                     origin=ExecutionOrigin.SCHEDULE, status=status))  # fmt: skip
    Execution.objects.bulk_create(history)
    for row in Execution.objects.all():  # spread over the day (created_at is stamped at insert)
        Execution.objects.filter(pk=row.pk).update(created_at=row.slot)

    log_in(page, app)
    page.click("text=Open the scheduler dashboard")
    chart = page.locator("svg.sched-chart")
    expect(chart).to_be_visible()
    bars = chart.locator("rect")
    expect(bars.first).to_be_visible()
    assert bars.count() >= 24
    expect(chart.locator("rect.series-failed").first).to_be_attached()
    expect(page.locator("#upcoming tbody tr").first).to_be_visible()  # the next slots, across triggers
    expect(page.locator("#fleet")).to_contain_text("Beat leader")
    expect(page.locator("#fleet a")).to_have_attribute("href", re.compile(r"^http://127\.0\.0\.1:5555/"))
    screenshot(page, "08-dashboard")


def test_a_triggers_history_page_is_its_audit_trail(page: Page, app: App, operator) -> None:
    """Pause, resume, run now and an edit in the admin, then History: each is there, with who and what."""
    trigger = services.trigger_register(
        owner=operator, name="Audit me", workflow_id="wf-audit", cron_expression="0 9 * * 1-5"
    )
    log_in(page, app)
    page.goto(app.url(f"/admin/schedules/trigger/{trigger.pk}/change/"))
    for button in ("pause", "resume", "run_now"):
        page.click(f"button.sched-op--{button}")
        expect(messages(page)).to_have_count(1)
    page.fill("#id_name", "Audited")
    page.click("input[name=_continue]")
    expect(messages(page)).to_have_count(1)

    page.click("a.historylink")
    rows = page.locator("#change-history tbody tr")
    expect(rows).to_have_count(5)
    table = page.locator("#change-history").inner_text()
    for words in ("Paused: paused by operator in the admin", "Resumed", "Run now (execution", "Edited"):
        assert words in table
    assert "Audit me → Audited" in " ".join(table.split())
    assert table.count("operator") >= 4
    screenshot(page, "09-trigger-history")


def test_the_dashboard_refreshes_itself_in_place(page: Page, app: App, operator) -> None:
    """Every 30 s the page fetches itself and swaps in the new content: a trigger added meanwhile appears in
    the heatmap, the reader's scroll position stays, and unticking the box is remembered. The page's timers
    run on Playwright's clock, so the test waits for no real 30 s."""
    services.trigger_register(
        owner=operator, name="Hourly sync", workflow_id="wf-sync", cron_expression="0 * * * *"
    )
    page.set_viewport_size({"width": 390, "height": 844})
    page.clock.install()
    log_in(page, app)
    page.goto(app.url("/admin/dashboard/"))
    heatmap = page.locator("#heatmap")
    expect(heatmap).to_contain_text("Hourly sync")
    page.evaluate("window.scrollTo(0, 600)")
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0

    services.trigger_register(
        owner=operator, name="Added meanwhile", workflow_id="wf-new", cron_expression="*/5 * * * *"
    )
    page.clock.run_for(31_000)
    expect(heatmap).to_contain_text("Added meanwhile")
    assert page.evaluate("window.scrollY") == scrolled, "the reader stays where they were"
    expect(page.locator("#sched-refresh input")).to_be_checked()

    page.locator("#sched-refresh input").uncheck()
    page.reload()
    expect(page.locator("#sched-refresh input")).not_to_be_checked()
    screenshot(page, "10-dashboard-refresh-off-phone")
