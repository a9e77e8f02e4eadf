"""Execution history in the admin: read-only, because an execution is a record of what happened, changed only
by the services that make it happen. The two things an operator may do — cancel a run that has not ended,
re-run one (a new execution pointing at the original) — are operations calling `executions.services`."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from executions import selectors, services
from executions.models import (
    UNSUCCESSFUL_STATUSES,
    Attempt,
    CreditBudget,
    Execution,
    ExecutionOrigin,
    SkipReason,
)
from executions.services import credits as credit_services
from toolkit import clock
from toolkit.admin import (
    EstimatedCountPaginator,
    Operation,
    OperationsMixin,
    ReadOnlyAdminMixin,
    badge,
    duration_text,
    in_zone,
    instant,
    instant_column,
    wall,
)

#: How many of its newest runs a trigger's page lists; the full history is one link away.
LATEST_EXECUTIONS = 10


class LatestExecutionsFormSet(BaseInlineFormSet):
    """Only the newest executions: a busy trigger has thousands, and the full list is one link away."""

    def get_queryset(self) -> QuerySet:
        rows = selectors.with_stuck(super().get_queryset(), now=clock.now())
        return rows.order_by("-created_at")[:LATEST_EXECUTIONS]


def execution_zone(execution: Execution) -> str:
    return execution.trigger.timezone


STUCK_FLAG = format_html(
    '<span class="sched-flag" title="{}">stuck</span>',
    "Queued or running past its timeout, or its attempt is past its deadline: the sweeper should have "
    "ended or retried it — is the sweeper (celery beat's housekeeping) running?",
)


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
        """The state's badge, and a "stuck" flag beside it where the list computed one
        (`selectors.with_stuck`)."""
        reason = dict(SkipReason.choices).get(obj.skip_reason, "")
        shown = badge(obj.status, obj.get_status_display(), title=reason or obj.get_status_display())
        if getattr(obj, "stuck", False):
            return format_html("{} {}", shown, STUCK_FLAG)
        return shown

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj: Execution) -> str:
        return duration_text(obj.duration_ms)

    @admin.display(description="credits", ordering="credits_used")
    def credits(self, obj: Execution) -> str:
        return "—" if obj.credits_used is None else amount_text(obj.credits_used)

    @admin.display(description="usage")
    def usage_text(self, obj: Execution) -> str:
        """What the run reported using, in one line ("2 credits, 1,200 in / 300 out tokens, cost 0.0081")."""
        usage = obj.usage
        if usage is None:
            return "—"
        parts = []
        if usage.credits is not None:
            parts.append(f"{amount_text(usage.credits)} credits")
        if usage.input_tokens is not None or usage.output_tokens is not None:
            tokens = (f"{n:,}" if n is not None else "?" for n in (usage.input_tokens, usage.output_tokens))
            parts.append("{} in / {} out tokens".format(*tokens))
        if usage.cost is not None:
            parts.append(f"cost {amount_text(usage.cost)}")
        return ", ".join(parts)


def amount_text(value: Decimal) -> str:
    """A credits or cost figure without the column's trailing zeros (2.500000 -> 2.5, 3.000000 -> 3)."""
    text = f"{value:,.6f}".rstrip("0").rstrip(".")
    return text or "0"


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


def execution_link(execution: Execution) -> SafeString:
    url = reverse("admin:executions_execution_change", args=[execution.pk])
    status = execution.get_status_display().split(" — ")[0].lower()
    return format_html('<a href="{}">{}</a> ({})', url, str(execution.pk)[:8], status)


def run_strip(trigger: Any) -> SafeString | str:
    """A trigger's newest runs as a strip of squares coloured by status, oldest on the left, each a link to
    its run (`selectors.run_strip`: one query)."""
    runs = selectors.run_strip(trigger)
    if not runs:
        return "No runs yet."
    zone = trigger.timezone
    cells = format_html_join(
        "",
        '<a class="sched-strip__run sched-strip__run--{}" href="{}" title="{}"></a>',
        (
            (
                run.status,
                reverse("admin:executions_execution_change", args=[run.pk]),
                f"{_strip_when(run, zone)}: {run.get_status_display().split(' — ')[0].lower()}"
                + (f" ({dict(SkipReason.choices)[run.skip_reason]})" if run.skip_reason else ""),
            )
            for run in runs
        ),
    )
    return format_html(
        '<div class="sched-strip-box">'
        '<div class="sched-strip" aria-label="last {} runs, oldest first">{}</div>'
        '<span class="sched-strip__help">'
        "Last {} runs, oldest on the left; hover for slot and status, click to open.</span></div>",
        len(runs),
        cells,
        len(runs),
    )


