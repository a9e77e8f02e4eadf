"""The operators' view of triggers. Thin on purpose: every change goes through `schedules.services` (or
`executions.services` for run now), and the helpers at the top — an instant in the trigger's zone and in UTC,
a status badge, the schedule in words — are shared by the execution admin and the dashboard so the three
pages speak the same language."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.forms import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil
from django.views.decorators.http import require_POST

from executions.models import UNSUCCESSFUL_STATUSES, Execution, ExecutionOrigin, ExecutionStatus, SkipReason
from scheduler_project import clock, dashboard
from schedules import services, timing, validation
from schedules.forms import TriggerAdminForm
from schedules.models import Trigger, TriggerStatus

logger = logging.getLogger(__name__)

UTC_ZONE = ZoneInfo("UTC")
#: Name of the REST API's cron preview route (`POST /api/v1/cron/preview/`) the change form's script calls.
CRON_PREVIEW_URL_NAME = "cron-preview"
LATEST_EXECUTIONS = 10


# --- Shared display helpers --------------------------------------------------------------------------------


def wall(moment: datetime) -> str:
    """A wall time such as "Mon 2 Mar 09:00 PST": weekday and zone abbreviation because operators reason in
    local time, seconds only for schedules that have them, the year only when it is not this one."""
    text = f"{moment:%a} {moment.day} {moment:%b}"
    if moment.year != clock.now().year:
        text += f" {moment.year}"
    text += f" {moment:%H:%M:%S}" if moment.second else f" {moment:%H:%M}"
    return f"{text} {moment.tzname()}"


def in_zone(moment: datetime, zone_name: str) -> datetime:
    """The instant in a trigger's zone; UTC if the stored name is not a zone (never a broken page)."""
    try:
        return moment.astimezone(ZoneInfo(zone_name))
    except (ValueError, KeyError, OSError):
        return moment.astimezone(UTC_ZONE)


def relative(moment: datetime) -> str:
    """How far away an instant is ("in 3 hours", "5 minutes ago"), against the one clock."""
    now = clock.now()
    if abs((moment - now).total_seconds()) < 60:
        return "now"
    if moment >= now:
        return f"in {timeuntil(moment, now, depth=1)}"
    return f"{timesince(moment, now, depth=1)} ago"


def instant(moment: datetime | None, zone_name: str = "UTC", *, empty: str = "—") -> SafeString | str:
    """An instant as operators read it: in the trigger's zone, then in UTC (the fleet's zone, and what logs
    show) with how far away it is. A UTC trigger gets one line, not the same time twice."""
    if moment is None:
        return empty
    local = in_zone(moment, zone_name)
    utc = moment.astimezone(UTC_ZONE)
    second_line = relative(moment) if local.tzinfo == UTC_ZONE else f"{wall(utc)} · {relative(moment)}"
    return format_html(
        '<span class="sched-when" title="{}"><span class="sched-when__local">{}</span>'
        '<span class="sched-when__utc">{}</span></span>',
        utc.isoformat(),
        wall(local),
        second_line,
    )


def instant_text(moment: datetime, zone_name: str = "UTC") -> str:
    """An instant in one line of plain text, for messages: "Mon 2 Mar 09:00 PST (17:00 UTC), in 5 hours"."""
    local = in_zone(moment, zone_name)
    utc = "" if local.tzinfo == UTC_ZONE else f" ({moment.astimezone(UTC_ZONE):%H:%M} UTC)"
    return f"{wall(local)}{utc}, {relative(moment)}"


def instant_column(field: str, zone_of: Callable[[Any], str], description: str = "") -> Callable:
    """An admin column (or read-only field) showing a datetime field with `instant`, in the zone
    `zone_of(obj)` names: one line of code per column instead of one method each."""

    @admin.display(description=description or field.removesuffix("_at").replace("_", " "), ordering=field)
    def column(self, obj: Any) -> SafeString | str:
        return instant(getattr(obj, field), zone_of(obj))

    return column


def badge(value: str, label: str = "", *, title: str = "") -> SafeString | str:
    """A coloured status pill; the colour comes from the value (admin.css), the words from the label."""
    if not value:
        return "—"
    short = label.split(" — ")[0] if label else value.replace("_", " ")
    return format_html(
        '<span class="sched-badge sched-badge--{}" title="{}">{}</span>', value, title or label, short
    )


