"""Keyset pages of the big lists: every row exactly once in every ordering (ties and NULLs included), both
directions, stable under inserts, cursors that cannot be forged, counts that stay cheap, and a number of
queries per list request that does not grow with the page."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from executions.models import ExecutionStatus
from schedules.models import Trigger
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
    make_execution,
    make_trigger,
)
from toolkit.api import estimated_count

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

TRIGGERS = "/api/v1/triggers/"
EXECUTIONS = "/api/v1/executions/"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ORDERINGS = ["name", "created_at", "updated_at", "next_run_at", "last_run_at", "status", "run_count"]


@pytest.fixture
def rows(user) -> list[Trigger]:
    """Nine triggers built to make keysets work: repeated names and counts (ties), NULL next/last runs."""
    made = []
    for n in range(9):
        trigger = make_trigger(user, name=f"t{n % 3}", workflow_id=f"wf-{n % 2}")
        Trigger.objects.filter(pk=trigger.pk).update(
            run_count=n % 4,
            last_run_at=None if n % 3 == 0 else T0 + timedelta(minutes=n % 5),
            next_run_at=None if n % 4 == 1 else T0 + timedelta(hours=n % 3),
            created_at=T0 - timedelta(minutes=n // 2),  # pairs share a creation instant
            status="paused" if n % 5 == 0 else "active",
        )
        made.append(trigger)
    return made


def expected(ordering: str, triggers: list[Trigger]) -> list[str]:
    """The order in Python, by the rule the API documents: NULLs last ascending, first descending, ties by
    id in the field's direction."""
    name = ordering.lstrip("-")
    descending = ordering.startswith("-")
    fresh = list(Trigger.objects.filter(pk__in=[t.pk for t in triggers]))
    present = sorted(
        (t for t in fresh if getattr(t, name) is not None), key=lambda t: (getattr(t, name), t.pk)
    )
    nulls = sorted((t for t in fresh if getattr(t, name) is None), key=lambda t: t.pk)
    ordered = present + nulls
    return [str(t.pk) for t in (reversed(ordered) if descending else ordered)]


def walk(api, url: str, key: str) -> list[dict[str, Any]]:
    pages = []
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        pages.append(body)
        url = body[key]
        assert len(pages) < 50, "pages never end"
    return pages


@pytest.mark.parametrize("ordering", [*ORDERINGS, *(f"-{o}" for o in ORDERINGS)])
def test_every_row_once_in_every_ordering_both_ways(user, rows, ordering: str) -> None:
    api = client_for(user)
    forward = walk(api, f"{TRIGGERS}?ordering={ordering}&limit=2", "next")
    seen = [row["id"] for page in forward for row in page["results"]]
    assert seen == expected(ordering, rows)
    assert forward[0]["previous"] is None
    assert all(page["count"] == 9 and page["count_estimated"] is False for page in forward)
    backward = walk(api, forward[-1]["previous"], "previous") if forward[-1]["previous"] else []
    back_seen = [row["id"] for page in reversed(backward) for row in page["results"]]
    assert back_seen + [row["id"] for row in forward[-1]["results"]] == seen


def test_the_default_order_is_newest_first_and_a_page_holds_as_rows_arrive(user, rows, frozen_clock) -> None:
    api = client_for(user)
    first = api.get(f"{TRIGGERS}?limit=4").json()
    assert [row["id"] for row in first["results"]] == expected("-created_at", rows)[:4]
    frozen_clock.set(T0 + timedelta(days=1))
    make_trigger(user, name="newcomer")  # newer than all: an offset page would shift by one
    second = api.get(first["next"]).json()
    assert [row["id"] for row in second["results"]] == expected("-created_at", rows)[4:8]


def test_filters_apply_to_every_page(user, rows) -> None:
    api = client_for(user)
    pages = walk(api, f"{TRIGGERS}?workflow_id=wf-1&ordering=-run_count&limit=2", "next")
    seen = [row["id"] for page in pages for row in page["results"]]
    wanted = [pk for pk in expected("-run_count", rows) if Trigger.objects.get(pk=pk).workflow_id == "wf-1"]
    assert seen == wanted