def _strip_when(run: Execution, zone: str) -> str:
    if run.slot is None:
        return f"manual run, {wall(in_zone(run.requested_at or run.created_at, zone))}"
    return wall(in_zone(run.slot, zone))


def _attempt_zone(attempt: Attempt) -> str:
    return attempt.execution.trigger.timezone


class AttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Attempt
    fields = (
        "number",
        "started",
        "finished",
        "outcome_badge",
        "http_status",
        "exception",
        "error",
        "retry_in",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("execution__trigger")

    started = instant_column("started_at", _attempt_zone)
    finished = instant_column("finished_at", _attempt_zone)

    @admin.display(description="outcome")
    def outcome_badge(self, obj: Attempt) -> SafeString | str:
        # Attempt outcomes share their words with execution states, and so their colours.
        return badge(obj.outcome, title=obj.get_outcome_display())

    @admin.display(description="next try in")
    def retry_in(self, obj: Attempt) -> str:
        return "—" if obj.retry_delay_seconds is None else f"{obj.retry_delay_seconds:.1f} s"


def _cancel(request: HttpRequest, execution: Execution) -> str:
    if execution.is_finished:
        # The service returns a finished run unchanged; the operator should hear that nothing happened.
        raise ValidationError(f"it has already ended ({execution.status.replace('_', ' ')})")
    services.execution_cancel(execution=execution, reason=f"cancelled by {request.user} in the admin")
    return ""


def _rerun(request: HttpRequest, execution: Execution) -> str:
    rerun = services.execution_rerun(execution=execution, requested_by=request.user)
    return format_html(" as execution {}", execution_link(rerun))


EXECUTION_OPERATIONS = (
    Operation("cancel", "Cancel", "Cancelled", _cancel, offered=lambda e: not e.is_finished),
    Operation("rerun", "Re-run", "Re-ran", _rerun, offered=lambda e: e.is_finished),
)


class AttentionFilter(admin.SimpleListFilter):
    """The runs an operator should act on: failed ones (to re-run, in bulk with the Re-run action) and
    stuck ones (`selectors.with_stuck`)."""

    title = "needs attention"
    parameter_name = "attention"
    FAILED, STUCK = "failed", "stuck"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(self.FAILED, "Failed or timed out"), (self.STUCK, "Stuck (past timeout or deadline)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == self.FAILED:
            return queryset.filter(status__in=UNSUCCESSFUL_STATUSES)
        if self.value() == self.STUCK:
            # The states first, so the database reads them by the status index before computing the flag.
            return queryset.filter(status__in=selectors.STUCK_STATUSES, stuck=True)
        return queryset


@admin.register(Execution)
class ExecutionAdmin(OperationsMixin, ReadOnlyAdminMixin, ExecutionDisplay, admin.ModelAdmin):
    list_display = (
        "short_id", "trigger_link", "slot_when", "status_badge", "attempts", "duration", "origin_label",
        "recorded",
    )  # fmt: skip
    # No credits column: the list must fit a laptop beside the admin's sidebar (tests/browser/test_layouts);
    # a run's usage is on its page (the Usage panel), the totals in the trigger's stats and the dashboard.
    # Recorded-at as a filter of fixed ranges, not a date hierarchy: the hierarchy lists the days that hold
    # runs with a DISTINCT over the whole history on every page load.
    list_filter = (
        AttentionFilter, "status", "origin", "skip_reason", "priority", "trigger__kind",
        ("created_at", admin.DateFieldListFilter),
    )  # fmt: skip
    search_fields = ("trigger__name", "trigger__workflow_id", "run_id", "idempotency_key")
    search_help_text = "Search by trigger name, workflow id, the target's run id or an idempotency key."
    list_select_related = ("trigger",)
    list_per_page = 50
    show_full_result_count = False  # counting a long history on every page load is the slow part
    paginator = EstimatedCountPaginator
    operations = EXECUTION_OPERATIONS
    inlines = (AttemptInline,)
    change_form_template = "admin/change_form_with_operations.html"
    fieldsets = (
        (None, {"fields": ("trigger_link", "status_badge", "skip_reason_text", "origin_label",
                           "error_text")}),
        ("When", {"fields": ("slot_when", "fire_at_when", "not_before_when", "recorded", "queued", "started",
                             "finished", "duration")}),
        ("Launch", {"fields": ("attempts", "priority", "launched_by", "requested_by", "requested",
                               "idempotency_key", "rerun_of_link", "reruns_links", "task_id", "run_id")}),
        ("Usage", {"fields": ("usage_text", "credits_used", "input_tokens", "output_tokens", "cost")}),
        ("Data", {"fields": ("input_json", "result_json")}),
    )  # fmt: skip

    fire_at_when = instant_column("fire_at", execution_zone, "due at (with jitter)")
    not_before_when = instant_column("not_before", execution_zone, "not before")
    queued = instant_column("queued_at", execution_zone)
    started = instant_column("started_at", execution_zone)
    finished = instant_column("finished_at", execution_zone)
    requested = instant_column("requested_at", execution_zone)

    class Media:
        css = {"all": ("schedules/admin.css",)}

    def get_readonly_fields(self, request: HttpRequest, obj: Execution | None = None) -> list[str]:
        return [str(name) for _, options in self.fieldsets for name in options["fields"]]

    def has_operate_permission(self, request: HttpRequest, obj: Execution | None = None) -> bool:
        """Read-only pages, but cancelling and re-running are for those who may change executions."""
        return request.user.has_perm("executions.change_execution")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        rows = super().get_queryset(request).select_related("trigger", "requested_by", "rerun_of")
        return selectors.with_stuck(rows, now=clock.now())

    def describe_object(self, obj: Execution) -> str:
        """Names the trigger and the run ("nightly, slot Mon 2 Mar 09:00 PST (1a2b3c4d)"), not two UUIDs."""
        if obj.slot is None:
            return f"{obj.trigger.name}, manual run {str(obj.pk)[:8]}"
        slot = wall(in_zone(obj.slot, obj.trigger.timezone))
        return f"{obj.trigger.name}, slot {slot} ({str(obj.pk)[:8]})"

    @admin.display(description="execution", ordering="created_at")
    def short_id(self, obj: Execution) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="trigger", ordering="trigger__name")
    def trigger_link(self, obj: Execution) -> SafeString:
        if obj.trigger.deleted_at is not None:
            return format_html('{} <span class="help">(deleted)</span>', obj.trigger.name)
        url = reverse("admin:schedules_trigger_change", args=[obj.trigger_id])
        return format_html('<a href="{}">{}</a>', url, obj.trigger.name)

    @admin.display(description="skip reason")
    def skip_reason_text(self, obj: Execution) -> SafeString | str:
        """The reason in words; an overlap skip links to the run that was still going
        (`selectors.blocking_run`)."""
        if not obj.skip_reason:
            return "—"
        words = obj.get_skip_reason_display()
        blocker = selectors.blocking_run(obj)
        if blocker is None:
            return words
        return format_html("{}: {}", words, execution_link(blocker))

    @admin.display(description="error")
    def error_text(self, obj: Execution) -> SafeString | str:
        return format_html('<pre class="sched-error">{}</pre>', obj.error) if obj.error else "—"

    @admin.display(description="re-run of")
    def rerun_of_link(self, obj: Execution) -> SafeString | str:
        return execution_link(obj.rerun_of) if obj.rerun_of else "—"

    @admin.display(description="re-runs")
    def reruns_links(self, obj: Execution) -> SafeString | str:
        reruns = list(obj.reruns.order_by("created_at"))
        if not reruns:
            return "—"
        return format_html_join(", ", "{}", ((execution_link(r),) for r in reruns))

    @admin.display(description="input")
    def input_json(self, obj: Execution) -> SafeString:
        return _json_block(obj.input)

    @admin.display(description="result")
    def result_json(self, obj: Execution) -> SafeString | str:
        return "—" if obj.result is None else _json_block(obj.result)


def _json_block(value: Any) -> SafeString:
    return format_html('<pre class="sched-json">{}</pre>', json.dumps(value, indent=2, sort_keys=True))


class CreditBudgetForm(forms.ModelForm):
    reset = forms.BooleanField(
        required=False, help_text="Count usage afresh from now (credits used back to 0), as on a new plan."
    )

    class Meta:
        model = CreditBudget
        fields = ("owner", "credits", "period", "note")

    def clean(self) -> dict[str, Any]:
        """The service's checks, so the admin says what the API says (field by field)."""
        cleaned = super().clean() or {}
        if "credits" in cleaned:
            try:
                credit_services.credit_budget_check(
                    credits=cleaned["credits"], period=cleaned.get("period", ""), note=cleaned.get("note", "")
                )
            except ValidationError as exc:
                for field, messages in exc.message_dict.items():
                    self.add_error(field if field in self.fields else None, messages)
        return cleaned


@admin.register(CreditBudget)
class CreditBudgetAdmin(admin.ModelAdmin):
    """Per-user credit allowances; saved through `services.credit_budget_set`. A run due while its owner has
    no credit left is recorded skipped (`credits_exhausted`): the list shows who is there."""

    form = CreditBudgetForm
    list_display = ("owner", "allowance", "used", "left", "standing", "since_text", "note")
    search_fields = ("owner__username",)
    autocomplete_fields = ("owner",)
    list_select_related = ("owner",)
    actions = ("reset_usage",)

    def get_fields(self, request: HttpRequest, obj: CreditBudget | None = None) -> Any:
        fields = ["owner", "credits", "period", "note", "reset"]
        return [*fields, "used", "left", "since_text"] if obj is not None else fields

    def get_readonly_fields(self, request: HttpRequest, obj: CreditBudget | None = None) -> tuple[str, ...]:
        return ("owner", "used", "left", "since_text") if obj is not None else ()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        """Each budget with its owner's credits used, in the page's own query (`budgets_with_usage`)."""
        return selectors.budgets_with_usage(super().get_queryset(request), now=clock.now())

    @staticmethod
    def _standing(obj: CreditBudget) -> selectors.CreditStanding | None:
        if not hasattr(obj, "used"):  # a row not read through get_queryset (just saved)
            return None
        return selectors.standing(obj, now=clock.now())

    @admin.display(description="allowance", ordering="credits")
    def allowance(self, obj: CreditBudget) -> str:
        per = f" per {obj.period}" if obj.period else " (no period)"
        return f"{amount_text(obj.credits)}{per}"

    @admin.display(description="used")
    def used(self, obj: CreditBudget) -> str:
        standing = self._standing(obj)
        return "—" if standing is None else amount_text(standing.used)

    @admin.display(description="left")
    def left(self, obj: CreditBudget) -> str:
        standing = self._standing(obj)
        return "—" if standing is None else amount_text(standing.left)

    @admin.display(description="standing")
    def standing(self, obj: CreditBudget) -> SafeString | str:
        standing = self._standing(obj)
        if standing is None:
            return "—"
        if standing.exhausted:
            return badge("skipped", "used up", title=SkipReason.CREDITS_EXHAUSTED.label)
        return badge("succeeded", "has credit")

    @admin.display(description="counted since")
    def since_text(self, obj: CreditBudget) -> SafeString | str:
        standing = self._standing(obj)
        return "—" if standing is None else instant(standing.since)

    def save_model(self, request: HttpRequest, obj: CreditBudget, form: Any, change: bool) -> None:
        saved = credit_services.credit_budget_set(
            owner=obj.owner,
            credits=obj.credits,
            period=obj.period,
            note=obj.note,
            reset=bool(form.cleaned_data.get("reset")),
        )
        obj.counted_from = saved.counted_from

    def delete_model(self, request: HttpRequest, obj: CreditBudget) -> None:
        credit_services.credit_budget_delete(owner=obj.owner)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for budget in queryset.select_related("owner"):
            credit_services.credit_budget_delete(owner=budget.owner)

    @admin.action(description="Reset credits used (count from now)")
    def reset_usage(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        for budget in queryset.select_related("owner"):
            credit_services.credit_budget_set(
                owner=budget.owner, credits=budget.credits, period=budget.period, note=budget.note, reset=True
            )
            count += 1
        self.message_user(request, f"Reset the credits used of {count} budget{'s' if count != 1 else ''}.")
