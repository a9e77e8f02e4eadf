"""The operators' main screens fit a laptop (1440x900) and a phone (390x844): the trigger list, the
execution list, a trigger's page and the dashboard, each with realistic rows (long names, zones other than
UTC, failures, a stuck run). On each, at each size, the page does not scroll sideways, the main tables fit
their box (or sit in a deliberate horizontal scroller whose key columns are in view without scrolling), and
the columns an operator looks for first — status, next run, success rate — are on screen. Screenshots of
every screen at both sizes land in test-artifacts/screenshots/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page

from executions.models import Execution, ExecutionOrigin, ExecutionStatus, SkipReason
from schedules import services
from schedules.models import Trigger
from tests.browser.conftest import SCREENSHOTS, App, screenshot
from tests.browser.test_admin_ui import PASSWORD, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"laptop": (1440, 900), "phone": (390, 844)}

#: What the page measures: the document's width against the viewport, and for each table the width it
#: needs, the box it sits in, the nearest ancestor that scrolls sideways on purpose, and where each key
#: column's header ends.
MEASURE = """
([tableSelector, keyColumns]) => {
  const table = document.querySelector(tableSelector);
  if (!table) return null;
  let scroller = null;
  for (let el = table.parentElement; el && el !== document.body; el = el.parentElement) {
    const overflow = getComputedStyle(el).overflowX;
    if (overflow === "auto" || overflow === "scroll") { scroller = el; break; }
  }
  const box = scroller || table.parentElement;
  const boxRect = box.getBoundingClientRect();
  const keys = {};
  for (const name of keyColumns) {
    const cell = table.querySelector(name);
    if (!cell) { keys[name] = null; continue; }
    const rect = cell.getBoundingClientRect();
    keys[name] = {left: rect.left, right: rect.right, width: rect.width,
                  visible: cell.offsetParent !== null && rect.width > 0};
  }
  return {
    viewport: window.innerWidth,
    documentWidth: document.documentElement.scrollWidth,
    tableWidth: table.scrollWidth,
    boxWidth: box.clientWidth,
    boxLeft: boxRect.left,
    boxRight: boxRect.left + box.clientWidth,
    scroller: scroller ? (scroller.className || scroller.tagName) : null,
    keys: keys,
    columns: Array.from(table.querySelectorAll("thead th"))
      .filter((th) => th.offsetParent !== null)
      .map((th) => `${th.className.split(" ")[0] || "th"} ${Math.round(th.getBoundingClientRect().width)}`),
    // What sticks out past the viewport, outermost first: the culprit when the page scrolls sideways.
    sticksOut: Array.from(document.querySelectorAll("body *"))
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1 && el.offsetParent !== null)
      .slice(0, 5)
      .map((el) => `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${[...el.classList].join(".")}`
                   + ` ${Math.round(el.getBoundingClientRect().width)}px`),
  };
}
"""


@pytest.fixture
def seeded(django_user_model) -> dict[str, Any]:
    operator = get_user_model().objects.create_superuser("operator", "ops@example.com", PASSWORD)
    now = datetime.now(UTC)
    specs = [
        ("Nightly warehouse export to the finance data lake", "30 2 * * *", "Europe/Berlin"),
        ("Weekday morning report", "0 9 * * 1-5", "America/Los_Angeles"),
        ("Every five minutes health probe of the partner API", "*/5 * * * *", "UTC"),
        ("Quarter-hour cache warm", "*/15 * * * *", "Asia/Kolkata"),
        ("Monthly invoice run on the last day", "0 6 L * *", "Australia/Sydney"),
    ]
    triggers = [
        services.trigger_register(
            owner=operator, name=name, workflow_id=f"wf-{i}-long-workflow-identifier", cron_expression=cron,
            timezone=zone, timeout_seconds=300,
        )
        for i, (name, cron, zone) in enumerate(specs)
    ]  # fmt: skip
    main = triggers[0]
    statuses = [ExecutionStatus.SUCCEEDED] * 5 + [ExecutionStatus.FAILED, ExecutionStatus.SKIPPED]
    rows = [
        Execution(
            trigger=triggers[i % len(triggers)], slot=now - timedelta(minutes=5 * i),
            origin=ExecutionOrigin.SCHEDULE,
            status=statuses[i % len(statuses)], attempts=1, duration_ms=1234 + i,
            skip_reason=SkipReason.OVERLAP if statuses[i % len(statuses)] == ExecutionStatus.SKIPPED else "",
            error="HTTP 503 from https://partner.example.com/api/v2/jobs: upstream unavailable, retry later"
            if statuses[i % len(statuses)] == ExecutionStatus.FAILED else "",
        )
        for i in range(70)
    ]  # fmt: skip
    Execution.objects.bulk_create(rows)
    stuck = Execution.objects.create(
        trigger=main, slot=now - timedelta(hours=2), origin=ExecutionOrigin.SCHEDULE,
        status=ExecutionStatus.RUNNING, attempts=1,
    )  # fmt: skip
    Execution.objects.filter(pk=stuck.pk).update(started_at=now - timedelta(hours=2))
    Trigger.objects.filter(pk=main.pk).update(consecutive_failures=4, last_error="HTTP 503 from target")
    return {"trigger": main}


def screens(trigger: Trigger) -> list[tuple[str, str, str, list[str]]]:
    """(name, path, main table, key column cells) of each screen."""
    return [
        ("trigger-list", "/admin/schedules/trigger/", "#result_list",
         ["th.column-status_badge", "th.column-next_run", "th.column-success_rate"]),
        ("execution-list", "/admin/executions/execution/", "#result_list",
         ["th.column-status_badge", "th.column-slot_when", "th.column-trigger_link"]),
        ("trigger-page", f"/admin/schedules/trigger/{trigger.pk}/change/", "#executions-group table",
         ["th.column-status_badge", "th.column-slot_when"]),
        ("dashboard", "/admin/dashboard/", "table.sched-heatmap", ["th.sched-heatmap__total"]),
    ]  # fmt: skip


def problems_of(name: str, m: dict[str, Any], *, must_fit: bool) -> list[str]:
    """What is wrong with one measured screen; `must_fit`: the table may not lean on its scroller."""
    found = []
    if m["documentWidth"] > m["viewport"]:
        found.append(
            f"{name}: the page scrolls sideways ({m['documentWidth']} px in {m['viewport']} px;"
            f" sticking out: {', '.join(m['sticksOut'])})"
        )
    if m["tableWidth"] > m["boxWidth"] and (m["scroller"] is None or must_fit):
        found.append(f"{name}: table {m['tableWidth']} px overflows its {m['boxWidth']} px box")
    right_edge = min(m["viewport"], m["boxRight"])
    for key, rect in m["keys"].items():
        if rect is None or not rect["visible"]:
            found.append(f"{name}: key column {key} is missing or hidden")
        elif rect["right"] > right_edge + 1:
            found.append(f"{name}: key column {key} ends at {rect['right']:.0f} px, past {right_edge:.0f} px")
    return found


@pytest.mark.parametrize("size", list(SIZES))
def test_main_screens_fit_laptop_and_phone(page: Page, app: App, seeded, size: str) -> None:
    width, height = SIZES[size]
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, app)
    found: list[str] = []
    for name, path, table, keys in screens(seeded["trigger"]):
        page.goto(app.url(path))
        measured = page.evaluate(MEASURE, [table, keys])
        assert measured is not None, f"{name}: no {table} on {path}"
        print(name, size, measured)  # the figures, for whoever reads -s output
        # On a laptop every column fits; on a phone a list may scroll sideways past its key columns.
        found += problems_of(f"{name} at {width}x{height}", measured, must_fit=size == "laptop")
        screenshot(page, f"layout-{name}-{width}x{height}")
        if name == "dashboard":
            assert "Stuck runs (1)" in page.locator("#stuck h2").inner_text()
            for part in ("heatmap", "stuck"):
                shot = SCREENSHOTS / f"layout-{part}-{width}x{height}.png"
                page.locator(f"#{part}").screenshot(path=str(shot))
        if name == "trigger-page":
            assert page.locator(".sched-strip__run").count() == 15
            strip = SCREENSHOTS / f"layout-run-strip-{width}x{height}.png"
            page.locator(".field-run_history").screenshot(path=str(strip))
    assert not found, "\n".join(found)
