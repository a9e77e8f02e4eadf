"""What needs an operator's eye, against the real database: a trigger's run-history strip, runs stuck past
their timeout or attempt deadline, failed runs re-run in bulk, an overlap skip that names the run that
blocked it, and the dashboard's upcoming-slots heatmap with its caps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from executions import selectors
from executions.models import Attempt, AttemptOutcome, Execution, ExecutionStatus, SkipReason
from operations import dashboard
from tests.integration.test_admin import (  # noqa: F401 (fixtures used by name)
    DASHBOARD,
    EXECUTIONS,
    act,
    execution,
    fast_password_hashing,
    fleet_probe,
    page_text,
    plain_static_files,
    register,
    texts,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def change_url(run: Execution) -> str:
    return reverse("admin:executions_execution_change", args=[run.pk])


# --- The run-history strip --------------------------------------------------------------------------------


def test_a_trigger_page_draws_its_last_fifty_runs_oldest_first(
    admin_client: Client, user, frozen_clock, django_assert_num_queries
) -> None:
    trigger = register(user)
    statuses = [ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.SKIPPED]
    runs = [execution(trigger, statuses[i % 3]) for i in range(60)]  # created in this order
    with django_assert_num_queries(1):
        strip = selectors.run_strip(trigger)
    assert [r.pk for r in strip] == [r.pk for r in runs[10:]], "the newest 50, oldest on the left"

    html = admin_client.get(reverse("admin:schedules_trigger_change", args=[trigger.pk])).content.decode()
    cells = re.findall(r'<a class="sched-strip__run sched-strip__run--(\w+)" href="([^"]+)"', html)
    assert len(cells) == 50
    assert cells[0] == (runs[10].status, change_url(runs[10]))
    assert cells[-1] == (runs[-1].status, change_url(runs[-1]))
    assert "Last 50 runs, oldest on the left" in page_text_of(html)


def page_text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_a_trigger_without_runs_says_so(admin_client: Client, user, frozen_clock) -> None:
    trigger = register(user)
    response = admin_client.get(reverse("admin:schedules_trigger_change", args=[trigger.pk]))
    assert "No runs yet." in page_text(response)


# --- Stuck runs -------------------------------------------------------------------------------------------


@pytest.fixture
def now(frozen_clock) -> datetime:
    frozen_clock.set(datetime.now(UTC))  # rows' updated_at are stamped by the real clock
    return frozen_clock.now()


def stuck_fixture(user, now: datetime) -> dict[str, Execution]:
    trigger = register(user, timeout_seconds=300)
    rows = {
        "running_late": execution(trigger, ExecutionStatus.RUNNING),
        "queued_late": execution(trigger, ExecutionStatus.QUEUED),
        "running_fine": execution(trigger, ExecutionStatus.RUNNING),
        "attempt_dead": execution(trigger, ExecutionStatus.RUNNING),
        "failed_long_ago": execution(trigger, ExecutionStatus.FAILED),
    }
    late, fine = now - timedelta(seconds=301), now - timedelta(seconds=60)
    Execution.objects.filter(pk=rows["running_late"].pk).update(started_at=late)
    Execution.objects.filter(pk=rows["queued_late"].pk).update(queued_at=late)
    Execution.objects.filter(pk=rows["running_fine"].pk).update(started_at=fine)
    Execution.objects.filter(pk=rows["attempt_dead"].pk).update(started_at=fine)
    Execution.objects.filter(pk=rows["failed_long_ago"].pk).update(started_at=late)
    Attempt.objects.create(
        execution=rows["attempt_dead"], number=1, started_at=fine, outcome=AttemptOutcome.STARTED,
        deadline_at=now - timedelta(seconds=1),
    )  # fmt: skip
    return rows


STUCK = {"running_late", "queued_late", "attempt_dead"}


def test_runs_past_their_timeout_or_attempt_deadline_are_stuck(user, now) -> None:
    rows = stuck_fixture(user, now)
    flagged = dict(selectors.with_stuck(Execution.objects.all(), now=now).values_list("pk", "stuck"))
    assert {name for name, row in rows.items() if flagged[row.pk]} == STUCK


def test_stuck_runs_are_flagged_in_the_lists_and_filtered(admin_client: Client, user, now) -> None:
    rows = stuck_fixture(user, now)
    response = admin_client.get(EXECUTIONS)
    flagged = {r.pk for r in response.context["cl"].result_list if r.stuck}
    assert flagged == {rows[name].pk for name in STUCK}
    assert response.content.decode().count('<span class="sched-flag"') == 3

    only = admin_client.get(EXECUTIONS, {"attention": "stuck"})
    assert {r.pk for r in only.context["cl"].result_list} == {rows[name].pk for name in STUCK}

    trigger_page = admin_client.get(
        reverse("admin:schedules_trigger_change", args=[rows["queued_late"].trigger_id])
    )
    assert trigger_page.content.decode().count('<span class="sched-flag"') == 3, "the inline flags them too"

    board = admin_client.get(DASHBOARD)
    assert board.context["stuck_count"] == 3
    assert "Stuck runs (3)" in page_text(board)


# --- Failed runs, re-run in bulk --------------------------------------------------------------------------


def test_failed_runs_view_and_bulk_rerun_with_counts(admin_client: Client, user, frozen_clock) -> None:
    trigger = register(user)
    failed = [execution(trigger, ExecutionStatus.FAILED), execution(trigger, ExecutionStatus.TIMED_OUT)]
    execution(trigger, ExecutionStatus.SUCCEEDED)
    running = execution(trigger, ExecutionStatus.RUNNING)

    listed = admin_client.get(EXECUTIONS, {"attention": "failed"}).context["cl"].result_list
    assert {r.pk for r in listed} == {r.pk for r in failed}

    response = act(admin_client, "rerun", *failed, running, url=EXECUTIONS)
    assert texts(response)[-1] == "Re-ran 2 of 3 executions; 1 refused."
    assert Execution.objects.filter(rerun_of__in=failed).count() == 2
    assert not Execution.objects.filter(rerun_of=running).exists()


# --- Skips that name their blocker ------------------------------------------------------------------------


def test_an_overlap_skip_links_to_the_run_that_was_still_going(
    admin_client: Client, user, frozen_clock
) -> None:
    trigger = register(user)
    execution(trigger, ExecutionStatus.SUCCEEDED, finished_at=datetime.now(UTC) - timedelta(hours=1))
    going = execution(trigger, ExecutionStatus.RUNNING)
    skipped = execution(
        trigger, ExecutionStatus.SKIPPED, skip_reason=SkipReason.OVERLAP, finished_at=datetime.now(UTC)
    )
    assert selectors.blocking_run(skipped) == going
    html = admin_client.get(change_url(skipped)).content.decode()
    link = f'<a href="{change_url(going)}">{str(going.pk)[:8]}</a> (running)'
    assert f"An earlier run was still running: {link}" in html
    other = execution(trigger, ExecutionStatus.SKIPPED, skip_reason=SkipReason.PAUSED)
    assert selectors.blocking_run(other) is None
    assert "Trigger paused" in page_text(admin_client.get(change_url(other)))


# --- The upcoming-slots heatmap ---------------------------------------------------------------------------


def test_heatmap_counts_each_hours_slots_from_the_time_engine(user, frozen_clock) -> None:
    now = frozen_clock.now() + timedelta(minutes=30)  # 12:30 UTC
    frozen_clock.set(now)
    register(user, name="every minute", cron_expression="* * * * *")
    register(user, name="hourly", cron_expression="0 * * * *")
    register(user, name="at 15:00", cron_expression="0 15 * * *")
    paused = register(user, name="paused", cron_expression="* * * * *")
    from schedules import services

    services.trigger_pause(trigger=paused)

    heat = dashboard.upcoming_heatmap(now=now)
    assert heat.hours[0] == datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert len(heat.hours) == 24
    every, *busiest = heat.rows
    assert [row.label for row in busiest] == ["every minute", "hourly", "at 15:00"]
    assert busiest[0].cells[0].count == 29, "12:31 to 12:59: after now, inside the current hour"
    assert busiest[0].cells[1].count == 60
    assert [c.count for c in busiest[1].cells[:2]] == [0, 1]
    assert [c.count for c in busiest[2].cells].index(1) == 3
    assert (every.cells[1].count, every.cells[1].level) == (61, dashboard.HEAT_LEVELS)
    assert (heat.triggers, heat.triggers_capped, heat.slots_capped) == (3, False, 0)
    assert heat.slots == every.total == 29 + 23 * 60 + 23 + 1


def test_heatmap_reads_a_bounded_number_of_triggers_and_slots(user, frozen_clock) -> None:
    for name in ("a", "b", "c"):
        register(user, name=name, cron_expression="* * * * *")
    heat = dashboard.upcoming_heatmap(now=frozen_clock.now(), trigger_cap=2, slot_cap=100)
    assert (heat.triggers, heat.triggers_capped, heat.slots_capped, heat.slots) == (2, True, 2, 200)


@pytest.mark.usefixtures("redis_client", "fleet_probe")
def test_dashboard_draws_the_heatmap_says_its_caps_and_refreshes(admin_client: Client, user, now) -> None:
    register(user, name="every minute", cron_expression="* * * * *")
    response = admin_client.get(DASHBOARD)
    html = response.content.decode()
    assert html.count('class="sched-heat sched-heat--') == 2 * 24
    text = page_text(response)
    assert "Upcoming slots, next 24 hours (UTC)" in text
    assert f"for the {dashboard.HEATMAP_TRIGGERS} active triggers due soonest at most" in text
    assert "operations/dashboard.js" in html
    assert 'data-seconds="30"' in html
    assert "?attention=failed" in html
