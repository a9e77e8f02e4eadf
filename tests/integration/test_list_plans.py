"""Every list the API and the admin offer is served by an index: each filter and ordering is requested
against seeded, analysed tables, and the plan of every query it makes on the big tables (triggers and
executions) is read with EXPLAIN. A sequential scan, or a full sort of the matching rows where a page of 50
was asked for, is how a list that takes 5 ms at 1,000 rows takes seconds at a million; both fail here.

PostgreSQL only: its planner is the one production runs, and SQLite's plans say nothing about it.
Sequential scans are priced out (`enable_seqscan = off`) so that a small seeded table cannot make one look
cheap: a plan that still scans has no index it could use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions.models import Execution, ExecutionOrigin, ExecutionStatus
from notifications.models import Delivery, DeliveryStatus, Subscription
from schedules.models import Trigger
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="plans are PostgreSQL's"),
]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
BIG_TABLES = (
    "schedules_trigger", "executions_execution", "notifications_delivery", "notifications_subscription",
    "notifications_deliverywindow",
)  # fmt: skip
#: Sorting the few rows a selective filter leaves is what a planner should do; sorting more than this many
#: (20 pages) to show one page is a missing index. The seeded owner has ~2,500 triggers and ~7,500 runs.
SORT_LIMIT = 1000

TRIGGER_LISTS = [
    "", "?status=paused", "?kind=interval", "?workflow_id=wf-7", "?target=http", "?search=night",
    *(f"?ordering={sign}{field}" for field in ("name", "created_at", "updated_at", "next_run_at",
                                                "last_run_at", "status", "run_count") for sign in ("", "-")),
    "?status=active&ordering=next_run_at",
]  # fmt: skip
EXECUTION_LISTS = [
    "", "?status=failed", "?origin=manual", "?since=2026-03-01T00:00:00Z", "?until=2026-03-01T00:00:00Z",
    "?status=failed&since=2026-03-01T00:00:00Z",
]  # fmt: skip
#: Staff lists span every owner; their indexes cover the default order, next run and name (the admin's
#: own orderings): other orderings of everyone's triggers are a staff-only convenience that may sort.
STAFF_TRIGGER_LISTS = ["", "?status=paused", "?search=night", "?ordering=next_run_at", "?ordering=-name"]
ADMIN_PAGES = [
    "/admin/schedules/trigger/", "/admin/schedules/trigger/?status__exact=paused",
    "/admin/schedules/trigger/?q=night", "/admin/schedules/trigger/?o=3",
    "/admin/executions/execution/", "/admin/executions/execution/?status__exact=failed",
    "/admin/executions/execution/?origin__exact=manual", "/admin/executions/execution/?q=night",
    "/admin/executions/execution/?created_at__gte=2026-03-01+00%3A00%3A00%2B00%3A00",
    "/admin/executions/execution/?attention=failed", "/admin/executions/execution/?attention=stuck",
]  # fmt: skip

NOTIFICATION_LISTS = [
    "subscriptions/", "subscriptions/?event=failed", "subscriptions/?channel=webhook",
    "subscriptions/?trigger={trigger}", "deliveries/", "deliveries/?status=failed",
    "deliveries/?event=failed", "deliveries/?trigger={trigger}", "deliveries/?subscription={subscription}",
]  # fmt: skip
NOTIFICATION_ADMIN_PAGES = [
    "/admin/notifications/delivery/", "/admin/notifications/delivery/?status__exact=failed",
    "/admin/notifications/delivery/?event__exact=failed", "/admin/notifications/subscription/",
    "/admin/notifications/subscription/?event__exact=failed",
]  # fmt: skip


@pytest.fixture
def seeded(user, other_user, django_user_model) -> dict[str, Any]:
    """Two owners (one with most rows), every kind and status, and a history; then ANALYZE."""
    triggers = []
    for n in range(3000):
        owner = user if n % 6 else other_user
        kind = ("cron", "interval", "once")[n % 3] if n % 50 == 0 else "cron"
        triggers.append(
            Trigger(
                owner=owner,
                name=f"nightly-{n}" if n % 100 == 0 else f"job-{n}",
                workflow_id=f"wf-{n % 400}",
                target="http" if n % 25 == 0 else "demo",
                kind=kind,
                cron_expression="0 9 * * *" if kind == "cron" else "",
                interval_seconds=60 if kind == "interval" else None,
                anchor_at=T0 if kind == "interval" else None,
                run_at=T0 if kind == "once" else None,
                status="paused" if n % 40 == 0 else "active",
                next_run_at=None if n % 40 == 0 else T0 + timedelta(minutes=n),
                last_run_at=None if n % 3 == 0 else T0 - timedelta(minutes=n),
                run_count=n % 17,
            )
        )
    Trigger.objects.bulk_create(triggers, batch_size=2000)
    runs = []
    for n in range(9000):
        runs.append(
            Execution(
                trigger=triggers[n % 1500],
                origin=ExecutionOrigin.MANUAL if n % 97 == 0 else ExecutionOrigin.SCHEDULE,
                slot=None if n % 97 == 0 else T0 - timedelta(minutes=n),
                status=ExecutionStatus.FAILED if n % 31 == 0 else ExecutionStatus.SUCCEEDED,
                run_id=f"run-{n}",
            )
        )
    Execution.objects.bulk_create(runs, batch_size=4000)
    subscriptions = [
        Subscription(
            owner=trigger.owner,
            trigger=None if n % 10 == 0 else trigger,
            event=("failed", "recovered", "skipped", "missed")[n % 4],
            channel="webhook" if n % 5 == 0 else "email",
            email="" if n % 5 == 0 else "ops@example.com",
            url="https://hooks.example.com/x" if n % 5 == 0 else "",
            created_at=T0 - timedelta(minutes=n),
        )
        for n, trigger in enumerate(triggers[:2000])
    ]
    Subscription.objects.bulk_create(subscriptions, batch_size=2000)
    deliveries = []
    for n in range(9000):
        subscription = subscriptions[n % 2000]
        deliveries.append(
            Delivery(
                owner_id=subscription.owner_id,
                subscription=subscription,
                trigger=triggers[n % 2000],
                event=subscription.event,
                channel=subscription.channel,
                destination=subscription.destination,
                status=DeliveryStatus.FAILED if n % 31 == 0 else DeliveryStatus.DELIVERED,
                created_at=T0 - timedelta(minutes=n),
                updated_at=T0 - timedelta(minutes=n),
            )
        )
    Delivery.objects.bulk_create(deliveries, batch_size=4000)
    staff = django_user_model.objects.create_user(username="ops", password="pw-ops-123", is_staff=True)
    staff.is_superuser = True
    staff.save()
    with connection.cursor() as cursor:
        for table in BIG_TABLES:
            cursor.execute(f"ANALYZE {table}")
    return {"trigger": triggers[7], "staff": staff, "subscription": subscriptions[7]}


def plan_nodes(plan: dict[str, Any], limited: bool = False) -> Iterator[tuple[dict[str, Any], bool]]:
    """Every node, with whether a Limit above it stops the scan early (an ordered index walk under a
    LIMIT reads a page; the same walk without one reads the table)."""
    yield plan, limited
    for child in plan.get("Plans", []):
        yield from plan_nodes(child, limited or plan["Node Type"] == "Limit")


def problems(sql: str) -> list[str]:
    """What is wrong with one query's plan: sequential scans of the big tables, big sorts under a limit."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        document = cursor.fetchone()[0]
    plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
    found = []
    for node, limited in plan_nodes(plan):
        relation = node.get("Relation Name")
        if node["Node Type"] == "Seq Scan" and relation in BIG_TABLES:
            found.append(f"sequential scan of {relation}")
        whole_index = "Index" in node["Node Type"] and "Index Cond" not in node and not limited
        if whole_index and relation in BIG_TABLES:  # the same as a scan, read in index order
            found.append(f"whole-index scan of {relation} ({node.get('Index Name')})")
        sorted_rows = max((child["Plan Rows"] for child in node.get("Plans", [])), default=0)
        if node["Node Type"] == "Sort" and sorted_rows > SORT_LIMIT:
            found.append(f"sort of ~{sorted_rows} rows by {node.get('Sort Key')}")
    return found


