"""Usage and credits (issue #18 item 5) on the real database and Redis: usage reported by a sync answer and
by the signed callback is stored on the run, shown by the API, the admin and the earlier systems'
adapters, summed in stats and `/metrics`; a credit budget used up records the owner's due runs `skipped`
(`credits_exhausted`) without calling the target; budgets are set by staff and read by their owner only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from rest_framework.test import APIClient

from executions import services
from executions.models import Attempt, CreditBudget, Execution, ExecutionOrigin, ExecutionStatus
from executions.services import credits as credit_services
from schedules import services as trigger_services
from schedules.models import Trigger
from tests.integration import test_launch
from tests.integration.test_api_plumbing import api_test_defaults  # noqa: F401 - an autouse fixture
from tests.integration.test_launch import complete, deliver
from tests.integration.test_launch_stub import Reply
from tests.integration.test_metrics import scrape

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# The launch tests' fixtures: a broker that is a list, a local HTTP target, triggers on it.
broker, stub, targets, make_trigger = (
    test_launch.broker, test_launch.stub, test_launch.targets, test_launch.make_trigger
)  # fmt: skip
fast_passwords = test_launch.fast_passwords

USAGE = {"credits": 2.5, "inputTokens": 1200, "outputTokens": 300, "cost": 0.0081}
STORED = (Decimal("2.5"), 1200, 300, Decimal("0.0081"))
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TASK = "launch-batch-task"


def figures(execution: Execution) -> tuple:
    execution.refresh_from_db()
    return (execution.credits_used, execution.input_tokens, execution.output_tokens, execution.cost)


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def spent(trigger, credits: str, *, at: datetime | None = None) -> Execution:
    """A finished run of `trigger` that reported `credits` (as a target's end would record it)."""
    return Execution.objects.create(
        trigger=trigger,
        origin=ExecutionOrigin.MANUAL,
        status=ExecutionStatus.SUCCEEDED,
        finished_at=at or T0,
        credits_used=Decimal(credits),
    )


# --- Reported and stored -----------------------------------------------------------------------------------


def test_a_sync_answer_reports_usage_stored_on_the_run_and_shown_by_the_api(make_trigger, broker, stub, user):
    stub.script("wf", [Reply(200, {"status": "succeeded", "result": {"ok": 1}, "usage": USAGE})])
    execution = deliver(broker, services.execution_run_now(trigger=make_trigger()))
    assert (execution.status, execution.result) == (ExecutionStatus.SUCCEEDED, {"ok": 1})
    assert figures(execution) == STORED
    body = api_for(user).get(f"/api/v1/executions/{execution.pk}/").json()
    assert body["usage"] == {"credits": 2.5, "input_tokens": 1200, "output_tokens": 300, "cost": 0.0081}


def test_a_launch_batch_stores_each_runs_usage(make_trigger, broker, stub):
    stub.script("a", [Reply(200, {"status": "succeeded", "usage": {"credits": 1}})])
    stub.script("b", [Reply(200, {"status": "succeeded", "usage": {"inputTokens": 7}})])
    runs = [
        Execution.objects.create(
            trigger=make_trigger(workflow_id=wf),
            origin=ExecutionOrigin.MANUAL,
            status=ExecutionStatus.QUEUED,
            task_id=TASK,
        )
        for wf in ("a", "b")
    ]
    services.execution_launch_batch(execution_ids=[r.pk for r in runs], task_id=TASK)
    assert [figures(r) for r in runs] == [(Decimal(1), None, None, None), (None, 7, None, None)]


def test_the_demo_target_reports_usage(make_trigger, broker, targets):
    targets["metered"] = {"kind": "demo", "speed": 0, "workflows": {"m": {"credits": 2, "tokens": 1000}}}
    execution = deliver(
        broker, services.execution_run_now(trigger=make_trigger(target="metered", workflow_id="m"))
    )
    assert execution.status == ExecutionStatus.SUCCEEDED
    credits, input_tokens, output_tokens, cost = figures(execution)
    assert (credits, output_tokens) == (Decimal(2), input_tokens // 4)
    assert 500 <= input_tokens <= 1500
    assert cost == input_tokens * Decimal("0.000003") + output_tokens * Decimal("0.000015")
    assert "usage" not in execution.result, "usage is stored beside the result, not in it"


def test_bad_usage_in_a_sync_answer_keeps_the_end_and_notes_it_on_the_attempt(make_trigger, broker, stub):
    stub.script("wf", [Reply(200, {"status": "succeeded", "usage": {"credits": -1}})])
    execution = deliver(broker, services.execution_run_now(trigger=make_trigger()))
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert figures(execution) == (None, None, None, None)
    attempt = Attempt.objects.get(execution=execution)
    assert attempt.error == "usage ignored: usage.credits: must be a non-negative number"


def test_the_signed_callback_reports_usage_and_bad_usage_is_a_400_naming_the_field(
    make_trigger, broker, stub, client
):
    stub.script("wf", [Reply(202, {"runId": "r-1"})])
    execution = deliver(broker, services.execution_run_now(trigger=make_trigger(target="async")))
    assert execution.status == ExecutionStatus.RUNNING

    for usage, field in [
        ({"credits": -2}, "usage.credits"),
        ({"inputTokens": 1.5}, "usage.inputTokens"),
        ({"cost": "cheap"}, "usage.cost"),
        ("lots", "usage"),
    ]:
        answer = complete(client, execution.pk, {"status": "succeeded", "usage": usage})
        assert (answer.status_code, list(answer.json())) == (400, [field]), usage
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.RUNNING, "nothing half-saved"

    answer = complete(client, execution.pk, {"status": "succeeded", "result": {"a": 1}, "usage": USAGE})
    assert answer.status_code == 200
    assert figures(execution) == STORED
    retried = complete(client, execution.pk, {"status": "succeeded", "usage": {"credits": 99}})
    assert retried.status_code == 200
    assert figures(execution) == STORED, "a retried callback cannot count the run twice"


def test_a_failed_run_keeps_what_it_used(make_trigger, broker, stub, client):
    stub.script("wf", [Reply(202, {"runId": "r-2"})])
    execution = deliver(broker, services.execution_run_now(trigger=make_trigger(target="async")))
    answer = complete(
        client, execution.pk, {"status": "failed", "error": "step 3", "usage": {"outputTokens": 9}}
    )
    assert answer.status_code == 200
    assert figures(execution) == (None, None, 9, None)


def test_a_poll_that_ends_a_run_reports_its_usage(make_trigger, broker, stub):
    stub.script("wf", [Reply(202, {"runId": "r-5"})])
    execution = deliver(broker, services.execution_run_now(trigger=make_trigger(target="async")))
    stub.run_states["r-5"] = {"status": "succeeded", "usage": {"credits": 4, "prompt_tokens": 50}}
    assert services.execution_sweep().completed == 1
    assert figures(execution) == (Decimal(4), 50, None, None)


# --- Summed -------------------------------------------------------------------------------------------------


def test_usage_is_summed_in_stats_and_exported_in_metrics(make_trigger, broker, stub, user, redis_client):
    stub.script("wf", [Reply(200, {"status": "succeeded", "usage": USAGE})] * 2)
    trigger = make_trigger()
    for _ in range(2):
        deliver(broker, services.execution_run_now(trigger=trigger))
    stub.script("wf", [Reply(200, {"status": "succeeded"})])
    deliver(broker, services.execution_run_now(trigger=trigger))  # reports nothing: adds nothing

    stats = api_for(user).get(f"/api/v1/triggers/{trigger.pk}/stats/").json()
    assert (stats["total"], stats["credits_used"], stats["input_tokens"], stats["output_tokens"]) == (
        3,
        5.0,
        2400,
        600,
    )
    assert stats["cost"] == pytest.approx(0.0162)

    samples = scrape(Client())
    assert samples[("scheduler_runs_with_usage_total", ())] == 2
    assert samples[("scheduler_usage_credits_total", ())] == pytest.approx(5.0)
    assert samples[("scheduler_usage_tokens_total", (("kind", "input"),))] == 2400
    assert samples[("scheduler_usage_tokens_total", (("kind", "output"),))] == 600
    assert samples[("scheduler_usage_cost_total", ())] == pytest.approx(0.0162)


# --- Budgets ------------------------------------------------------------------------------------------------


@pytest.fixture
def metered(targets, user, frozen_clock):
    """A trigger firing every minute on the demo target, its owner with 5 credits a month (counted from
    when the budget was set, the day before), all used."""
    frozen_clock.set(T0 - timedelta(days=1, hours=1))
    credit_services.credit_budget_set(owner=user, credits=5, period="month")
    frozen_clock.set(T0)
    trigger = trigger_services.trigger_register(
        owner=user, name="metered", workflow_id="hello", target="default", cron_expression="* * * * *"
    )
    spent(trigger, "3")
    spent(trigger, "2", at=T0 - timedelta(days=1))
    spent(trigger, "100", at=T0 - timedelta(days=40))  # last month, before the budget: not counted
    return trigger


def test_a_due_slot_of_an_owner_with_no_credit_left_is_skipped_and_never_launched(
    metered, broker, frozen_clock, user, redis_client, settings
):
    settings.SCHEDULER_LAUNCH_BATCH_SIZE = 1  # every launch message through the list that plays the broker
    slot = T0 + timedelta(minutes=1)
    frozen_clock.set(slot + timedelta(seconds=0.5))
    [row] = services.execution_fire(trigger_id=metered.pk, slot=slot)
    assert (row.status, row.skip_reason) == (ExecutionStatus.SKIPPED, "credits_exhausted")
    assert broker == [], "no launch message"
    metered.refresh_from_db()
    assert metered.run_count == 0, "a skipped slot is not a run"
    listed = api_for(user).get(f"/api/v1/executions/?trigger={metered.pk}&status=skipped").json()["results"]
    assert [(r["id"], r["skip_reason"]) for r in listed] == [(str(row.pk), "credits_exhausted")]

    credit_services.credit_budget_set(owner=user, credits=6, period="month")  # one credit more
    frozen_clock.set(slot + timedelta(minutes=1, seconds=0.5))
    [row] = services.execution_fire(trigger_id=metered.pk, slot=slot + timedelta(minutes=1))
    assert row.status == ExecutionStatus.QUEUED
    assert [m.execution_id for m in broker] == [str(row.pk)]


def test_a_run_now_of_an_owner_with_no_credit_left_is_skipped_at_its_launch(metered, broker):
    execution = deliver(broker, services.execution_run_now(trigger=metered))
    assert (execution.status, execution.skip_reason, execution.attempts) == (
        "skipped",
        "credits_exhausted",
        0,
    )
    assert not Attempt.objects.filter(execution=execution).exists(), "the target was never called"
    metered.refresh_from_db()
    assert metered.last_status == ExecutionStatus.SKIPPED


def test_a_skip_at_the_launch_is_announced_like_the_fire_paths_skips(metered, broker, monkeypatch):
    """Subscribers to skipped runs hear of it (the notifications' `skipped` event, reason named)."""
    from executions import events
    from toolkit.events import EventKind

    heard = []
    monkeypatch.setattr(events.events, "wanted", lambda: frozenset({EventKind.SKIPPED}))
    monkeypatch.setattr(events.events, "emit_after_commit", heard.extend)
    deliver(broker, services.execution_run_now(trigger=metered))
    assert [(e.kind, e.reason, e.count) for e in heard] == [("skipped", "credits_exhausted", 1)]


def test_a_launch_batch_sends_runs_of_an_owner_with_no_credit_left_to_be_skipped(
    metered, broker, make_trigger, other_user
):
    funded = trigger_services.trigger_register(
        owner=other_user, name="other", workflow_id="hello", target="default", cron_expression="0 0 1 1 *"
    )
    runs = [
        Execution.objects.create(
            trigger=t, origin=ExecutionOrigin.MANUAL, status=ExecutionStatus.QUEUED, task_id=TASK
        )
        for t in (metered, funded)
    ]
    reports = services.execution_launch_batch(execution_ids=[r.pk for r in runs], task_id=TASK)
    assert [r.execution_id for r in reports] == [runs[1].pk], "only the funded run was attempted"
    assert [m.execution_id for m in broker] == [str(runs[0].pk)], "the other goes on alone"
    skipped = deliver(broker, runs[0])
    assert (skipped.status, skipped.skip_reason, skipped.attempts) == ("skipped", "credits_exhausted", 0)
    assert Execution.objects.get(pk=runs[1].pk).status == ExecutionStatus.SUCCEEDED


def test_a_reset_or_a_new_period_gives_credit_again(metered, broker, user, frozen_clock):
    frozen_clock.advance(1)
    credit_services.credit_budget_set(owner=user, credits=5, period="month", reset=True)
    assert deliver(broker, services.execution_run_now(trigger=metered)).status == ExecutionStatus.SUCCEEDED
    credit_services.credit_budget_set(owner=user, credits=3, period="day")
    spent(metered, "3", at=frozen_clock.now())
    assert deliver(broker, services.execution_run_now(trigger=metered)).status == ExecutionStatus.SKIPPED
    frozen_clock.advance(86_400)
    assert deliver(broker, services.execution_run_now(trigger=metered)).status == ExecutionStatus.SUCCEEDED


# --- The budget API -----------------------------------------------------------------------------------------


def test_staff_set_budgets_and_users_read_only_their_own(user, other_user, admin_user, frozen_clock):
    frozen_clock.set(T0)
    staff, alice = api_for(admin_user), api_for(user)
    assert APIClient().get("/api/v1/credits/").status_code == 401
    assert alice.get("/api/v1/credits/").json()["credits"] is None, "no budget: unlimited"

    answer = staff.put(f"/api/v1/credits/{user.pk}/", {"credits": 10, "period": "day"}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json() == {
        "owner": user.pk, "username": "alice", "credits": 10.0, "period": "day", "used": 0.0, "left": 10.0,
        "exhausted": False, "since": "2026-03-02T12:00:00Z", "period_ends": "2026-03-03T00:00:00Z",
        "note": "",
    }  # fmt: skip
    assert alice.get("/api/v1/credits/").json()["credits"] == 10.0
    assert alice.get(f"/api/v1/credits/{user.pk}").status_code == 200
    assert alice.get(f"/api/v1/credits/{other_user.pk}/").status_code == 404, "another user's: not found"
    assert alice.put(f"/api/v1/credits/{user.pk}/", {"credits": 1e6}, format="json").status_code == 403
    assert alice.put(f"/api/v1/credits/{other_user.pk}/", {"credits": 1}, format="json").status_code == 404
    assert alice.delete(f"/api/v1/credits/{user.pk}/").status_code == 403
    assert CreditBudget.objects.get(owner=user).credits == 10
    assert staff.get(f"/api/v1/credits/{other_user.pk}/").json()["credits"] is None
    assert staff.put("/api/v1/credits/987654/", {"credits": 1}, format="json").status_code == 404

    assert staff.delete(f"/api/v1/credits/{user.pk}/").status_code == 204
    assert alice.get("/api/v1/credits/").json()["exhausted"] is False
    assert not CreditBudget.objects.filter(owner=user).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"credits": -1}, "credits", id="negative"),
        pytest.param({"credits": "many"}, "credits", id="words"),
        pytest.param({"credits": None}, "credits", id="null"),
        pytest.param({}, "credits", id="missing"),
        pytest.param({"credits": 5, "period": "year"}, "period", id="bad-period"),
        pytest.param({"credits": 5, "note": "x" * 501}, "note", id="long-note"),
    ],
)
def test_a_bad_budget_is_a_400_naming_the_field_and_saves_nothing(user, admin_user, body, field):
    answer = api_for(admin_user).put(f"/api/v1/credits/{user.pk}/", body, format="json")
    assert answer.status_code == 400, answer.content
    assert list(answer.json()) == [field]
    assert not CreditBudget.objects.exists()


