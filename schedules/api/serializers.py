"""Trigger serializers. They parse JSON types and describe the fields for the schema; every rule (ranges,
choices, the cron grammar, zones, caps) belongs to the domain (`schedules.validation`, `schedules.timing`),
so the API and the admin give the same message for the same mistake.

Read-only fields (owner, status, counters, next run) are accepted and silently ignored on input, so a
client can send back what it read; a key that is no field at all is a 400, because a typo such as
`cron_expresion` silently ignored would leave the schedule the client thinks it changed untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from schedules import timing, validation
from schedules.models import Trigger
from schedules.vocabulary import COUNTER_HELP
from toolkit.api import InstantField, InstantModelSerializer, LocalInstantField, help_of

if TYPE_CHECKING:
    pass

# --- Fields whose bounds the schema shows and the domain enforces ----------------------------------------


class _DomainChecked:
    """Keeps its bounds as validators so the OpenAPI schema documents them (maxLength, minimum, …), but does
    not run them: the domain checks the same bounds and its message is the one users see everywhere."""

    def run_validators(self, value: Any) -> None:
        return None


class DomainText(_DomainChecked, serializers.CharField):
    pass


class DomainInteger(_DomainChecked, serializers.IntegerField):
    pass


class DomainChoice(serializers.ChoiceField):
    """Documents the enum; the domain says what is allowed (`'x' is not one of: skip, allow, …`)."""

    def to_internal_value(self, data: Any) -> Any:
        return data


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.JSONField):
    """Any JSON on input (the domain insists on an object and names the field); documented as an object.
    The depth is checked first: DRF's own JSONField re-encodes the value, recursively."""

    def to_internal_value(self, data: Any) -> Any:
        name = self.field_name or "value"
        try:
            validation.check_json_shape(name, data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict[name]) from None
        return super().to_internal_value(data)


def _help(name: str) -> str:
    return help_of(Trigger, name)


def _text(name: str, **kwargs: Any) -> DomainText:
    return DomainText(
        max_length=validation.TEXT_LIMITS.get(name),
        allow_blank=True,
        trim_whitespace=False,
        help_text=_help(name),
        **kwargs,
    )


def _integer(name: str, **kwargs: Any) -> DomainInteger:
    low, high = validation.INT_LIMITS[name]
    return DomainInteger(min_value=low, max_value=high, required=False, help_text=_help(name), **kwargs)


def _choice(name: str) -> DomainChoice:
    return DomainChoice(choices=validation.CHOICES[name].choices, required=False, help_text=_help(name))


def _instant(name: str) -> InstantField:
    return InstantField(required=False, allow_null=True, help_text=_help(name))


def spec_of(trigger: Trigger) -> timing.ScheduleSpec:
    return validation.spec_of(trigger)


@extend_schema_field({"type": "array", "items": {"type": "object", "additionalProperties": True}})
class RuleListField(JSONObjectField):
    """Windows or blackouts: any JSON on input (`schedules.rules` reads them and names what is wrong), the
    depth checked as for any JSON field, the value kept as it came."""

    def to_internal_value(self, data: Any) -> Any:
        super().to_internal_value(data)
        return data


