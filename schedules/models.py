"""The Trigger: the source of truth for when a workflow starts. RedBeat entries are derived from these rows
and can always be rebuilt from them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from schedules.querysets import TriggerQuerySet
from schedules.vocabulary import (
    CalendarSource,
    CatchupPolicy,
    OverlapPolicy,
    Priority,
    TriggerKind,
    TriggerStatus,
    WindowAction,
)

__all__ = [
    "Calendar", "CalendarSource", "CatchupPolicy", "OverlapPolicy", "OwnerLimits", "Priority", "Trigger",
    "TriggerKind", "TriggerStatus", "TriggerTemplate", "WindowAction",
]  # fmt: skip


def _default(name: str):
    """Operator-tunable defaults (settings.SCHEDULER_DEFAULTS), read when a row is created, not at import."""

    def default():
        return settings.SCHEDULER_DEFAULTS[name]

    default.__name__ = f"default_{name}"
    default.__qualname__ = default.__name__
    return default


default_overlap_policy = _default("overlap_policy")
default_catchup_policy = _default("catchup_policy")
default_catchup_window_seconds = _default("catchup_window_seconds")
default_misfire_grace_seconds = _default("misfire_grace_seconds")
default_max_attempts = _default("max_attempts")
default_backoff_seconds = _default("backoff_seconds")
default_timeout_seconds = _default("timeout_seconds")
default_priority = _default("priority")


#: Fields the fire and launch paths keep current; not copied into the audit trail (see `Trigger.history`).
UNAUDITED_FIELDS = (
    "run_count", "failure_count", "consecutive_failures", "last_slot", "last_run_at", "last_status",
    "last_error", "next_run_at", "updated_at",
)  # fmt: skip


class Trigger(models.Model):
    id = models.UUIDField(
        primary_key=True, default=uuid.uuid4, editable=False, help_text="Stable identifier."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="triggers",
        db_index=False,  # trigger_owner_status (owner, status, id) leads with it; one index fewer per fire
        help_text="Who owns the trigger; only they (and staff) see it and its runs.",
    )
    name = models.CharField(max_length=200, help_text="A name people recognise in lists.")
    description = models.TextField(blank=True, default="", help_text="What this schedule is for.")

    # What to run
    workflow_id = models.CharField(max_length=200, help_text="Opaque reference to the workflow to start.")
    target = models.CharField(
        max_length=100, default="default", help_text="Name of an operator-configured launch target."
    )
    input = models.JSONField(
        default=dict, blank=True, help_text="JSON object passed to each run as its input."
    )
    metadata = models.JSONField(default=dict, blank=True, help_text="JSON object passed along with each run.")

    # When
    kind = models.CharField(
        max_length=16,
        choices=TriggerKind.choices,
        default=TriggerKind.CRON,
        help_text="How slots are computed.",
    )
    cron_expression = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="5 fields, or 6 with seconds first; evaluated in the trigger's time zone.",
    )
    interval_seconds = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Interval kind: seconds between slots (elapsed time)."
    )
    anchor_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Interval kind: slots fall at anchor + k·interval, so they never drift.",
    )
    run_at = models.DateTimeField(null=True, blank=True, help_text="Once kind: the single instant to run.")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA zone the schedule is read in.")
    start_at = models.DateTimeField(null=True, blank=True, help_text="No slot before this instant.")
    end_at = models.DateTimeField(null=True, blank=True, help_text="No slot after this instant.")
    max_runs = models.PositiveIntegerField(
        null=True, blank=True, help_text="Complete the trigger after this many runs."
    )
    jitter_seconds = models.PositiveIntegerField(
        default=0,
        help_text="Deterministic delay in [0, jitter] per slot; below the smallest gap between slots.",
    )

    # State
    status = models.CharField(
        max_length=16,
        choices=TriggerStatus.choices,
        default=TriggerStatus.ACTIVE,
        help_text="Changed by pause/resume and by the schedule ending, never directly.",
    )
    paused_at = models.DateTimeField(null=True, blank=True, help_text="When the trigger was paused.")
    paused_reason = models.CharField(max_length=500, blank=True, default="", help_text="Why it was paused.")
    resumed_at = models.DateTimeField(
        null=True, blank=True, help_text="Last resume; catch-up never replays slots from before it."
    )
    schedule_changed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Last schedule edit; catch-up never replays the old schedule's slots.",
    )
    deleted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Deleted triggers leave lists and beat, but their execution history stays visible.",
    )

    # Policies
    overlap_policy = models.CharField(
        max_length=16,
        choices=OverlapPolicy.choices,
        default=default_overlap_policy,
        help_text="What happens when a slot comes due while an earlier run is still running.",
    )
    catchup_policy = models.CharField(
        max_length=16,
        choices=CatchupPolicy.choices,
        default=default_catchup_policy,
        help_text="What happens to slots missed while the fleet was down.",
    )
    catchup_window_seconds = models.PositiveIntegerField(
        default=default_catchup_window_seconds, help_text="Missed slots older than this are never run."
    )
    misfire_grace_seconds = models.PositiveIntegerField(
        default=default_misfire_grace_seconds,
        help_text="How late a slot may start and still count as on time.",
    )
    max_concurrent = models.PositiveIntegerField(
        default=1,
        help_text=(
            "How many of its runs may go at once before the overlap policy applies (skip, queue, "
            "buffer_one, replace); allow ignores it."
        ),
    )
    auto_pause_after_failures = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "Pause the trigger when this many runs in a row have failed or timed out (the reason becomes "
            "its pause note); empty never pauses it."
        ),
    )

    # Execution windows, blackouts and a calendar of excluded dates (`schedules.rules`, in the trigger's zone)
    windows = models.JSONField(
        default=list,
        blank=True,
        help_text=(
            'Local spans a slot may run in, e.g. [{"days": "mon-fri", "start": "09:00", "end": "17:00"}]; '
            "empty = any time."
        ),
    )
    blackouts = models.JSONField(
        default=list,
        blank=True,
        help_text='No run between two instants, e.g. [{"start": "…Z", "end": "…Z", "note": "db upgrade"}].',
    )
    window_action = models.CharField(
        max_length=8,
        choices=WindowAction.choices,
        default=WindowAction.SKIP,
        help_text="A slot outside the windows or in a blackout: skipped, or deferred to the opening.",
    )
    excluded_calendar = models.ForeignKey(
        "schedules.Calendar",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="triggers",
        db_index=False,  # partial index in Meta: few triggers exclude a calendar
        help_text="A slot on one of this calendar's dates (in the trigger's zone) is skipped.",
    )

    # History limits, beside the operator's age retention (SCHEDULER_EXECUTION_RETENTION)
    keep_succeeded = models.PositiveIntegerField(
        null=True, blank=True, help_text="Keep only this many of the latest succeeded runs; empty keeps all."
    )
    keep_failed = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Keep only this many of the latest failed or timed-out runs; empty keeps all.",
    )

    # Launch settings
    max_attempts = models.PositiveSmallIntegerField(
        default=default_max_attempts, help_text="Launch attempts before a run is marked failed."
    )
    backoff_seconds = models.PositiveIntegerField(
        default=default_backoff_seconds,
        help_text="First retry delay; doubles each attempt, with full jitter.",
    )
    timeout_seconds = models.PositiveIntegerField(
        default=default_timeout_seconds, help_text="A run still going after this long is marked timed out."
    )
    priority = models.CharField(
        max_length=8,
        choices=Priority.choices,
        default=default_priority,
        help_text="Queue priority of this trigger's launches.",
    )

    # Counters, kept by the execution side in the same transaction as each execution
    run_count = models.PositiveIntegerField(default=0, help_text="Runs started (skips not counted).")
    failure_count = models.PositiveIntegerField(default=0, help_text="Runs that ended in failure.")
    consecutive_failures = models.PositiveIntegerField(
        default=0, help_text="Failures since the last success."
    )
    last_slot = models.DateTimeField(
        null=True, blank=True, help_text="The latest slot recorded for this trigger."
    )
    last_run_at = models.DateTimeField(null=True, blank=True, help_text="When the latest run started.")
    last_status = models.CharField(
        max_length=16, blank=True, default="", help_text="Status of the latest run."
    )
    last_error = models.TextField(blank=True, default="", help_text="Error of the latest failed run.")
    next_run_at = models.DateTimeField(
        # Indexed with what it is asked with (trigger_next_run on live rows, trigger_status_next), not alone:
        # each index is one more entry every fire writes.
        null=True,
        blank=True,
        help_text="Next slot (UTC); empty when paused or completed.",
    )

    created_at = models.DateTimeField(auto_now_add=True, help_text="When the trigger was registered.")
    updated_at = models.DateTimeField(auto_now=True, help_text="Last change to the row.")

    objects = TriggerQuerySet.as_manager()
    #: The audit trail (django-simple-history): one row per change an operator or user makes through
    #: `schedules.services` — register, edit, pause, resume, delete, restore — and per action that changes
    #: no field (run now, re-run, backfill: `trigger_record_action`), with the actor, the time and a reason.
    #: What the fire and launch paths write (run counters, last slot and status, next run; in bulk, with no
    #: signal) is deliberately not audited, and those fields are not copied: the hot path stays one UPDATE,
    #: and the executions are their record.
    history = HistoricalRecords(excluded_fields=list(UNAUDITED_FIELDS), cascade_delete_history=False)

    class Meta:
        ordering = ["-created_at"]
        # One (scope, field, id) index per ordering the API and admin offer, on live rows only: a keyset
        # page seeks into it in either direction, so a list costs the same at row 50 and at row 500,000.
        # Scope is the owner (what users list) or none (staff and the admin). Each index costs an insert
        # per fire, which already rewrites the row (next_run_at is indexed, so no update here is HOT).
        # tests/integration/test_list_plans.py runs EXPLAIN on every filter and ordering against them.
        indexes = [
            models.Index(fields=["owner", "status", "id"], name="trigger_owner_status"),
            models.Index(fields=["status", "next_run_at"], name="trigger_status_next"),
            models.Index(fields=["updated_at"], name="trigger_updated"),  # the beat's changed-since repair
            models.Index(
                fields=["excluded_calendar"],
                name="trigger_excluded_calendar",
                condition=Q(excluded_calendar__isnull=False),
            ),
            *(
                models.Index(
                    fields=[*scope, column, "id"],
                    name=f"trigger_{'owner_' if scope else ''}{column.replace('_at', '')}"[:30],
                    condition=Q(deleted_at__isnull=True),
                )
                for scope, columns in (
                    (
                        ["owner"],
                        ["created_at", "updated_at", "next_run_at", "last_run_at", "name", "run_count"],
                    ),
                    ([], ["created_at", "next_run_at", "name"]),
                )
                for column in columns
            ),
            models.Index(  # a status filter in the default order: an index range, not a scan
                fields=["owner", "status", "created_at", "id"],
                name="trigger_owner_status_created",
                condition=Q(deleted_at__isnull=True),
            ),
            models.Index(
                fields=["owner", "workflow_id", "created_at"],
                name="trigger_owner_workflow",
                condition=Q(deleted_at__isnull=True),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                name="trigger_kind_fields",
                condition=(
                    (Q(kind="cron") & ~Q(cron_expression=""))
                    | (Q(kind="interval") & Q(interval_seconds__gte=1))
                    | (Q(kind="once") & Q(run_at__isnull=False))
                ),
            ),
            models.CheckConstraint(
                name="trigger_bounds_ordered",
                condition=Q(start_at__isnull=True)
                | Q(end_at__isnull=True)
                | Q(end_at__gt=models.F("start_at")),
            ),
            models.CheckConstraint(
                name="trigger_max_runs_positive", condition=Q(max_runs__isnull=True) | Q(max_runs__gte=1)
            ),
            models.CheckConstraint(name="trigger_max_attempts_positive", condition=Q(max_attempts__gte=1)),
            models.CheckConstraint(
                name="trigger_max_concurrent_positive", condition=Q(max_concurrent__gte=1)
            ),
            models.CheckConstraint(
                name="trigger_keep_positive",
                condition=(Q(keep_succeeded__isnull=True) | Q(keep_succeeded__gte=1))
                & (Q(keep_failed__isnull=True) | Q(keep_failed__gte=1)),
            ),
            models.CheckConstraint(
                name="trigger_auto_pause_positive",
                condition=Q(auto_pause_after_failures__isnull=True) | Q(auto_pause_after_failures__gte=1),
            ),
            models.CheckConstraint(name="trigger_timeout_positive", condition=Q(timeout_seconds__gte=1)),
            models.CheckConstraint(
                name="trigger_status_valid", condition=Q(status__in=[s.value for s in TriggerStatus])
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def runs_so_far(self) -> int:
        """The runs that count against the schedule's limit (`max_runs`, or a one-off's single run).

        A one-off's single run belongs to its `run_at`: once that slot is decided (`last_slot` reached it)
        the trigger is done, but moving `run_at` past it arms the one-off again. Counting every run it ever
        made instead would leave an edited one-off completed for good, with nothing telling the user why."""
        if self.kind == TriggerKind.ONCE and self.run_at is not None:
            return int(self.last_slot is not None and self.last_slot >= self.run_at)
        return self.run_count


class OwnerLimits(models.Model):
    """An operator's caps for one user, where the environment's defaults do not fit (a team that runs many
    workflows, a user who must be held to a few). An empty field means the default
    (`SCHEDULER_MAX_TRIGGERS_PER_OWNER`, `SCHEDULER_MAX_CONCURRENT_PER_OWNER`,
    `SCHEDULER_MAX_CONCURRENT_PER_WORKFLOW`); `schedules.selectors.limits_of` resolves them."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="scheduler_limits",
        help_text="The user these limits apply to.",
    )
    max_triggers = models.PositiveIntegerField(
        null=True, blank=True, help_text="Live triggers this user may have; empty = the default."
    )
    max_concurrent_runs = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Runs of this user's triggers going at once (0 = unlimited); empty = the default.",
    )
    max_concurrent_per_workflow = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "Runs of one workflow (this user's triggers with the same workflow id) going at once "
            "(0 = unlimited); empty = the default."
        ),
    )
    note = models.CharField(max_length=500, blank=True, default="", help_text="Why these limits were set.")
    updated_at = models.DateTimeField(auto_now=True, help_text="Last change.")

    class Meta:
        verbose_name = "owner limits"
        verbose_name_plural = "owner limits"

    def __str__(self) -> str:
        return f"limits of {self.owner}"


