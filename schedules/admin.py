"""The operators' view of triggers. Thin on purpose: every change goes through `schedules.services` (or
`executions.services` for run now), and the helpers at the top — an instant in the trigger's zone and in UTC,
a status badge, the schedule in words — are shared by the execution admin and the dashboard so the three
pages speak the same language."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from simple_history.admin import SimpleHistoryAdmin

from executions.admin import LatestExecutionsInline, execution_link, run_strip
from executions.models import UNSUCCESSFUL_STATUSES, Execution, ExecutionStatus
from schedules import services, timing, validation
from schedules.forms import BackfillForm, CalendarAdminForm, TemplateAdminForm, TriggerAdminForm
from schedules.models import Calendar, OwnerLimits, Trigger, TriggerStatus, TriggerTemplate
from toolkit.admin import (
    UTC_ZONE,
    EstimatedCountPaginator,
    Operation,
    OperationsMixin,
    badge,
    choice_badge,
    instant,
    instant_column,
    instant_text,
    rate_badge,
    wall,
)

logger = logging.getLogger(__name__)

#: Name of the REST API's cron preview route (`POST /api/v1/cron/preview/`) the change form's script calls.
CRON_PREVIEW_URL_NAME = "cron-preview"


# --- Trigger display helpers --------------------------------------------------------------------------------


def schedule_in_words(trigger: Trigger) -> str:
    """`timing.describe` of the trigger's schedule; never breaks a page if a stored row no longer parses."""
    spec = validation.spec_of(trigger)
    try:
        return timing.describe(spec)
    except timing.TimingError:
        logger.warning("trigger %s has a schedule that no longer parses", trigger.pk)
        return f"{trigger.cron_expression or trigger.kind} ({trigger.timezone}) — invalid"


def fire_time_rows(fire_times: Iterable[timing.FireTime | services.PreviewRun]) -> list[dict[str, Any]]:
    """Rows of a fire-time table, shaped like the preview endpoint's `next_runs` so the server-rendered
    table and the one the change form's script redraws are the same. What a window, blackout or calendar
    does with a slot is added to its note ("skipped: …", "deferred: …")."""
    rows = []
    for ft in fire_times:
        decision = getattr(ft, "decision", "run")
        rule = f"{decision}: {getattr(ft, 'rule', '')}" if decision != "run" else ""
        note = "; ".join(text for text in (ft.note or "", rule) if text)
        rows.append({"local": wall(ft.local), "utc": wall(ft.slot.astimezone(UTC_ZONE)), "note": note})
    return rows


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


class TargetFilter(admin.SimpleListFilter):
    """By launch target, listing the operator's configured targets (SCHEDULER_TARGETS): Django's field
    filter would find the choices with a DISTINCT over every trigger on every page load."""

    title = "target"
    parameter_name = "target"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(settings.SCHEDULER_TARGETS)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(target=self.value()) if self.value() else queryset


def _pause(request: HttpRequest, trigger: Trigger) -> str:
    services.trigger_pause(trigger=trigger, reason=f"paused by {request.user} in the admin")
    return ""


def _resume(request: HttpRequest, trigger: Trigger) -> str:
    resumed = services.trigger_resume(trigger=trigger)
    if resumed.next_run_at is None:
        return ""
    return f"; next run {instant_text(resumed.next_run_at, resumed.timezone)}"


def _run_now(request: HttpRequest, trigger: Trigger) -> str:
    from executions import services as execution_services

    execution = execution_services.execution_run_now(trigger=trigger, requested_by=request.user)
    return format_html(": execution {}", execution_link(execution))


def _sync(request: HttpRequest, trigger: Trigger) -> str:
    from schedules.beat.sync import sync_trigger

    sync_trigger(trigger.pk)
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
POLICY_FIELDS = (
    "overlap_policy", "max_concurrent", "catchup_policy", "catchup_window_seconds", "misfire_grace_seconds",
    "auto_pause_after_failures",
)  # fmt: skip
LAUNCH_FIELDS = ("max_attempts", "backoff_seconds", "timeout_seconds", "priority")
HISTORY_FIELDS = ("keep_succeeded", "keep_failed")
RULE_FIELDS = ("windows", "blackouts", "window_action", "excluded_calendar")