def test_the_api_shows_credits_used_and_a_reset(metered, user, admin_user, frozen_clock):
    standing = api_for(user).get("/api/v1/credits/").json()
    assert (standing["used"], standing["left"], standing["exhausted"]) == (5.0, 0.0, True)
    frozen_clock.advance(1)
    body = {"credits": 5, "period": "month", "reset": True}
    assert api_for(admin_user).put(f"/api/v1/credits/{user.pk}/", body, format="json").json()["used"] == 0.0


# --- Admin and the earlier systems' adapters ----------------------------------------------------------------


def test_admin_pages_show_usage_and_budgets(admin_client, metered, user, other_user, frozen_clock):
    run = spent(metered, "2.5")
    Execution.objects.filter(pk=run.pk).update(input_tokens=1200, output_tokens=300, cost=Decimal("0.0081"))
    page = admin_client.get(f"/admin/executions/execution/{run.pk}/change/")
    assert page.status_code == 200
    assert "2.5 credits, 1,200 in / 300 out tokens, cost 0.0081" in page.content.decode()
    assert admin_client.get("/admin/executions/execution/").status_code == 200
    dashboard = admin_client.get("/admin/dashboard/").content.decode()
    assert "credits used" in dashboard, "the last 24 hours' usage, beside the run counts"

    listed = admin_client.get("/admin/executions/creditbudget/")
    assert listed.status_code == 200
    assert "used up" in listed.content.decode()
    assert admin_client.get(f"/admin/executions/creditbudget/{user.pk}/change/").status_code == 200
    assert admin_client.get("/admin/executions/creditbudget/add/").status_code == 200

    add = {"owner": other_user.pk, "credits": "-1", "period": "week", "note": ""}
    refused = admin_client.post("/admin/executions/creditbudget/add/", add)
    assert refused.status_code == 200
    assert "must be a non-negative number" in refused.content.decode()
    added = admin_client.post("/admin/executions/creditbudget/add/", {**add, "credits": "40"})
    assert added.status_code == 302, added.context["adminform"].form.errors
    assert CreditBudget.objects.get(owner=other_user).period == "week"

    frozen_clock.advance(1)
    reset = {"action": "reset_usage", "_selected_action": [user.pk]}
    assert admin_client.post("/admin/executions/creditbudget/", reset).status_code == 302
    assert api_for(user).get("/api/v1/credits/").json()["used"] == 0.0


