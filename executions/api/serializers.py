"""Execution serializers: read-only views of runs and their attempts, the run-now/cancel request bodies, and
the statistics. Nothing here changes state; the views call `executions.services`."""

from __future__ import annotations

from rest_framework import serializers

from executions.models import Attempt, Execution, SkipReason
from schedules.api.serializers import JSONObjectField
from toolkit.api import InstantField, InstantModelSerializer, help_of


def _help(name: str) -> str:
    return help_of(Execution, name)


class AttemptSerializer(InstantModelSerializer):
    class Meta:
        model = Attempt
        fields = (
            "number", "started_at", "finished_at", "outcome", "http_status", "exception", "error",
            "retry_delay_seconds",
        )  # fmt: skip
        read_only_fields = fields


class ExecutionSerializer(InstantModelSerializer):
    """One run as lists show it."""

    workflow_id = serializers.CharField(source="trigger.workflow_id", read_only=True)
    trigger_name = serializers.CharField(source="trigger.name", read_only=True)
    attempt_count = serializers.IntegerField(source="attempts", read_only=True, help_text=_help("attempts"))
    requested_by = serializers.CharField(
        source="requested_by.get_username", read_only=True, allow_null=True, default=None
    )
    skip_reason = serializers.ChoiceField(
        choices=SkipReason.choices, allow_blank=True, read_only=True, help_text=_help("skip_reason")
    )

    class Meta:
        model = Execution
        fields: tuple[str, ...] = (
            "id", "trigger", "trigger_name", "workflow_id", "origin", "status", "skip_reason", "slot",
            "fire_at", "not_before", "priority", "input", "result", "run_id", "error", "attempt_count",
            "launched_by", "requested_by", "requested_at", "idempotency_key", "rerun_of", "queued_at",
            "started_at", "finished_at", "duration_ms", "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields: tuple[str, ...] = fields


class ExecutionDetailSerializer(ExecutionSerializer):
    """One run with every launch attempt, oldest first."""

    attempts = AttemptSerializer(source="attempt_set", many=True, read_only=True)

    class Meta(ExecutionSerializer.Meta):
        fields: tuple[str, ...] = (*ExecutionSerializer.Meta.fields, "attempts")
        read_only_fields: tuple[str, ...] = fields


class RunNowSerializer(serializers.Serializer):
    input = JSONObjectField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Input for this run only (a JSON object); the trigger's own input when omitted.",
    )


class CancelSerializer(serializers.Serializer):
    # Checked here (length, no NUL): the cancel service records the text as given.
    reason = serializers.CharField(
        required=False, default="cancelled", max_length=500, help_text="Recorded as the run's error."
    )


class StatsSerializer(serializers.Serializer):
    """`executions.stats.trigger_stats` in snake_case."""

    total = serializers.IntegerField(help_text="Executions recorded (skips included).")
    successful = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Failed and timed out.")
    skipped = serializers.IntegerField()
    success_rate = serializers.FloatField(
        source="successRate", allow_null=True, help_text="Percent of finished runs that succeeded."
    )
    avg_duration_ms = serializers.IntegerField(source="avgDurationMs", allow_null=True)
    p50_duration_ms = serializers.IntegerField(source="p50DurationMs", allow_null=True)
    p95_duration_ms = serializers.IntegerField(source="p95DurationMs", allow_null=True)
    last_run_at = InstantField(source="lastRunAt", allow_null=True)
    next_run_at = InstantField(source="nextRunAt", allow_null=True)