@admin.register(Trigger)
class TriggerAdmin(OperationsMixin, SimpleHistoryAdmin):
    """The History page is simple-history's: every version the services saved, with who, when, why and
    the fields that changed (`Trigger.history`); past versions can be viewed, never restored."""

    form = TriggerAdminForm
    list_display = (
        "name", "owner", "schedule", "status_badge", "next_run", "last_run", "success_rate",
    )  # fmt: skip
    list_filter = (
        "status", "kind", TargetFilter, ("owner", admin.RelatedFieldListFilter), LastStatusFilter,
    )  # fmt: skip
    # Owners come from the users table: RelatedOnlyFieldListFilter would read every trigger for DISTINCT.
    search_fields = ("name", "workflow_id")
    search_help_text = "Search by name or workflow id."
    list_select_related = ("owner",)
    list_per_page = 50
    paginator = EstimatedCountPaginator
    show_full_result_count = False  # a second count(*) of every trigger on each page load
    autocomplete_fields = ("owner",)
    operations = TRIGGER_OPERATIONS
    actions = ("backfill", "save_as_templates")
    radio_fields = {"kind": admin.HORIZONTAL}
    inlines = (LatestExecutionsInline,)
    change_form_template = "admin/change_form_with_operations.html"
    delete_confirmation_template = "admin/schedules/trigger/delete_confirmation.html"
    delete_selected_confirmation_template = "admin/schedules/trigger/delete_selected_confirmation.html"

    STATE_FIELDS = (
        "status_badge", "run_history", "next_run", "last_run", "success_rate", "run_count", "failure_count",
        "consecutive_failures", "last_error", "paused", "paused_reason", "all_executions", "created",
        "updated",
    )  # fmt: skip
    base_fieldsets = (
        ("What to run", {"fields": WHAT_FIELDS}),
        (
            "When",
            {"fields": WHEN_FIELDS, "description": "Read in the trigger's time zone; DST follows cronie."},
        ),
        (
            "Windows, blackouts and calendar",
            {
                "fields": RULE_FIELDS,
                "description": (
                    "In the trigger's zone. A slot outside every window or in a blackout is skipped or "
                    "deferred; a slot on a date of the calendar is skipped. The fire times above show which."
                ),
            },
        ),
        ("Policies", {"fields": POLICY_FIELDS}),
        ("Launch settings", {"fields": LAUNCH_FIELDS}),
        (
            "History",
            {
                "fields": HISTORY_FIELDS,
                "description": "Beside the operator's age retention; runs still going are never pruned.",
            },
        ),
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
        empty: dict[str, str] = {TriggerStatus.PAUSED: "paused", TriggerStatus.COMPLETED: "schedule ended"}
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
        # Annotated by get_queryset (correlated subqueries): not model attributes.
        succeeded: int = getattr(obj, "succeeded_runs", 0)
        ended = succeeded + getattr(obj, "unsuccessful_runs", 0)
        return rate_badge(
            round(100 * succeeded / ended, 1) if ended else None,
            succeeded,
            ended,
            runs="scheduled and manual",
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

    @admin.display(description="run history")
    def run_history(self, obj: Trigger) -> SafeString | str:
        return run_strip(obj)

    @admin.display(description="executions")
    def all_executions(self, obj: Trigger) -> SafeString:
        url = reverse("admin:executions_execution_changelist")
        count = obj.executions.count()
        return format_html('<a href="{}?trigger__id__exact={}">All {} executions →</a>', url, obj.pk, count)

    # Writes, all through the services

    @admin.action(description="Backfill a past range of the selected triggers…", permissions=["change"])
    def backfill(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        """An intermediate page asks for the range; once it is sent, each trigger is backfilled on its own
        (one refusal does not stop the rest) and the message counts what became of its slots."""
        from executions import services as execution_services

        form = BackfillForm(request.POST if "apply" in request.POST else None)
        if not form.is_bound or not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "title": "Backfill triggers",
                "form": form,
                "queryset": queryset,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "opts": self.opts,
            }
            return TemplateResponse(request, "admin/schedules/trigger/backfill.html", context)
        for trigger in queryset:
            try:
                report = execution_services.execution_backfill(
                    trigger=trigger,
                    start=form.cleaned_data["start"],
                    end=form.cleaned_data["end"],
                    dry_run=form.cleaned_data["dry_run"],
                    spread_seconds=form.cleaned_data["spread_seconds"] or 0,
                    launched_by=request.user.get_username()[:100],
                )
            except ValidationError as exc:
                self.message_user(
                    request, f"Could not backfill “{trigger}”: {'; '.join(exc.messages)}", messages.ERROR
                )
                continue
            counts = report.as_json()["counts"]
            if report.dry_run:
                text = (
                    f"Dry run of “{trigger}”: {counts['slots']} slots, "
                    f"{counts['recorded']} already recorded, {counts['would_run']} would run."
                )
            else:
                text = (
                    f"Backfilled “{trigger}”: {counts['slots']} slots, {counts['created']} recorded now, "
                    f"{counts['recorded']} already recorded, {counts['refused']} refused."
                )
            self.message_user(request, text, messages.SUCCESS)
        return None

    @admin.action(description="Save the selected triggers as templates", permissions=["change"])
    def save_as_templates(self, request: HttpRequest, queryset: QuerySet) -> None:
        """One template per trigger, owned by the trigger's owner and named after it."""
        for trigger in queryset:
            try:
                template = services.template_save(owner=trigger.owner, trigger=trigger, name=trigger.name)
            except ValidationError as exc:
                self.message_user(
                    request, f"“{trigger}” not saved as a template: {'; '.join(exc.messages)}", messages.ERROR
                )
                continue
            self.message_user(request, f"Saved “{trigger}” as the template “{template}”.", messages.SUCCESS)

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: dict | None = None
    ) -> HttpResponse:
        """A past version, to read. Posting it would save the old values (the form saves as it validates),
        a revert by another door: refused, whatever SIMPLE_HISTORY_REVERT_DISABLED says."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        return super().history_form_view(request, object_id, version_id, extra_context)

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


@admin.register(OwnerLimits)
class OwnerLimitsAdmin(admin.ModelAdmin):
    """Per-user caps over the environment's defaults; saved through `services.owner_limits_set`."""

    list_display = ("owner", "max_triggers", "max_concurrent_runs", "max_concurrent_per_workflow", "note")
    search_fields = ("owner__username",)
    autocomplete_fields = ("owner",)
    fields = ("owner", "max_triggers", "max_concurrent_runs", "max_concurrent_per_workflow", "note")

    def get_readonly_fields(self, request: HttpRequest, obj: OwnerLimits | None = None) -> tuple[str, ...]:
        return ("owner",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: OwnerLimits, form: Any, change: bool) -> None:
        services.owner_limits_set(
            owner=obj.owner,
            note=obj.note,
            max_triggers=obj.max_triggers,
            max_concurrent_runs=obj.max_concurrent_runs,
            max_concurrent_per_workflow=obj.max_concurrent_per_workflow,
        )


@admin.register(Calendar)
class CalendarAdmin(admin.ModelAdmin):
    """Holiday and exclusion calendars; saved through `services.calendar_create` / `calendar_update`."""

    form = CalendarAdminForm
    list_display = ("name", "owner", "shared", "source", "country", "subdivision", "date_count", "used_by")
    list_filter = ("shared", "source")
    search_fields = ("name", "owner__username")
    autocomplete_fields = ("owner",)
    fieldsets = (
        (None, {"fields": ("name", "owner", "description", "shared")}),
        ("Dates", {"fields": ("dates",)}),
        (
            "Import (replaces the dates)",
            {"fields": ("ics", "country", "subdivision", "years")},
        ),
    )

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)

        class WithActor(form):  # type: ignore[valid-type,misc]
            def __init__(self, *args: Any, **inner: Any) -> None:
                super().__init__(*args, actor=request.user, **inner)

        return WithActor

    def get_readonly_fields(self, request: HttpRequest, obj: Calendar | None = None) -> tuple[str, ...]:
        return ("owner",) if obj is not None else ()

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"owner": request.user.pk, **super().get_changeform_initial_data(request)}

    @admin.display(description="dates")
    def date_count(self, obj: Calendar) -> int:
        return len(obj.dates or [])

    @admin.display(description="excluded by")
    def used_by(self, obj: Calendar) -> str:
        count = Trigger.objects.live().filter(excluded_calendar=obj).count()
        return f"{count} trigger{'s' if count != 1 else ''}"

    def save_model(self, request: HttpRequest, obj: Calendar, form: Any, change: bool) -> None:
        """Nothing to do: the form saved through the services while validating."""

    def delete_model(self, request: HttpRequest, obj: Calendar) -> None:
        try:
            services.calendar_delete(calendar=obj)
        except ValidationError as exc:
            self.message_user(request, f"“{obj}” was not deleted: {'; '.join(exc.messages)}", messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for calendar in queryset:
            self.delete_model(request, calendar)


@admin.register(TriggerTemplate)
class TriggerTemplateAdmin(admin.ModelAdmin):
    """Users' saved trigger settings; the presets stay the read-only defaults of the trigger form."""

    form = TemplateAdminForm
    list_display = ("name", "owner", "schedule", "updated_at")
    search_fields = ("name", "owner__username")
    autocomplete_fields = ("owner",)
    actions = ("create_triggers",)

    def get_readonly_fields(
        self, request: HttpRequest, obj: TriggerTemplate | None = None
    ) -> tuple[str, ...]:
        return ("owner",) if obj is not None else ()

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"owner": request.user.pk, **super().get_changeform_initial_data(request)}

    @admin.display(description="schedule")
    def schedule(self, obj: TriggerTemplate) -> str:
        definition = obj.definition or {}
        return str(definition.get("cron_expression") or definition.get("kind") or "")

    def save_model(self, request: HttpRequest, obj: TriggerTemplate, form: Any, change: bool) -> None:
        """Nothing to do: the form saved through the services while validating."""

    def delete_model(self, request: HttpRequest, obj: TriggerTemplate) -> None:
        services.template_delete(template=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for template in queryset:
            services.template_delete(template=template)

    @admin.action(description="Create a paused trigger from each selected template", permissions=["change"])
    def create_triggers(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Paused, so the new trigger is looked over (and resumed) before it runs; owned by the template's
        owner, named after the template."""
        for template in queryset:
            try:
                trigger = services.trigger_register_from_template(
                    owner=template.owner, template=template, paused=True, name=template.name
                )
            except ValidationError as exc:
                self.message_user(
                    request, f"No trigger from “{template}”: {'; '.join(exc.messages)}", messages.ERROR
                )
                continue
            url = reverse("admin:schedules_trigger_change", args=[trigger.pk])
            self.message_user(
                request,
                format_html('Created the paused trigger <a href="{}">{}</a>.', url, trigger),
                messages.SUCCESS,
            )