def rate_badge(percent: float | None, succeeded: int, ended: int) -> SafeString | str:
    """A success rate coloured by how worrying it is; "—" before anything has ended."""
    if percent is None:
        return "—"
    tone = "good" if percent >= 95 else "warn" if percent >= 80 else "bad"
    return format_html(
        '<span class="sched-rate sched-rate--{}" title="{} of {} ended runs succeeded">{}%</span>',
        tone,
        succeeded,
        ended,
        f"{percent:g}",
    )


def choice_badge(value: str, choices: type) -> SafeString | str:
    """A badge for a value of a `TextChoices` enum, its label as the hover text."""
    label = dict(choices.choices).get(value, "")
    return badge(value, label, title=label)


def schedule_in_words(trigger: Trigger) -> str:
    """`timing.describe` of the trigger's schedule; never breaks a page if a stored row no longer parses."""
    spec = validation.spec_of(trigger)
    try:
        return timing.describe(spec)
    except timing.TimingError:
        logger.warning("trigger %s has a schedule that no longer parses", trigger.pk)
        return f"{trigger.cron_expression or trigger.kind} ({trigger.timezone}) — invalid"


def duration_text(milliseconds: float | None) -> str:
    """A duration in the unit a person would pick: "850 ms", "12.4 s", "3.2 min"."""
    if milliseconds is None:
        return "—"
    if milliseconds < 1000:
        return f"{milliseconds:.0f} ms"
    seconds = milliseconds / 1000
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def fire_time_rows(fire_times: Iterable[timing.FireTime]) -> list[dict[str, Any]]:
    """Rows of a fire-time table, shaped like the preview endpoint's `next_runs` so the server-rendered
    table and the one the change form's script redraws are the same."""
    return [
        {"local": wall(ft.local), "utc": wall(ft.slot.astimezone(UTC_ZONE)), "note": ft.note or ""}
        for ft in fire_times
    ]


# --- Trigger admin -----------------------------------------------------------------------------------------


def _executions_counted(*statuses: str) -> Coalesce:
    """A per-row count of a trigger's executions in these states, as a correlated subquery so it is computed
    only for the rows on the page (an aggregate join would count every trigger's history first)."""
    rows = (
        Execution.objects.filter(trigger=OuterRef("pk"), status__in=statuses)
        .order_by()
        .values("trigger")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows), 0)


class LastStatusFilter(admin.SimpleListFilter):
    """By the status of each trigger's latest run, with the execution states' own labels."""

    title = "last run"
    parameter_name = "last_status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(value, label.split(" — ")[0]) for value, label in ExecutionStatus.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(last_status=self.value()) if self.value() else queryset


class LatestExecutionsFormSet(BaseInlineFormSet):
    """Only the newest executions: a busy trigger has thousands, and the full list is one link away."""

    def get_queryset(self) -> QuerySet:
        return super().get_queryset().order_by("-created_at")[:LATEST_EXECUTIONS]


def execution_zone(execution: Execution) -> str:
    return execution.trigger.timezone


class ExecutionDisplay:
    """Columns an execution shows wherever it is listed (its own admin and the trigger's inline)."""

    recorded = instant_column("created_at", execution_zone, "recorded")

    @admin.display(description="origin", ordering="origin")
    def origin_label(self, obj: Execution) -> str:
        return dict(ExecutionOrigin.choices).get(obj.origin, "—").split(" — ")[0]

    @admin.display(description="slot", ordering="slot")
    def slot_when(self, obj: Execution) -> SafeString | str:
        if obj.slot is None:
            return format_html(
                "manual<br>{}", instant(obj.requested_at or obj.created_at, obj.trigger.timezone)
            )
        return instant(obj.slot, obj.trigger.timezone)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Execution) -> SafeString | str:
        reason = dict(SkipReason.choices).get(obj.skip_reason, "")
        return badge(obj.status, obj.get_status_display(), title=reason or obj.get_status_display())

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj: Execution) -> str:
        return duration_text(obj.duration_ms)


