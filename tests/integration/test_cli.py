"""`manage.py triggers …` and `manage.py sync_schedules --check/--json` through `call_command`: the tables
operators read, the JSON scripts parse, the exit codes monitors act on, and changes made through the same
services as the API. The clock is frozen."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from executions.models import Execution, ExecutionOrigin, ExecutionStatus
from schedules import services
from schedules.beat.entries import Keys, celery_app
from schedules.models import Trigger, TriggerStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def fleet(user, other_user, frozen_clock) -> dict[str, Trigger]:
    frozen_clock.set(NOW)
    report = services.trigger_register(
        owner=user,
        name="morning-report",
        workflow_id="wf-report",
        cron_expression="0 9 * * 1-5",
        timezone="America/Los_Angeles",
    )
    sync = services.trigger_register(
        owner=other_user, name="sync", workflow_id="wf-sync", kind="interval", interval_seconds=900
    )
    sync = services.trigger_pause(trigger=sync, reason="vendor outage")
    return {"report": report, "sync": sync}


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def run_json(*args: str) -> Any:
    return json.loads(run(*args, "--json"))


def refused(*args: str) -> CommandError:
    with pytest.raises(CommandError) as caught:
        run(*args)
    return caught.value


# --- list -------------------------------------------------------------------------------------------------


def test_list_is_an_aligned_table(fleet) -> None:
    lines = run("triggers", "list").splitlines()
    header = lines[0]
    assert header.split() == ["NAME", "ID", "SCHEDULE", "ZONE", "NEXT", "RUN", "LAST", "RUN", "PAUSED"]
    report, sync = lines[1], lines[2]
    assert report.split("   ")[0] == "morning-report"
    for line in lines[1:]:  # every column starts where its header does
        for title in ("ID", "SCHEDULE", "ZONE", "NEXT RUN", "LAST RUN", "PAUSED"):
            column = header.index(title)
            assert line[column - 3 : column] == "   ", (title, line)
            assert line[column] != " "
    assert str(fleet["report"].pk) in report
    assert "0 9 * * 1-5" in report
    assert "America/Los_Angeles" in report
    assert "2026-03-02T17:00:00Z" in report
    assert report.rstrip().endswith("no")
    assert "every 900s" in sync
    assert "<none>" in sync, "no last run yet"
    assert sync.rstrip().endswith("yes")


def test_list_filters_by_owner_and_paused(fleet) -> None:
    assert [row["name"] for row in run_json("triggers", "list", "--owner", "alice")] == ["morning-report"]
    assert [row["name"] for row in run_json("triggers", "list", "--paused")] == ["sync"]
    assert run("triggers", "list", "--owner", "nobody").strip() == "No triggers found."


def test_list_json_shape(fleet) -> None:
    rows = run_json("triggers", "list")
    assert [row["name"] for row in rows] == ["morning-report", "sync"]
    assert rows[0] == {
        "id": str(fleet["report"].pk),
        "name": "morning-report",
        "owner": "alice",
        "workflow_id": "wf-report",
        "kind": "cron",
        "schedule": "0 9 * * 1-5",
        "timezone": "America/Los_Angeles",
        "status": "active",
        "paused": False,
        "paused_reason": "",
        "overlap_policy": "skip",
        "catchup_policy": "latest",
        "next_run_at": "2026-03-02T17:00:00Z",
        "last_run_at": None,
        "last_status": None,
        "run_count": 0,
        "consecutive_failures": 0,
    }
    assert rows[1]["paused"] is True
    assert rows[1]["paused_reason"] == "vendor outage"


# --- show -------------------------------------------------------------------------------------------------


def test_show_lists_the_next_slots_and_the_last_runs(fleet) -> None:
    trigger = fleet["report"]
    done = Execution.objects.create(
        trigger=trigger,
        slot=NOW - timedelta(hours=3),
        origin=ExecutionOrigin.SCHEDULE,
        status=ExecutionStatus.SUCCEEDED,
    )
    text = run("triggers", "show", "morning-report", "--slots", "3")
    assert "Name:       morning-report" in text
    assert "Zone:       America/Los_Angeles" in text
    _head, upcoming, last = text.split("\n\n")
    assert upcoming.splitlines()[1].split() == ["UTC", "LOCAL", "NOTE", "DECISION"]
    assert [line.split()[0] for line in upcoming.splitlines()[2:]] == [
        "2026-03-02T17:00:00Z",
        "2026-03-03T17:00:00Z",
        "2026-03-04T17:00:00Z",
    ]
    assert "2026-03-02T09:00:00-08:00" in upcoming
    runs = last.splitlines()
    assert runs[1].split()[:3] == ["SLOT", "ORIGIN", "STATUS"]
    assert runs[2].split()[:3] == ["2026-03-02T09:00:00Z", "schedule", "succeeded"]
    assert str(done.pk) in runs[2]

    data = run_json("triggers", "show", str(trigger.pk), "--slots", "2")
    assert set(data) == {"trigger", "description", "next_slots", "last_runs"}
    assert data["next_slots"][0] == {
        "utc": "2026-03-02T17:00:00Z",
        "local": "2026-03-02T09:00:00-08:00",
        "note": None,
        "decision": "run",
        "rule": None,
    }
    assert data["last_runs"] == [
        {
            "id": str(done.pk),
            "slot": "2026-03-02T09:00:00Z",
            "origin": "schedule",
            "status": "succeeded",
            "skip_reason": None,
            "recorded_at": data["last_runs"][0]["recorded_at"],
        }
    ]


def test_show_of_a_paused_trigger_says_so(fleet) -> None:
    text = run("triggers", "show", "sync")
    assert "Status:     paused (vendor outage)" in text
    assert "Next slots:\n  paused" in text
    assert "Last runs:\n  none yet" in text


def test_an_unknown_or_shared_name_is_refused(fleet, user) -> None:
    assert "no trigger named 'nope'" in str(refused("triggers", "show", "nope"))
    services.trigger_register(owner=user, name="sync", workflow_id="wf-2", cron_expression="* * * * *")
    error = refused("triggers", "pause", "sync")
    assert "2 triggers are named 'sync'; use an id" in str(error)
    assert error.returncode == 1


# --- pause, resume, run -----------------------------------------------------------------------------------


def test_pause_and_resume_go_through_the_services(fleet, frozen_clock) -> None:
    assert run("triggers", "pause", "morning-report", "--reason", "db migration").strip() == (
        "trigger/morning-report paused"
    )
    paused = Trigger.objects.get(pk=fleet["report"].pk)
    assert (paused.status, paused.paused_reason, paused.next_run_at) == ("paused", "db migration", None)
    frozen_clock.advance(60)
    data = run_json("triggers", "resume", "morning-report")
    assert data["status"] == "active"
    assert data["next_run_at"] == "2026-03-02T17:00:00Z"
    assert Trigger.objects.get(pk=fleet["report"].pk).resumed_at == frozen_clock.now()


def test_a_completed_trigger_cannot_be_paused(fleet) -> None:
    Trigger.objects.filter(pk=fleet["report"].pk).update(status=TriggerStatus.COMPLETED)
    error = refused("triggers", "pause", "morning-report")
    assert str(error) == "status: a completed trigger cannot be paused"


def test_run_starts_a_manual_run(fleet) -> None:
    data = run_json("triggers", "run", "morning-report", "--input", '{"date": "2026-03-01"}')
    execution = Execution.objects.get(pk=data["id"])
    assert (execution.origin, execution.status, execution.input) == (
        "manual",
        "pending",
        {"date": "2026-03-01"},
    )
    assert data["trigger"] == str(fleet["report"].pk)
    text = run("triggers", "run", "morning-report", "--idempotency-key", "k1")
    again = run("triggers", "run", "morning-report", "--idempotency-key", "k1")
    assert text == again, "the same key is the same run"
    assert Execution.objects.filter(trigger=fleet["report"]).count() == 2
    assert "input: is not JSON" in str(refused("triggers", "run", "morning-report", "--input", "{"))


# --- backfill ---------------------------------------------------------------------------------------------

WEEK = ("--start", "2026-02-23T00:00:00Z", "--end", "2026-02-27T23:59:59Z")


def test_backfill_dry_run_then_run_then_again(fleet) -> None:
    dry = run("triggers", "backfill", "morning-report", *WEEK, "--dry-run")
    lines = dry.splitlines()
    assert lines[0].split() == ["SLOT", "OUTCOME", "STATUS", "REASON", "EXECUTION"]
    assert [line.split()[:2] for line in lines[1:6]] == [
        [f"2026-02-{day}T17:00:00Z", "would_run"] for day in (23, 24, 25, 26, 27)
    ]
    assert lines[-1] == "5 slots: 0 already recorded, 5 would run (dry run: nothing changed)"
    assert not Execution.objects.exists()

    data = run_json("triggers", "backfill", "morning-report", *WEEK)
    assert data["counts"] == {"slots": 5, "recorded": 0, "would_run": 0, "created": 5, "refused": 0}
    assert [s["status"] for s in data["slots"]] == ["queued"] + ["skipped"] * 4, "overlap skip applies"
    assert set(Execution.objects.values_list("origin", "launched_by")) == {("backfill", "cli")}

    again = run("triggers", "backfill", "morning-report", *WEEK).splitlines()
    assert again[-1] == "5 slots: 5 already recorded, 0 recorded now, 0 refused"
    assert Execution.objects.count() == 5


def test_backfill_refusals_name_the_field_and_exit_1(fleet) -> None:
    future = refused(
        "triggers",
        "backfill",
        "morning-report",
        "--start",
        "2026-03-01T00:00:00Z",
        "--end",
        "2026-03-09T00:00:00Z",
    )
    assert str(future).startswith("end: must not be in the future")
    assert future.returncode == 1
    naive = refused(
        "triggers",
        "backfill",
        "morning-report",
        "--start",
        "2026-03-01T00:00:00",
        "--end",
        "2026-03-01T02:00:00Z",
    )
    assert str(naive).startswith("start: must include a time zone offset")
    paused = refused("triggers", "backfill", "sync", *WEEK)
    assert str(paused) == "status: a paused trigger cannot be backfilled; resume it first"
    assert not Execution.objects.exists()


# --- sync_schedules ---------------------------------------------------------------------------------------


def test_sync_check_exits_1_on_drift_with_json_then_0_once_repaired(fleet, redis_client) -> None:
    # Registered inside the test's transaction, so no entry reached Redis: the active trigger is missing.
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("sync_schedules", "--check", "--json", stdout=out, stderr=StringIO())
    assert caught.value.returncode == 1
    assert "drift found: 1 difference" in str(caught.value)
    data = json.loads(out.getvalue())
    assert data["drift"] is True
    assert data["dry_run"] is True
    assert data["added"] == [str(fleet["report"].pk)]
    assert data["items"] == [{"kind": "added", "trigger": str(fleet["report"].pk), "name": "morning-report"}]
    assert redis_client.zcard(Keys.of(celery_app()).schedule) == 0, "a check writes nothing"

    text = StringIO()
    with pytest.raises(CommandError):
        call_command("sync_schedules", "--check", stdout=text, stderr=StringIO())
    lines = text.getvalue().splitlines()
    assert lines[1].split() == ["DRIFT", "TRIGGER", "NAME"]
    assert lines[2].split() == ["added", str(fleet["report"].pk), "morning-report"]

    assert "1 added" in run("sync_schedules")
    assert run_json("sync_schedules", "--check")["drift"] is False
    assert run("sync_schedules", "--check").splitlines()[0].startswith("reconcile (dry run")


# --- progress ---------------------------------------------------------------------------------------------


def with_stderr(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.usefixtures("redis_client")
@pytest.mark.parametrize(
    ("args", "bar"),
    [
        pytest.param(("sync_schedules",), "reconcile", id="reconcile"),
        pytest.param(
            ("triggers", "backfill", "morning-report", *WEEK), "backfill morning-report", id="backfill"
        ),
    ],
)
def test_long_commands_draw_progress_only_on_a_terminal_or_when_asked(fleet, args, bar) -> None:
    _, err = with_stderr(*args)
    assert err == "", "captured stderr is not a terminal: no bar"
    out, drawn = with_stderr(*args, "--progress")
    assert bar in drawn
    assert "100%" in drawn or re.search(r"(?<!\d)(\d+)/\1(?!\d)", drawn), "the bar ends complete"
    assert "\x1b[" not in out, "stdout stays the plain text a script reads"
