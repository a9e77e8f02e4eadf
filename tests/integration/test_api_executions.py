"""`/api/v1/executions/`: the history (filters, detail with attempts), cancel and re-run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from executions.models import Attempt, AttemptOutcome, Execution, ExecutionOrigin, ExecutionStatus
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
    make_execution,
    make_trigger,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

EXECUTIONS = "/api/v1/executions/"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def api(user, frozen_clock):
    frozen_clock.set(T0)
    return client_for(user)


def test_list_is_newest_first_with_filters(api, user) -> None:
    first, second = make_trigger(user, name="first"), make_trigger(user, name="second")
    old = make_execution(
        first, origin=ExecutionOrigin.SCHEDULE, slot=T0 - timedelta(days=2), requested_at=None
    )
    failed = make_execution(first, status=ExecutionStatus.FAILED)
    other = make_execution(second, status=ExecutionStatus.SKIPPED, origin=ExecutionOrigin.CATCHUP, slot=T0)
    Execution.objects.filter(pk=old.pk).update(created_at=T0 - timedelta(days=2))

    def ids(query: str = "") -> list[str]:
        response = api.get(f"{EXECUTIONS}?{query}")
        assert response.status_code == 200, response.content
        return [e["id"] for e in response.json()["results"]]

    assert ids()[-1] == str(old.pk)
    assert set(ids()) == {str(old.pk), str(failed.pk), str(other.pk)}
    assert set(ids(f"trigger={first.pk}")) == {str(old.pk), str(failed.pk)}
    assert ids("status=failed") == [str(failed.pk)]
    assert ids("origin=catchup") == [str(other.pk)]
    assert ids("until=2026-03-01T00:00:00Z") == [str(old.pk)]
    assert str(old.pk) not in ids("since=2026-03-01T00:00:00%2B01:00")
    row = api.get(f"{EXECUTIONS}?status=skipped").json()["results"][0]
    assert (row["trigger_name"], row["workflow_id"], row["slot"]) == (
        "second",
        "wf-1",
        "2026-03-02T12:00:00Z",
    )
    assert "attempts" not in row, "lists stay light; the detail has the attempts"


@pytest.mark.parametrize(
    "query",
    ["trigger=not-a-uuid", "status=exploded", "origin=cosmic", "since=yesterday", "until=2026-03-01T00:00:00",
     "since=9999-12-31T23:59:59-05:00", "limit=-5"],
)  # fmt: skip
def test_bad_filters_are_400_naming_the_parameter(api, query: str) -> None:
    response = api.get(f"{EXECUTIONS}?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json()


def test_detail_has_attempts_oldest_first(api, user) -> None:
    execution = make_execution(
        make_trigger(user), status=ExecutionStatus.FAILED, attempts=2, error="HTTP 503"
    )
    for number, outcome in ((2, AttemptOutcome.FAILED), (1, AttemptOutcome.RETRYABLE)):
        Attempt.objects.create(
            execution=execution,
            number=number,
            started_at=T0,
            outcome=outcome,
            http_status=503,
            error="HTTP 503",
        )
    response = api.get(f"{EXECUTIONS}{execution.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["attempt_count"] == 2
    assert [(a["number"], a["outcome"], a["http_status"]) for a in body["attempts"]] == [
        (1, "retryable", 503),
        (2, "failed", 503),
    ]
    assert api.get(f"/api/v1/executions/{execution.pk}").status_code == 200, "no trailing slash"


def test_cancel_a_waiting_run_and_cancelling_again_changes_nothing(api, user) -> None:
    execution = make_execution(make_trigger(user), status=ExecutionStatus.QUEUED)
    response = api.post(f"{EXECUTIONS}{execution.pk}/cancel/", {"reason": "wrong input"}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["error"]) == ("cancelled", "wrong input")
    again = api.post(f"{EXECUTIONS}{execution.pk}/cancel")
    assert again.status_code == 200
    assert again.json()["error"] == "wrong input"


@pytest.mark.parametrize("reason", ["x" * 501, "a\x00b", ["list"]])
def test_cancel_reason_is_checked(api, user, reason) -> None:
    execution = make_execution(make_trigger(user), status=ExecutionStatus.QUEUED)
    response = api.post(f"{EXECUTIONS}{execution.pk}/cancel/", {"reason": reason}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.QUEUED


def test_rerun_makes_a_new_manual_run_pointing_at_the_original(api, user) -> None:
    original = make_execution(make_trigger(user), status=ExecutionStatus.FAILED, input={"day": 1})
    response = api.post(f"{EXECUTIONS}{original.pk}/rerun/")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] != str(original.pk)
    assert (body["rerun_of"], body["origin"], body["input"]) == (str(original.pk), "manual", {"day": 1})
    assert body["requested_by"] == "alice"


def test_rerun_of_an_unfinished_run_is_400(api, user) -> None:
    running = make_execution(make_trigger(user), status=ExecutionStatus.RUNNING)
    response = api.post(f"{EXECUTIONS}{running.pk}/rerun/")
    assert response.status_code == 400
    assert "execution" in response.json()
    assert Execution.objects.count() == 1


def test_staff_see_every_execution(api, user, other_user, django_user_model) -> None:
    make_execution(make_trigger(user))
    make_execution(make_trigger(other_user))
    staff = django_user_model.objects.create_user(username="ops", password="pw-ops-123", is_staff=True)
    assert client_for(staff).get(EXECUTIONS).json()["count"] == 2
    assert api.get(EXECUTIONS).json()["count"] == 1