@extend_schema_field({"type": "integer", "nullable": True})
class CalendarIdField(serializers.Field):
    """A calendar id; the domain says whether it exists and may be used (`validation.calendar_usable_by`)."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


# --- Triggers ---------------------------------------------------------------------------------------------


class TriggerSerializer(InstantModelSerializer):
    """A schedule that starts a workflow. Owner, status, counters and next run are read-only: sent values
    are ignored."""

    # `create`/`update` are never called: the views hand `validated_data` to `schedules.services`.

    name = _text("name")
    description = _text("description", required=False)
    workflow_id = _text("workflow_id")
    target = _text("target", required=False)
    input = JSONObjectField(required=False, help_text=_help("input"))
    metadata = JSONObjectField(required=False, help_text=_help("metadata"))
    kind = _choice("kind")
    cron_expression = _text("cron_expression", required=False)
    interval_seconds = _integer("interval_seconds", allow_null=True)
    anchor_at = _instant("anchor_at")
    run_at = _instant("run_at")
    timezone = DomainText(
        max_length=64, required=False, trim_whitespace=False, allow_blank=True, help_text=_help("timezone")
    )
    start_at = _instant("start_at")
    end_at = _instant("end_at")
    max_runs = _integer("max_runs", allow_null=True)
    jitter_seconds = _integer("jitter_seconds")
    overlap_policy = _choice("overlap_policy")
    catchup_policy = _choice("catchup_policy")
    catchup_window_seconds = _integer("catchup_window_seconds")
    misfire_grace_seconds = _integer("misfire_grace_seconds")
    max_attempts = _integer("max_attempts")
    backoff_seconds = _integer("backoff_seconds")
    timeout_seconds = _integer("timeout_seconds")
    priority = _choice("priority")
    max_concurrent = _integer("max_concurrent")
    auto_pause_after_failures = _integer("auto_pause_after_failures", allow_null=True)
    keep_succeeded = _integer("keep_succeeded", allow_null=True)
    keep_failed = _integer("keep_failed", allow_null=True)
    windows = RuleListField(required=False, help_text=_help("windows"))
    blackouts = RuleListField(required=False, help_text=_help("blackouts"))
    window_action = _choice("window_action")
    excluded_calendar = CalendarIdField(
        source="excluded_calendar_id", required=False, allow_null=True, help_text=_help("excluded_calendar")
    )
    delay_ms = serializers.IntegerField(
        write_only=True,
        required=False,
        min_value=1,
        help_text="Once kind: run this many milliseconds from now (instead of `run_at`).",
    )
    paused = serializers.BooleanField(
        write_only=True,
        required=False,
        help_text="Create only: register the trigger paused. Afterwards use the pause and resume actions.",
    )

    owner = serializers.CharField(source="owner.get_username", read_only=True, help_text=_help("owner"))
    schedule_description = serializers.SerializerMethodField(
        help_text="The schedule in words, naming its zone."
    )

    class Meta:
        model = Trigger
        fields = (
            "id", "name", "description", "workflow_id", "target", "input", "metadata",
            "kind", "cron_expression", "interval_seconds", "anchor_at", "run_at", "timezone", "start_at",
            "end_at", "max_runs", "jitter_seconds", "delay_ms",
            "overlap_policy", "catchup_policy", "catchup_window_seconds", "misfire_grace_seconds",
            "max_attempts", "backoff_seconds", "timeout_seconds", "priority", "max_concurrent",
            "auto_pause_after_failures", "keep_succeeded", "keep_failed", "windows", "blackouts",
            "window_action", "excluded_calendar", "paused",
            "owner", "status", "paused_at", "paused_reason", "resumed_at", "schedule_description",
            "next_run_at", "last_slot", "last_run_at", "last_status", "last_error",
            "run_count", "failure_count", "consecutive_failures", "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = (
            "id", "status", "paused_reason", "last_status", "last_error", "run_count", "failure_count",
            "consecutive_failures", "last_slot", "last_run_at", "next_run_at", "paused_at", "resumed_at",
            "created_at", "updated_at",
        )  # fmt: skip
        extra_kwargs = {
            name: {"help_text": COUNTER_HELP[name]}
            for name in ("run_count", "failure_count", "consecutive_failures")
        }

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({unknown[0]: ["is not a field that can be set"]})
        values = super().to_internal_value(data)
        if "excluded_calendar_id" in values:  # read as the id (no query per listed trigger), set by it
            values["excluded_calendar"] = values.pop("excluded_calendar_id")
        return values

    def get_schedule_description(self, trigger: Trigger) -> str:
        try:
            return timing.describe(spec_of(trigger))
        except timing.TimingError:  # a row saved before a rule tightened still lists
            return ""


# --- Previews and presets ---------------------------------------------------------------------------------


class FireTimeSerializer(serializers.Serializer):
    utc = InstantField(source="slot", help_text="The slot in UTC: the identity of the run.")
    local = LocalInstantField(help_text="The same instant on the wall clock of the schedule's zone.")
    note = serializers.CharField(
        allow_null=True, help_text="Daylight-saving note (a skipped or repeated hour), or null."
    )
    decision = serializers.ChoiceField(
        choices=["run", "deferred", "skipped"],
        help_text="What the trigger's windows, blackouts and calendar do with the slot.",
    )
    reason = serializers.CharField(
        allow_null=True,
        help_text="The skip reason the run would record (outside_window, blackout, calendar).",
    )
    not_before = InstantField(allow_null=True, help_text="A deferred slot starts at this instant, or null.")
    rule = serializers.CharField(help_text="Which rule decided, in words; empty when the slot runs.")


class SchedulePreviewSerializer(serializers.Serializer):
    valid = serializers.BooleanField(help_text="Always true: an invalid schedule is a 400 naming the field.")
    description = serializers.CharField(help_text="The schedule in words, naming its zone.")
    timezone = serializers.CharField(help_text="The IANA zone the schedule is read in.")
    next_runs = FireTimeSerializer(many=True, help_text="The next fire times, oldest first.")
    excluded_days = serializers.ListField(
        child=serializers.DateField(),
        required=False,
        help_text="Dates the trigger's calendar excludes, from the start to the last fire time (local).",
    )


class PreviewQuerySerializer(serializers.Serializer):
    """`?count=&start=` of a saved trigger's preview."""

    count = serializers.IntegerField(
        required=False, default=10, min_value=1, max_value=100, help_text="How many fire times (1-100)."
    )
    start = InstantField(required=False, help_text="List fire times after this instant (default: now).")


class CronPreviewSerializer(PreviewQuerySerializer):
    """What a schedule form sends as the user types."""

    expression = serializers.CharField(
        max_length=validation.TEXT_LIMITS["cron_expression"],
        trim_whitespace=False,
        help_text="5 fields, or 6 with seconds first; names, ranges, steps, L, #, and @macros.",
    )
    timezone = serializers.CharField(
        required=False, default="UTC", max_length=64, help_text="IANA zone name (default UTC)."
    )


class PresetSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="Stable identifier of the template.")
    # The metaclass moves declared fields into _declared_fields, so this does not shadow Field.label.
    label = serializers.CharField(help_text="Short name to show in a picker.")  # type: ignore[assignment]
    expression = serializers.CharField(help_text="The cron expression.")
    description = serializers.CharField(help_text="The expression in words.")


class PauseSerializer(serializers.Serializer):
    reason = DomainText(
        required=False, default="", allow_blank=True, max_length=500, help_text="Why it was paused."
    )


class TemplateFromTriggerSerializer(serializers.Serializer):
    """`POST /triggers/{id}/save-as-template/`."""

    name = DomainText(
        max_length=200,
        allow_blank=True,
        trim_whitespace=False,
        help_text="The template's name, unique among yours.",
    )
    description = DomainText(required=False, allow_blank=True, help_text="What it is for.")