class ReadOnlyAdminMixin:
    """Viewable, never added, edited or deleted through a form: history is changed by services only."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LatestExecutionsInline(ReadOnlyAdminMixin, ExecutionDisplay, admin.TabularInline):
    model = Execution
    formset = LatestExecutionsFormSet
    verbose_name_plural = f"latest {LATEST_EXECUTIONS} executions"
    fields = (
        "execution",
        "slot_when",
        "status_badge",
        "origin_label",
        "attempts",
        "duration",
        "error_excerpt",
    )
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-created_at",)

    @admin.display(description="execution")
    def execution(self, obj: Execution) -> SafeString:
        url = reverse("admin:executions_execution_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, str(obj.pk)[:8])

    @admin.display(description="error")
    def error_excerpt(self, obj: Execution) -> str:
        return (obj.error[:120] + "…") if len(obj.error) > 120 else obj.error or "—"


@dataclass(frozen=True)
class Operation:
    """One thing an operator can do to an object, offered both as a list action and as a button on the
    object's page. `apply` does it through a service and returns a detail for the message, or raises
    `ValidationError` with the service's reason; `offered` says whether the button fits the object's state."""

    name: str
    label: str
    done: str
    apply: Callable[[HttpRequest, Any], str]
    offered: Callable[[Any], bool] = lambda obj: True


class OperationsMixin:
    """List actions and page buttons from one table of `operations`, so each operation is written once and
    behaves the same from both places: applied to each object on its own (one refusal does not stop the
    rest), with a message saying what happened to each."""

    operations: tuple[Operation, ...] = ()
    #: When more objects than this are acted on at once, one summary replaces the per-object messages.
    message_detail_limit = 5

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        if self.has_operate_permission(request):
            for op in self.operations:
                actions[op.name] = (
                    self._action(op),
                    op.name,
                    f"{op.label} the selected {self.opts.verbose_name_plural}",
                )
        return actions

    def has_operate_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj)

    def describe_object(self, obj: Any) -> str:
        """How an object is named in the messages."""
        return str(obj)

    @staticmethod
    def _action(op: Operation) -> Callable:
        def action(modeladmin: OperationsMixin, request: HttpRequest, queryset: QuerySet) -> None:
            modeladmin.operate(request, queryset, op)

        action.__name__ = op.name
        return action

    def operate(self, request: HttpRequest, objects: Iterable[Any], op: Operation) -> None:
        done: list[str] = []
        for obj in objects:
            try:
                detail = op.apply(request, obj)
            except ValidationError as exc:
                reason = "; ".join(exc.messages)
            except redis.RedisError as exc:
                reason = f"Redis is unreachable ({exc})"
            else:
                done.append(format_html("{} “{}”{}", op.done, self.describe_object(obj), detail))
                continue
            message = f"Could not {op.label.lower()} “{self.describe_object(obj)}”: {reason}"
            self.message_user(request, message, messages.ERROR)
        if len(done) > self.message_detail_limit:
            self.message_user(
                request, f"{op.done} {len(done)} {self.opts.verbose_name_plural}.", messages.SUCCESS
            )
        else:
            for line in done:
                self.message_user(request, format_html("{}.", line), messages.SUCCESS)

    def get_urls(self) -> list:
        name = f"{self.opts.app_label}_{self.opts.model_name}_operate"
        view = self.admin_site.admin_view(self.operate_view)
        return [path("<path:object_id>/operate/<str:operation>/", view, name=name), *super().get_urls()]

    @method_decorator(require_POST)
    def operate_view(self, request: HttpRequest, object_id: str, operation: str) -> HttpResponseRedirect:
        op = next((o for o in self.operations if o.name == operation), None)
        obj = self.get_object(request, object_id)
        if op is None or obj is None:
            raise Http404(f"No such {self.opts.verbose_name} or operation.")
        if not self.has_operate_permission(request, obj):
            raise PermissionDenied
        self.operate(request, [obj], op)
        return HttpResponseRedirect(
            reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk])
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ):
        """Head the page with the object's readable name (the same one the messages use)."""
        obj = self.get_object(request, object_id)
        if obj is not None:
            extra_context = {"subtitle": self.describe_object(obj), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    def render_change_form(
        self, request: HttpRequest, context: dict, *args: Any, obj: Any = None, **kwargs: Any
    ):
        if obj is not None and self.has_operate_permission(request, obj):
            context["operations"] = [op for op in self.operations if op.offered(obj)]
            context["operate_url_name"] = f"admin:{self.opts.app_label}_{self.opts.model_name}_operate"
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)


def _pause(request: HttpRequest, trigger: Trigger) -> str:
    services.trigger_pause(trigger=trigger, reason=f"paused by {request.user} in the admin")
    return ""