def test_the_agent_adapter_answers_credits_used_and_insufficient_credits(user, monkeypatch, redis_client):
    from executions.api import agent

    api = api_for(user)

    def run_ends(_seconds: float) -> None:
        Execution.objects.filter(trigger__name="metered").update(
            status=ExecutionStatus.SUCCEEDED, credits_used=Decimal(3), input_tokens=100
        )

    monkeypatch.setattr(agent.time, "sleep", run_ends)
    body = api.post("/api/agent/execute", {"goal": "metered", "async": False}, format="json").json()
    assert (body["status"], body["success"], body["creditsUsed"]) == ("completed", True, 3.0)
    assert body["usage"] == {"credits": 3.0, "inputTokens": 100, "outputTokens": None, "cost": None}

    def no_credit(_seconds: float) -> None:
        Execution.objects.filter(trigger__name="broke").update(
            status=ExecutionStatus.SKIPPED, skip_reason="credits_exhausted"
        )

    monkeypatch.setattr(agent.time, "sleep", no_credit)
    body = api.post("/api/agent/execute", {"goal": "broke", "async": False}, format="json").json()
    assert (body["status"], body["success"], body["creditsUsed"]) == ("skipped", False, None)
    assert body["error"].startswith("insufficient credits")


def test_the_scheduler_history_shows_usage_in_its_metadata(user, frozen_clock):
    frozen_clock.set(T0)
    api = api_for(user)
    trigger_id = "3f2b8c1e-6a0d-4a8e-9d67-0c4f5b2e7a91"
    register = {"triggerId": trigger_id, "workflowId": "wf", "cronExpression": "0 9 * * *"}
    assert api.post("/api/scheduler/register", register, format="json").status_code == 200
    run = spent(Trigger.objects.get(pk=trigger_id), "1.5")
    Execution.objects.filter(pk=run.pk).update(output_tokens=40)
    [entry] = api.get(f"/api/scheduler/history?triggerId={trigger_id}").json()["executions"]
    assert entry["metadata"]["usage"] == {
        "credits": 1.5,
        "inputTokens": None,
        "outputTokens": 40,
        "cost": None,
    }
