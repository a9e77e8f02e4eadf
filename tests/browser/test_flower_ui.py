"""Flower, opened as an operator would (issue #20): its tasks page, searched for a failing demo trigger by
name, lists that trigger's launch as FAILURE. The fleet (a real launcher worker and Flower) is the e2e
module's; the screenshot lands in test-artifacts/screenshots/."""

from __future__ import annotations

import pytest

from executions import services
from tests.browser.conftest import screenshot
from tests.e2e import test_flower_launches
from tests.e2e.test_executions_launch import wait_end

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The e2e module's fleet (Flower, then a launcher worker) and its demo targets.
monitored, configured = test_flower_launches.monitored, test_flower_launches.configured


def test_flower_lists_a_failed_launch_by_its_triggers_name(monitored, page, user):
    _group, url = monitored
    trigger = test_flower_launches.new_trigger(user, "reports-broken", "broken")
    execution = wait_end(services.execution_run_now(trigger=trigger))
    assert execution.status == "failed"
    test_flower_launches.tasks_of(url, "reports-broken", states=1)  # Flower has the event

    page.goto(f"{url}/tasks")
    page.locator("input[type=search]").fill("reports-broken")  # Flower searches the kwargs' names too
    page.get_by_text("Showing 1 to 1 of 1 tasks").wait_for()
    row = page.locator("table tbody tr").first
    assert "executions.launch" in row.inner_text()
    assert "FAILURE" in row.inner_text()
    screenshot(page, "flower-failed-launch-search")

    row.get_by_role("link", name=str(_task_id(url, "reports-broken"))).click()
    page.get_by_text("LaunchFailed").first.wait_for()
    detail = page.locator("body").inner_text()
    assert "'trigger': 'reports-broken'" in detail
    assert "'workflow': 'broken'" in detail
    assert "trigger reports-broken, workflow broken, slot manual" in detail, "the exception says it in words"
    screenshot(page, "flower-failed-launch-detail")


def _task_id(url: str, trigger_name: str) -> str:
    (task,) = test_flower_launches.tasks_of(url, trigger_name, states=1)
    return task["uuid"]