def audit(client, url: str) -> dict[str, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.content[:300])
    report = {}
    for query in captured.captured_queries:
        sql = query["sql"]
        if not sql.lstrip().upper().startswith("SELECT") or not any(t in sql for t in BIG_TABLES):
            continue
        if issues := problems(sql):
            report[sql] = issues
    return report


def assert_clean(report: dict[str, dict[str, list[str]]]) -> None:
    lines = [
        f"{name}: {', '.join(issues)} in …{sql[sql.find(' WHERE ') :][:240]}"
        for name, found in report.items()
        for sql, issues in found.items()
    ]
    assert not lines, "\n".join(lines)


def test_trigger_and_execution_lists_use_indexes(seeded, user) -> None:
    api, staff = client_for(user), client_for(seeded["staff"])
    trigger = seeded["trigger"]
    report = {}
    for query in TRIGGER_LISTS:
        report[f"user {query}"] = audit(api, f"/api/v1/triggers/{query}")
        if query in STAFF_TRIGGER_LISTS:
            report[f"staff {query}"] = audit(staff, f"/api/v1/triggers/{query}")
    for query in EXECUTION_LISTS:
        report[f"executions {query}"] = audit(api, f"/api/v1/executions/{query}")
        url = f"/api/v1/triggers/{trigger.pk}/executions/{query}"
        report[f"trigger's executions {query}"] = audit(api, url)
    assert_clean(report)