def _resume(request: HttpRequest, trigger: Trigger) -> str:
    resumed = services.trigger_resume(trigger=trigger)
    if resumed.next_run_at is None:
        return ""
    return f"; next run {instant_text(resumed.next_run_at, resumed.timezone)}"


def execution_link(execution: Execution) -> SafeString:
    url = reverse("admin:executions_execution_change", args=[execution.pk])
    status = execution.get_status_display().split(" — ")[0].lower()
    return format_html('<a href="{}">{}</a> ({})', url, str(execution.pk)[:8], status)


def _run_now(request: HttpRequest, trigger: Trigger) -> str:
    from executions import services as execution_services

    execution = execution_services.execution_run_now(trigger=trigger, requested_by=request.user)
    return format_html(": execution {}", execution_link(execution))


def _sync(request: HttpRequest, trigger: Trigger) -> str:
    from schedules import redbeat_sync

    redbeat_sync.sync_trigger(trigger.pk)
    return ""


TRIGGER_OPERATIONS = (
    Operation("pause", "Pause", "Paused", _pause, offered=lambda t: t.status == TriggerStatus.ACTIVE),
    Operation("resume", "Resume", "Resumed", _resume, offered=lambda t: t.status == TriggerStatus.PAUSED),
    Operation("run_now", "Run now", "Started a run of", _run_now),
    Operation("sync_to_beat", "Sync to beat", "Synced the beat entry of", _sync),
)


def _trigger_zone(trigger: Trigger) -> str:
    return trigger.timezone


WHAT_FIELDS = ("name", "description", "owner", "workflow_id", "target", "input", "metadata")
WHEN_FIELDS = (
    "kind", "preset", "cron_expression", "timezone", "fire_times", "interval_seconds", "anchor_at", "run_at",
    "start_at", "end_at", "max_runs", "jitter_seconds",
)  # fmt: skip
POLICY_FIELDS = ("overlap_policy", "catchup_policy", "catchup_window_seconds", "misfire_grace_seconds")
LAUNCH_FIELDS = ("max_attempts", "backoff_seconds", "timeout_seconds", "priority")


