"""Isolation: user B on every one of user A's URLs and actions, in both API styles, gets a 404 — the same
answer as for an id that does not exist — and nothing of A's changes. Staff see everyone's."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from executions.models import Execution, ExecutionStatus
from schedules.models import Trigger
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
    make_execution,
    make_trigger,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

TRIGGER_ROUTES = [
    ("get", "/api/v1/triggers/{t}/", None),
    ("patch", "/api/v1/triggers/{t}/", {"name": "mine now"}),
    (
        "put",
        "/api/v1/triggers/{t}/",
        {"name": "mine now", "workflow_id": "w", "cron_expression": "* * * * *"},
    ),
    ("delete", "/api/v1/triggers/{t}/", None),
    ("post", "/api/v1/triggers/{t}/pause/", {"reason": "mine"}),
    ("post", "/api/v1/triggers/{t}/resume/", None),
    ("post", "/api/v1/triggers/{t}/run/", {"input": {"x": 1}}),
    ("get", "/api/v1/triggers/{t}/preview/?count=2", None),
    ("get", "/api/v1/triggers/{t}/executions/", None),
    ("get", "/api/v1/triggers/{t}/stats/", None),
    ("get", "/api/v1/executions/{e}/", None),
    ("post", "/api/v1/executions/{e}/cancel/", {"reason": "mine"}),
    ("post", "/api/v1/executions/{e}/rerun/", None),
]
COMPAT_ROUTES = [
    (
        "post",
        "/api/scheduler/register",
        {"workflowId": "stolen", "cronExpression": "* * * * *", "enabled": False},
    ),
    ("post", "/api/scheduler/unregister", {}),
    ("post", "/api/scheduler/pause", {"action": "pause"}),
    ("post", "/api/scheduler/pause", {"action": "resume"}),
    ("get", "/api/scheduler/history?triggerId={t}", None),
]


@pytest.fixture
def alices(user, frozen_clock) -> tuple[Trigger, Execution]:
    trigger = make_trigger(user, paused=True)
    execution = make_execution(trigger, status=ExecutionStatus.QUEUED)
    make_execution(trigger, status=ExecutionStatus.FAILED)
    return trigger, execution


def snapshot() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (
        list(Trigger.objects.order_by("pk").values()),
        list(Execution.objects.order_by("pk").values()),
    )


def call(client, method: str, url: str, body: dict | None):
    return (
        getattr(client, method)(url, body, format="json")
        if body is not None
        else getattr(client, method)(url)
    )


@pytest.mark.parametrize(
    ("method", "path", "body"), TRIGGER_ROUTES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_someone_elses_ids_are_404_and_change_nothing(alices, other_user, method, path, body) -> None:
    trigger, execution = alices
    before = snapshot()
    bob = client_for(other_user)
    response = call(bob, method, path.format(t=trigger.pk, e=execution.pk), body)
    assert response.status_code == 404, response.content
    assert set(response.json()) == {"detail"}
    assert snapshot() == before
    unknown = call(bob, method, path.format(t=uuid.uuid4(), e=uuid.uuid4()), body)
    assert (unknown.status_code, unknown.json()) == (response.status_code, response.json()), (
        "indistinguishable"
    )


@pytest.mark.parametrize(
    ("method", "path", "body"), COMPAT_ROUTES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_compat_routes_cannot_reach_or_take_over_someone_elses_trigger(
    alices, other_user, method, path, body
):
    trigger, _ = alices
    before = snapshot()
    payload = {**body, "triggerId": str(trigger.pk)} if body is not None else None
    response = call(client_for(other_user), method, path.format(t=trigger.pk), payload)
    assert response.status_code == 404, response.content
    assert response.json() == {"success": False, "error": "triggerId: no schedule with this id"}
    assert snapshot() == before


def test_lists_show_only_your_own(alices, other_user) -> None:
    trigger, _ = alices
    make_execution(make_trigger(other_user, name="bob's"))
    bob = client_for(other_user)
    assert [t["name"] for t in bob.get("/api/v1/triggers/").json()["results"]] == ["bob's"]
    assert bob.get("/api/v1/executions/").json()["count"] == 1
    assert bob.get(f"/api/v1/executions/?trigger={trigger.pk}").json()["count"] == 0


def test_staff_see_and_act_on_everyones(alices, django_user_model) -> None:
    trigger, execution = alices
    staff = client_for(
        django_user_model.objects.create_user(username="ops", password="pw-ops-123", is_staff=True)
    )
    assert staff.get(f"/api/v1/triggers/{trigger.pk}/").json()["owner"] == "alice"
    assert staff.post(f"/api/v1/triggers/{trigger.pk}/resume/").json()["status"] == "active"
    assert staff.get(f"/api/v1/executions/{execution.pk}/").status_code == 200
    assert staff.get("/api/v1/triggers/").json()["count"] == 1