def test_deep_pages_seek(seeded, user) -> None:
    api = client_for(user)
    url = "/api/v1/triggers/?ordering=next_run_at&limit=200"
    for _ in range(5):
        url = api.get(url).json()["next"]
    assert audit(api, url) == {}
    assert audit(api, api.get("/api/v1/executions/?limit=200").json()["next"]) == {}


def test_admin_changelists_use_indexes(client, seeded) -> None:
    client.force_login(seeded["staff"])
    assert_clean({url: audit(client, url) for url in ADMIN_PAGES})


def test_credit_standings_read_the_usage_index(seeded, user, client) -> None:
    """A budget's credits used is summed over the partial index of runs that reported credits, never by
    reading an owner's whole history: the API's standing and the admin's list of budgets."""
    from decimal import Decimal

    from executions.services import credits

    Execution.objects.filter(trigger__owner=user, run_id__endswith="7").update(
        credits_used=Decimal("1.5"), finished_at=T0
    )
    credits.credit_budget_set(owner=user, credits=100, period="month")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE executions_execution")
    client.force_login(seeded["staff"])
    report = {
        "own standing": audit(client_for(user), "/api/v1/credits/"),
        "admin budgets": audit(client, "/admin/executions/creditbudget/"),
    }
    assert_clean(report)


def test_notification_lists_use_indexes(client, seeded, user) -> None:
    """A user's subscriptions and delivery log (the log grows like the executions), and the admin's."""
    api = client_for(user)
    ids = {"trigger": seeded["trigger"].pk, "subscription": seeded["subscription"].pk}
    report = {
        query: audit(api, "/api/v1/notifications/" + query.format(**ids)) for query in NOTIFICATION_LISTS
    }
    client.force_login(seeded["staff"])
    report |= {url: audit(client, url) for url in NOTIFICATION_ADMIN_PAGES}
    assert_clean(report)


def test_the_dashboard_uses_indexes(client, seeded) -> None:
    """Every query of `/admin/dashboard/` (its status counts and statistics read the last 24 hours of runs,
    which here are all of the seeded ones: a busy day's worth)."""
    client.force_login(seeded["staff"])
    assert_clean({"dashboard": audit(client, "/admin/dashboard/")})


def test_the_notification_housekeeping_uses_indexes(seeded) -> None:
    """The sweep of lost deliveries and the retention read their batches by index, whatever the log's size."""
    from notifications import services
    from notifications.models import DeliveryWindow

    DeliveryWindow.objects.bulk_create(
        DeliveryWindow(
            subscription=s, trigger_id=s.trigger_id or seeded["trigger"].pk, event=s.event, until=T0
        )
        for s in Subscription.objects.all()
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE notifications_deliverywindow")
    with CaptureQueriesContext(connection) as captured:
        services.notification_resend_stuck()
        services.notification_prune(older_than=timedelta(days=3650))
    selects = [q["sql"] for q in captured.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(selects) >= 3, "the sweep, a batch of deliveries, a batch of windows"
    assert_clean({"housekeeping": {sql: found for sql in selects if (found := problems(sql))}})