def forged(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not-a-cursor", id="garbage"),
        pytest.param("%%%", id="not-base64"),
        pytest.param(forged({"o": "name,id", "v": ["t1", "x"], "b": False}), id="another-ordering"),
        pytest.param(forged({"o": "-created_at,-id", "v": ["x"], "b": False}), id="wrong-length"),
        pytest.param(forged({"o": "-created_at,-id", "v": [1, 2], "b": "yes"}), id="bad-direction"),
        pytest.param(forged({"o": "-created_at,-id", "v": ["2026-13-40", "x"], "b": False}), id="bad-values"),
        pytest.param(forged([1, 2]), id="not-an-object"),
    ],
)
def test_a_cursor_that_is_not_from_this_list_is_a_400_naming_it(user, rows, cursor: str) -> None:
    response = client_for(user).get(f"{TRIGGERS}?cursor={cursor}")
    assert response.status_code == 400, response.content
    assert "cursor" in response.json()


def test_offset_pages_still_work_for_old_clients(user, rows) -> None:
    body = client_for(user).get(f"{TRIGGERS}?limit=4&offset=4").json()
    assert [row["id"] for row in body["results"]] == expected("-created_at", rows)[4:8]
    assert body["count"] == 9
    assert "offset=8" in body["next"]
    assert "offset" not in (body["previous"] or "offset=0").replace("offset=0", "")


def test_counts_are_exact_when_few_and_estimated_beyond_the_limit(settings, user, rows) -> None:
    settings.API_EXACT_COUNT_LIMIT = 4
    queryset = Trigger.objects.filter(owner=user)
    count, estimated = estimated_count(queryset)
    if connection.vendor == "postgresql":
        assert estimated is True
        assert count >= 5  # never below what was proven to exist
    else:
        assert (count, estimated) == (9, False)
    body = client_for(user).get(f"{TRIGGERS}?limit=2").json()
    assert body["count_estimated"] is (connection.vendor == "postgresql")
    exact = client_for(user).get(f"{TRIGGERS}?limit=2&count=exact").json()
    assert (exact["count"], exact["count_estimated"]) == (9, False)
    settings.API_EXACT_COUNT_LIMIT = 100
    assert estimated_count(queryset) == (9, False)


def test_an_empty_list_and_a_page_past_the_end(user) -> None:
    api = client_for(user)
    body = api.get(TRIGGERS).json()
    assert body == {"count": 0, "count_estimated": False, "next": None, "previous": None, "results": []}
    trigger = make_trigger(user)
    first = api.get(f"{TRIGGERS}?limit=1").json()
    assert first["next"] is None
    Trigger.objects.filter(pk=trigger.pk).delete()
    cursor = forged({"o": "-created_at,-id", "v": [T0.isoformat(), str(trigger.pk)], "b": False})
    past = api.get(f"{TRIGGERS}?cursor={cursor}").json()
    assert (past["results"], past["next"], past["previous"]) == ([], None, None)


def test_queries_per_list_request_do_not_grow_with_the_rows(user, django_assert_max_num_queries) -> None:
    """Auth, throttle-free count and page: a fixed handful, whether a page holds 1 row or 30."""
    api = client_for(user)
    trigger = make_trigger(user)
    make_execution(trigger, requested_by=user)
    with django_assert_max_num_queries(4):
        assert len(api.get(TRIGGERS).json()["results"]) == 1
    with django_assert_max_num_queries(4):
        assert len(api.get(EXECUTIONS).json()["results"]) == 1
    for n in range(29):
        other = make_trigger(user, name=f"more-{n}")
        make_execution(other, requested_by=user, status=ExecutionStatus.FAILED)
    with django_assert_max_num_queries(4):
        assert len(api.get(TRIGGERS).json()["results"]) == 30
    with django_assert_max_num_queries(4):
        assert len(api.get(EXECUTIONS).json()["results"]) == 30
    with django_assert_max_num_queries(4):
        assert len(api.get(f"{EXECUTIONS}?status=failed").json()["results"]) == 29
    with django_assert_max_num_queries(5):
        assert len(api.get(f"{TRIGGERS}{trigger.pk}/executions/").json()["results"]) == 1
