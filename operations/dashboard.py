"""The operators' dashboard, a page of the admin site (`/admin/dashboard/`, linked from the admin index): what
ran in the last 24 hours, what runs next, which triggers keep failing, and whether the fleet is there to run
anything at all — a beat holding the leader lock and workers answering a ping.

The fleet's figures are the status snapshot's (`operations.status`, also behind `/api/v1/status/`),
whose every probe is bounded (Redis with socket timeouts, the workers' reply window only when Redis
answered), so a broken broker makes the page say so instead of hanging it.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin import AdminSite
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.db.models.functions import TruncHour
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path

from executions.models import UNSUCCESSFUL_STATUSES
from operations import status
from toolkit import clock
from toolkit.admin import duration_text, instant

WINDOW = timedelta(hours=24)
UPCOMING_LIMIT = 20
FAILING_THRESHOLD = 3  # consecutive failures that make a trigger "failing repeatedly"
FAILING_LIMIT = 20
#: How long workers may take to answer; the snapshot waits this long whatever the fleet's size.
INSPECT_TIMEOUT_SECONDS = 1.0
#: Remembering the snapshot briefly keeps reloads instant and a busy page from pinging the fleet each time.
FLEET_CACHE_SECONDS = 5
FLEET_CACHE_KEY = "scheduler-dashboard:fleet"

#: The chart's series, bottom to top, and the execution states each one counts.
SERIES: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("succeeded", "succeeded", frozenset({"succeeded"})),
    ("failed", "failed or timed out", frozenset(UNSUCCESSFUL_STATUSES)),
    ("skipped", "skipped", frozenset({"skipped"})),
)


# --- Data -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hour:
    """One bar of the chart: runs recorded in [start, start + 1 h), counted per series."""

    start: datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def runs_per_hour(*, now: datetime, hours: int = 24) -> list[Hour]:
    """The last `hours` whole UTC hours, the current one included, oldest first; hours with no runs are
    present with zero counts so the bars keep their places."""
    from executions.models import Execution

    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    series_of = {status: name for name, _, statuses in SERIES for status in statuses}
    buckets: dict[datetime, Counter[str]] = {start + timedelta(hours=i): Counter() for i in range(hours)}
    rows = (
        Execution.objects.filter(created_at__gte=start, created_at__lt=end, status__in=series_of)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("hour", "status")
        .annotate(n=Count("pk"))
    )
    for row in rows:
        hour = row["hour"].astimezone(UTC)
        if hour in buckets:
            buckets[hour][series_of[row["status"]]] += row["n"]
    return [Hour(start=h, counts={name: c[name] for name, _, _ in SERIES}) for h, c in buckets.items()]


@dataclass(frozen=True)
class StatusCount:
    value: str
    label: str
    count: int


def status_counts(*, since: datetime) -> list[StatusCount]:
    """Every execution state with how many runs recorded since `since` are in it (zeros included: "0
    failed" is news too)."""
    from executions.models import Execution, ExecutionStatus

    counted = dict(
        Execution.objects.filter(created_at__gte=since)
        .order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return [
        StatusCount(value, label.split(" — ")[0], counted.get(value, 0))
        for value, label in ExecutionStatus.choices
    ]


def upcoming_runs(*, limit: int = UPCOMING_LIMIT) -> list[dict[str, Any]]:
    """The next `limit` runs across every trigger, soonest first, each in its trigger's zone: slots, not
    triggers, so a trigger due every minute fills the list as it will fill the next minutes. Only the
    `limit` triggers due soonest can hold one of the next `limit` slots, so only they are expanded."""
    import heapq

    from schedules.admin import schedule_in_words
    from schedules.models import Trigger
    from schedules.services import trigger_preview

    triggers = list(
        Trigger.objects.active()
        .filter(next_run_at__isnull=False)
        .select_related("owner")
        .order_by("next_run_at")[:limit]
    )
    slots: list[tuple[datetime, str, Trigger]] = []
    for trigger in triggers:
        after = trigger.next_run_at - timedelta(microseconds=1)  # next_run_at is the first
        try:
            fires = trigger_preview(trigger=trigger, after=after, count=limit)
        except ValidationError:  # a row whose schedule no longer parses still shows its next run
            fires = []
        times = [fire.slot for fire in fires] or [trigger.next_run_at]
        slots.extend((slot, str(trigger.pk), trigger) for slot in times)
    return [
        {"trigger": trigger, "slot": slot, "when": instant(slot, trigger.timezone),
         "schedule": schedule_in_words(trigger)}
        for slot, _pk, trigger in heapq.nsmallest(limit, slots, key=lambda item: (item[0], item[1]))
    ]  # fmt: skip


def failing_triggers(
    *, threshold: int = FAILING_THRESHOLD, limit: int = FAILING_LIMIT
) -> list[dict[str, Any]]:
    """Triggers whose last `threshold` or more runs all failed, the longest streak first."""
    from schedules.models import Trigger

    triggers = (
        Trigger.objects.live()
        .filter(consecutive_failures__gte=threshold)
        .select_related("owner")
        .order_by("-consecutive_failures", "-last_run_at")[:limit]
    )
    return [{"trigger": t, "last_run": instant(t.last_run_at, t.timezone)} for t in triggers]


def fleet_snapshot() -> status.FleetStatus:
    """The fleet as `GET /api/v1/status/` sees it (`operations.status`: beat lock and heartbeat,
    workers, queues), remembered for a few seconds because it waits out a worker reply window."""
    snapshot = cache.get(FLEET_CACHE_KEY)
    if snapshot is None:
        snapshot = status.fleet_status(inspect_timeout=INSPECT_TIMEOUT_SECONDS)
        cache.set(FLEET_CACHE_KEY, snapshot, FLEET_CACHE_SECONDS)
    return snapshot


# --- The chart (pure geometry; the template only draws it) ------------------------------------------------


@dataclass(frozen=True)
class Rect:
    series: str
    x: str
    y: str
    width: str
    height: str
    title: str


@dataclass(frozen=True)
class Label:
    x: str
    y: str
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    rects: list[Rect]
    gridlines: list[Label]  # y positions with their value labels
    hour_labels: list[Label]
    plot_left: str
    plot_right: str
    baseline: str
    total: int


def _nice_step(value: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least `value`: gridlines read at a glance."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= value)


def _px(value: float) -> str:
    return f"{value:.1f}"


def stacked_bar_chart(hours: list[Hour], *, width: int = 760, height: int = 220) -> Chart:
    """Bars of runs per hour, the series stacked in `SERIES` order, scaled to a round maximum."""
    left, right, top, bottom = 40, 8, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((h.total for h in hours), default=0)
    step = _nice_step(peak / 4) if peak else 1
    ceiling = max(step * math.ceil(peak / step), step)
    slot = plot_w / max(len(hours), 1)
    bar_w = slot * 0.72
    rects: list[Rect] = []
    hour_labels: list[Label] = []
    for i, hour in enumerate(hours):
        x = left + i * slot + (slot - bar_w) / 2
        y: float = top + plot_h
        span = f"{hour.start:%H:%M} to {hour.start + timedelta(hours=1):%H:%M} UTC"
        for name, words, _ in SERIES:
            count = hour.counts[name]
            if not count:
                continue
            h = plot_h * count / ceiling
            y -= h
            rects.append(Rect(name, _px(x), _px(y), _px(bar_w), _px(h), f"{span}: {count} {words}"))
        if i % 3 == 0:
            hour_labels.append(Label(_px(x + bar_w / 2), _px(height - 8), f"{hour.start:%H}h"))
    gridlines = [
        Label(_px(left), _px(top + plot_h - plot_h * value / ceiling), str(value))
        for value in range(0, ceiling + 1, step)
    ]
    return Chart(
        width=width,
        height=height,
        rects=rects,
        gridlines=gridlines,
        hour_labels=hour_labels,
        plot_left=_px(left),
        plot_right=_px(width - right),
        baseline=_px(top + plot_h),
        total=sum(h.total for h in hours),
    )


# --- The page ---------------------------------------------------------------------------------------------


def dashboard_context(*, now: datetime) -> dict[str, Any]:
    from executions.stats import trigger_stats

    since = now - WINDOW
    stats = trigger_stats(since=since)  # the API's figures and definitions, for the same window
    return {
        "since": since,
        "stats": stats,
        "avg_duration": duration_text(stats["avgDurationMs"]),
        "p95_duration": duration_text(stats["p95DurationMs"]),
        "status_counts": status_counts(since=since),
        "chart": stacked_bar_chart(runs_per_hour(now=now)),
        "series": SERIES,
        "upcoming": upcoming_runs(),
        "failing": failing_triggers(),
        "failing_threshold": FAILING_THRESHOLD,
        "fleet": fleet_snapshot(),
        "flower_url": settings.FLOWER_URL,
    }


def dashboard_view(request: HttpRequest, *, site: AdminSite) -> TemplateResponse:
    """Everyone's triggers and runs are summarised here, so it takes the right to view both."""
    if not (
        request.user.has_perm("schedules.view_trigger") and request.user.has_perm("executions.view_execution")
    ):
        raise PermissionDenied
    context = {
        **site.each_context(request),
        "title": "Scheduler dashboard",
        **dashboard_context(now=clock.now()),
    }
    return TemplateResponse(request, "admin/dashboard.html", context)


def install(site: AdminSite) -> None:
    """Give an admin site the dashboard page (URL name `admin:scheduler-dashboard`) and the scheduler's
    titles. Done on the instance, so the default `admin.site` keeps its registry and no setting changes."""
    if getattr(site, "_scheduler_dashboard", False):
        return
    site.site_header = site.site_title = "Workflow scheduler"
    site.index_title = "Operations"
    site.site_url = "/"  # "View site": the landing page (operations.landing), which links back here
    site.empty_value_display = "—"  # the same mark the scheduler's own columns use for "nothing yet"
    original_get_urls = site.get_urls

    def get_urls() -> list:
        view = site.admin_view(functools.partial(dashboard_view, site=site))
        return [path("dashboard/", view, name="scheduler-dashboard"), *original_get_urls()]

    # On this instance only (see the docstring), hence attribute writes rather than a subclass.
    site.get_urls = get_urls  # type: ignore[method-assign]
    setattr(site, "_scheduler_dashboard", True)  # noqa: B010
