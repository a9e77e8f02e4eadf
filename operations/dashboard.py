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
from django.db.models import Count, Q
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
#: The upcoming-slots heatmap expands at most this many triggers, the soonest due first (read through the
#: next-run index), and at most this many slots of each: its cost is bounded whatever the fleet's size, and
#: the page says when either cap was reached.
HEATMAP_TRIGGERS = 500
HEATMAP_SLOTS_PER_TRIGGER = 1440
HEATMAP_HOURS = 24
#: The busiest triggers get a row of their own under the row for all of them.
HEATMAP_ROWS = 8
HEAT_LEVELS = 4
HOUR = timedelta(hours=1)
#: How often the page refreshes itself (operations/static/operations/dashboard.js), in seconds.
REFRESH_SECONDS = 30
STUCK_LIMIT = 20

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
    failed" is news too). One count per state over the window rather than a GROUP BY: grouping by status
    tempts the planner into walking the whole status index in order, while this reads only the window's
    range of the created_at index (`tests/integration/test_list_plans.py`)."""
    from executions.models import Execution, ExecutionStatus

    counted = Execution.objects.filter(created_at__gte=since).aggregate(
        **{value: Count("pk", filter=Q(status=value)) for value in ExecutionStatus.values}
    )
    return [
        StatusCount(value, label.split(" — ")[0], counted[value]) for value, label in ExecutionStatus.choices
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


@dataclass(frozen=True)
class HeatCell:
    count: int
    level: int  # 0 (none) to HEAT_LEVELS (the busiest hour of the map)
    title: str


@dataclass(frozen=True)
class HeatRow:
    label: str
    trigger: Any  # a Trigger, or None for the row of all triggers
    cells: list[HeatCell]
    total: int


@dataclass(frozen=True)
class Heatmap:
    """Slots due in each of the next hours (UTC, the current hour first): one row for every trigger read,
    then the busiest triggers on their own."""

    hours: list[datetime]
    rows: list[HeatRow]
    slots: int
    triggers: int
    triggers_capped: bool  # HEATMAP_TRIGGERS were read: others due in the window are not counted
    slots_capped: int  # triggers whose slots were counted only up to HEATMAP_SLOTS_PER_TRIGGER


def upcoming_heatmap(
    *,
    now: datetime,
    triggers: Any = None,
    hours: int = HEATMAP_HOURS,
    trigger_cap: int = HEATMAP_TRIGGERS,
    slot_cap: int = HEATMAP_SLOTS_PER_TRIGGER,
) -> Heatmap:
    """Where the next `hours` of slots fall, from the time engine (`timing.slots_between`, the slots beat
    will fire — not the jittered instants). Only triggers due inside the window can have a slot in it, so
    the `trigger_cap` soonest due are read by the next-run index and each is expanded up to `slot_cap`
    slots: a million triggers cost what `trigger_cap` do."""
    from schedules import timing, validation
    from schedules.models import Trigger

    start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=hours)
    queryset = Trigger.objects.all() if triggers is None else triggers
    read = list(
        queryset.active()
        .filter(next_run_at__isnull=False, next_run_at__lt=end)
        .order_by("next_run_at", "pk")[:trigger_cap]
    )
    per_trigger: list[tuple[Any, list[int]]] = []
    slots_capped = 0
    for trigger in read:
        counts = [0] * hours
        try:
            slots = timing.slots_between(
                validation.spec_of(trigger),
                now,
                end - timedelta(microseconds=1),
                limit=slot_cap,
                runs_so_far=trigger.runs_so_far,
            )
        except (timing.TimingError, ValidationError):  # a row that no longer parses shows nothing
            slots = []
        slots_capped += len(slots) >= slot_cap
        for slot in slots:
            counts[int((slot - start).total_seconds() // 3600)] += 1
        per_trigger.append((trigger, counts))
    every = [sum(column) for column in zip(*(c for _, c in per_trigger), strict=True)] or [0] * hours
    peak = max(every, default=0)
    hour_starts = [start + timedelta(hours=i) for i in range(hours)]

    def row(label: str, trigger: Any, counts: list[int]) -> HeatRow:
        cells = [
            HeatCell(
                count=n,
                level=math.ceil(HEAT_LEVELS * n / peak) if n else 0,
                title=f"{label}: {n} slot{'s' if n != 1 else ''}, {h:%H:%M} to {h + HOUR:%H:%M} UTC",
            )
            for h, n in zip(hour_starts, counts, strict=True)
        ]
        return HeatRow(label=label, trigger=trigger, cells=cells, total=sum(counts))

    busiest = sorted(
        (item for item in per_trigger if any(item[1])), key=lambda item: (-sum(item[1]), item[0].name)
    )[:HEATMAP_ROWS]
    return Heatmap(
        hours=hour_starts,
        rows=[row("All triggers", None, every), *(row(t.name, t, c) for t, c in busiest)],
        slots=sum(every),
        triggers=len(read),
        triggers_capped=len(read) >= trigger_cap,
        slots_capped=slots_capped,
    )


def stuck_runs(*, now: datetime, limit: int = STUCK_LIMIT) -> tuple[list[Any], int]:
    """Runs queued or running past their timeout or attempt deadline (`executions.selectors.with_stuck`),
    the longest stuck first, and how many there are."""
    from executions.models import Execution
    from executions.selectors import STUCK_STATUSES, with_stuck

    stuck = with_stuck(
        Execution.objects.filter(status__in=STUCK_STATUSES).select_related("trigger"), now=now
    ).filter(stuck=True)
    return list(stuck.order_by("updated_at")[:limit]), stuck.count()


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


def dashboard_context(*, now: datetime, triggers: Any = None) -> dict[str, Any]:
    """`triggers`: the triggers the heatmap may read (the viewer's, `Trigger.objects.visible_to`)."""
    from executions.stats import trigger_stats

    since = now - WINDOW
    stats = trigger_stats(since=since)  # the API's figures and definitions, for the same window
    stuck, stuck_count = stuck_runs(now=now)
    return {
        "now": now,
        "heatmap": upcoming_heatmap(now=now, triggers=triggers),
        "heatmap_caps": (HEATMAP_TRIGGERS, HEATMAP_SLOTS_PER_TRIGGER),
        "stuck": [
            {
                "run": run,
                "since": instant(run.started_at or run.queued_at or run.updated_at, run.trigger.timezone),
            }
            for run in stuck
        ],
        "stuck_count": stuck_count,
        "refresh_seconds": REFRESH_SECONDS,
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
    from schedules.models import Trigger

    if not (
        request.user.has_perm("schedules.view_trigger") and request.user.has_perm("executions.view_execution")
    ):
        raise PermissionDenied
    context = {
        **site.each_context(request),
        "title": "Scheduler dashboard",
        **dashboard_context(now=clock.now(), triggers=Trigger.objects.visible_to(request.user)),
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