@admin.register(Trigger)
class TriggerAdmin(OperationsMixin, admin.ModelAdmin):
    form = TriggerAdminForm
    list_display = (
        "name", "owner", "schedule", "status_badge", "next_run", "last_run", "success_rate",
    )  # fmt: skip
    list_filter = (
        "status", "kind", "target", ("owner", admin.RelatedOnlyFieldListFilter), LastStatusFilter,
    )  # fmt: skip
    search_fields = ("name", "workflow_id")
    search_help_text = "Search by name or workflow id."
    list_select_related = ("owner",)
    list_per_page = 50
    operations = TRIGGER_OPERATIONS
    radio_fields = {"kind": admin.HORIZONTAL}
    inlines = (LatestExecutionsInline,)
    change_form_template = "admin/change_form_with_operations.html"
    delete_confirmation_template = "admin/schedules/trigger/delete_confirmation.html"
    delete_selected_confirmation_template = "admin/schedules/trigger/delete_selected_confirmation.html"

    STATE_FIELDS = (
        "status_badge", "next_run", "last_run", "success_rate", "run_count", "failure_count",
        "consecutive_failures", "last_error", "paused", "paused_reason", "all_executions", "created",
        "updated",
    )  # fmt: skip
    base_fieldsets = (
        ("What to run", {"fields": WHAT_FIELDS}),
        (
            "When",
            {"fields": WHEN_FIELDS, "description": "Read in the trigger's time zone; DST follows cronie."},
        ),
        ("Policies", {"fields": POLICY_FIELDS}),
        ("Launch settings", {"fields": LAUNCH_FIELDS}),
    )

    class Media:
        css = {"all": ("schedules/admin.css",)}
        js = ("schedules/trigger_form.js",)

    # Lists and pages

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        """Live triggers only (a deleted one keeps its row for its history, not for this list), with the
        counts its success rate needs."""
        return (
            Trigger.objects.live()
            .select_related("owner")
            .annotate(
                succeeded_runs=_executions_counted(ExecutionStatus.SUCCEEDED),
                unsuccessful_runs=_executions_counted(*UNSUCCESSFUL_STATUSES),
            )
        )

    def get_fieldsets(self, request: HttpRequest, obj: Trigger | None = None) -> tuple:
        if obj is None:
            return self.base_fieldsets
        return (("State", {"fields": self.STATE_FIELDS}), *self.base_fieldsets)

    def get_readonly_fields(self, request: HttpRequest, obj: Trigger | None = None) -> tuple[str, ...]:
        """The owner is chosen once, at creation: no service moves a trigger to another owner."""
        if obj is None:
            return ("fire_times",)
        return ("fire_times", "owner", *self.STATE_FIELDS)

    def get_inlines(self, request: HttpRequest, obj: Trigger | None) -> tuple:
        return self.inlines if obj is not None else ()

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """A new trigger belongs to whoever creates it; staff may pick another owner before saving."""
        return {"owner": request.user.pk, **super().get_changeform_initial_data(request)}

    paused = instant_column("paused_at", _trigger_zone)
    created = instant_column("created_at", _trigger_zone)
    updated = instant_column("updated_at", _trigger_zone)

    @admin.display(description="schedule")
    def schedule(self, obj: Trigger) -> str:
        return schedule_in_words(obj)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Trigger) -> SafeString | str:
        title = dict(TriggerStatus.choices)[obj.status]
        if obj.status == TriggerStatus.PAUSED and obj.paused_reason:
            title = f"{title}: {obj.paused_reason}"
        return badge(obj.status, obj.get_status_display(), title=title)

    @admin.display(description="next run", ordering="next_run_at")
    def next_run(self, obj: Trigger) -> SafeString | str:
        empty = {TriggerStatus.PAUSED: "paused", TriggerStatus.COMPLETED: "schedule ended"}
        return instant(obj.next_run_at, obj.timezone, empty=empty.get(obj.status, "—"))

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, obj: Trigger) -> SafeString | str:
        if obj.last_run_at is None and not obj.last_status:
            return "never"
        status = choice_badge(obj.last_status, ExecutionStatus)
        return format_html("{} {}", status, instant(obj.last_run_at or obj.last_slot, obj.timezone))

    @admin.display(description="success rate")
    def success_rate(self, obj: Trigger) -> SafeString | str:
        """`executions.stats`' definition: succeeded / (succeeded + failed + timed out), one decimal; skips
        and cancellations say nothing about the workflow's health."""
        ended = getattr(obj, "succeeded_runs", 0) + getattr(obj, "unsuccessful_runs", 0)
        return rate_badge(
            round(100 * obj.succeeded_runs / ended, 1) if ended else None, obj.succeeded_runs, ended
        )

    @admin.display(description="next 10 fire times")
    def fire_times(self, obj: Trigger) -> SafeString:
        """Computed on the server from the saved schedule; the change form's script redraws it from the
        preview endpoint as the expression or zone is edited."""
        rows, error = [], ""
        if not obj._state.adding:
            try:
                rows = fire_time_rows(services.trigger_preview(trigger=obj, count=10))
            except ValidationError as exc:
                error = "; ".join(exc.messages)
        context = {
            "rows": rows,
            "error": error,
            "description": "" if obj._state.adding else schedule_in_words(obj),
            "preview_url": reverse(CRON_PREVIEW_URL_NAME),
            "saved": not obj._state.adding,
            "paused": obj.status == TriggerStatus.PAUSED,
        }
        return render_to_string("admin/schedules/trigger/fire_times.html", context)

    @admin.display(description="executions")
    def all_executions(self, obj: Trigger) -> SafeString:
        url = reverse("admin:executions_execution_changelist")
        count = obj.executions.count()
        return format_html('<a href="{}?trigger__id__exact={}">All {} executions →</a>', url, obj.pk, count)

    # Writes, all through the services

    def save_model(self, request: HttpRequest, obj: Trigger, form: TriggerAdminForm, change: bool) -> None:
        """Nothing to do: the form saved through `trigger_register` / `trigger_update` while validating."""

    def delete_model(self, request: HttpRequest, obj: Trigger) -> None:
        services.trigger_delete(trigger=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for trigger in queryset:
            services.trigger_delete(trigger=trigger)

    def get_deleted_objects(self, objs: Iterable[Trigger], request: HttpRequest) -> tuple:
        """A soft delete removes nothing else: list only the triggers, and ask for no other permission
        (the default would list every execution as "will be deleted", which is untrue)."""
        objs = list(objs)
        listed = [format_html("Trigger: {}", obj) for obj in objs]
        return listed, {Trigger._meta.verbose_name_plural: len(objs)}, set(), []


# The dashboard joins the admin site here, where the admin autodiscovers its modules.
dashboard.install(admin.site)