class CalendarQuerySet(models.QuerySet):
    def visible_to(self, user) -> CalendarQuerySet:
        """Staff see every calendar; a user sees their own and the shared ones (another's private calendar
        is a 404, as for triggers)."""
        if getattr(user, "is_staff", False):
            return self
        return self.filter(Q(owner=user) | Q(shared=True))


class Calendar(models.Model):
    """A named set of dates a trigger can exclude (holidays, closures). Its owner edits it; shared ones are
    readable by every user (staff see all). Stored as ISO dates on the row: a trigger's fire batch reads
    the calendars of its triggers in one query."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="scheduler_calendars",
        help_text="Who owns the calendar; only they (and staff) change it.",
    )
    name = models.CharField(max_length=200, help_text="A name people recognise, unique per owner.")
    description = models.TextField(blank=True, default="", help_text="What the dates are.")
    shared = models.BooleanField(
        default=False,
        help_text="Every user may see it and exclude it from their triggers (read-only); set by staff.",
    )
    dates = models.JSONField(default=list, blank=True, help_text='Excluded dates, ["2026-12-25", …].')
    source = models.CharField(
        max_length=16,
        choices=CalendarSource.choices,
        default=CalendarSource.MANUAL,
        help_text="Where the dates came from.",
    )
    country = models.CharField(
        max_length=8, blank=True, default="", help_text="Holidays source: ISO country code (e.g. DE)."
    )
    subdivision = models.CharField(
        max_length=16, blank=True, default="", help_text="Holidays source: state or province (e.g. BY)."
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the calendar was made.")
    updated_at = models.DateTimeField(auto_now=True, help_text="Last change.")

    objects = CalendarQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="calendar_owner_name")]
        indexes = [models.Index(fields=["shared", "name"], name="calendar_shared_name")]

    def __str__(self) -> str:
        return self.name


class TemplateQuerySet(models.QuerySet):
    def visible_to(self, user) -> TemplateQuerySet:
        return self if getattr(user, "is_staff", False) else self.filter(owner=user)


class TriggerTemplate(models.Model):
    """A user's saved trigger settings to create triggers from (the presets stay the read-only defaults).
    `definition` holds the writable fields of a trigger, as the API takes them."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="trigger_templates",
        help_text="Who owns the template; only they (and staff) see it.",
    )
    name = models.CharField(max_length=200, help_text="A name people recognise, unique per owner.")
    description = models.TextField(blank=True, default="", help_text="What triggers made from it are for.")
    definition = models.JSONField(
        default=dict,
        blank=True,
        help_text="The trigger's fields (as the API takes them) a new trigger starts from.",
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the template was saved.")
    updated_at = models.DateTimeField(auto_now=True, help_text="Last change.")

    objects = TemplateQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="template_owner_name")]

    def __str__(self) -> str:
        return self.name
