"""Execution serializers: read-only views of runs and their attempts, the run-now/cancel request bodies, and
the statistics. Nothing here changes state; the views call `executions.services`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
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


class UsageSerializer(serializers.Serializer):
    """What a run reported using (`executions.usage`); a figure it did not report is null."""

    credits = serializers.FloatField(allow_null=True, help_text=_help("credits_used"))
    input_tokens = serializers.IntegerField(allow_null=True, help_text=_help("input_tokens"))
    output_tokens = serializers.IntegerField(allow_null=True, help_text=_help("output_tokens"))
    cost = serializers.FloatField(allow_null=True, help_text=_help("cost"))


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
    usage = serializers.SerializerMethodField(help_text="What the run reported using; null when nothing.")

    class Meta:
        model = Execution
        fields: tuple[str, ...] = (
            "id", "trigger", "trigger_name", "workflow_id", "origin", "status", "skip_reason", "slot",
            "fire_at", "not_before", "priority", "input", "result", "run_id", "error", "attempt_count",
            "launched_by", "requested_by", "requested_at", "idempotency_key", "rerun_of", "queued_at",
            "started_at", "finished_at", "duration_ms", "usage", "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields: tuple[str, ...] = fields

    @extend_schema_field(UsageSerializer(allow_null=True))
    def get_usage(self, execution: Execution) -> dict[str, Any] | None:
        usage = execution.usage
        return None if usage is None else usage.as_json()


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


class BackfillSerializer(serializers.Serializer):
    """`POST /triggers/{id}/backfill/`: which past range to run. The domain checks the range itself (in
    the past, not reversed, not more slots than the cap) so the command and the admin say the same."""

    start = InstantField(help_text="First instant of the range (inclusive), with an offset.")
    end = InstantField(help_text="Last instant of the range (inclusive), not in the future.")
    dry_run = serializers.BooleanField(
        required=False,
        default=False,
        help_text="List the slots and which already have a run; change nothing.",
    )
    spread_seconds = serializers.IntegerField(
        required=False,
        default=0,
        min_value=0,
        help_text="Space the new runs' launches evenly over this many seconds instead of all at once.",
    )


class BackfillSlotSerializer(serializers.Serializer):
    slot = serializers.DateTimeField(help_text="The slot (UTC).")
    outcome = serializers.ChoiceField(
        choices=["recorded", "would_run", "created", "refused"],
        help_text="recorded: it already had a run, left alone; would_run: (dry run) it has none; created: "
        "this backfill recorded it; refused: the trigger may not run it any more (max_runs reached).",
    )
    execution = serializers.UUIDField(allow_null=True, help_text="Its execution, when it has one.")
    status = serializers.CharField(allow_null=True, help_text="That execution's status.")
    skip_reason = serializers.CharField(allow_null=True, help_text="Why it was skipped, if it was.")


class BackfillCountsSerializer(serializers.Serializer):
    slots = serializers.IntegerField()
    recorded = serializers.IntegerField()
    would_run = serializers.IntegerField()
    created = serializers.IntegerField()
    refused = serializers.IntegerField()


class BackfillReportSerializer(serializers.Serializer):
    """What a backfill did (or, in a dry run, would do): for the schema; the body is the report's JSON."""

    trigger = serializers.UUIDField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    dry_run = serializers.BooleanField()
    spread_seconds = serializers.IntegerField()
    counts = BackfillCountsSerializer()
    slots = BackfillSlotSerializer(many=True)


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
        source="successRate",
        allow_null=True,
        help_text="Percent of finished runs (scheduled and manual) that succeeded.",
    )
    avg_duration_ms = serializers.IntegerField(source="avgDurationMs", allow_null=True)
    p50_duration_ms = serializers.IntegerField(source="p50DurationMs", allow_null=True)
    p95_duration_ms = serializers.IntegerField(source="p95DurationMs", allow_null=True)
    last_run_at = InstantField(source="lastRunAt", allow_null=True)
    next_run_at = InstantField(source="nextRunAt", allow_null=True)
    credits_used = serializers.FloatField(source="creditsUsed", help_text="Credits the runs reported using.")
    input_tokens = serializers.IntegerField(source="inputTokens", help_text="Input tokens the runs reported.")
    output_tokens = serializers.IntegerField(
        source="outputTokens", help_text="Output tokens the runs reported."
    )
    cost = serializers.FloatField(help_text="Cost the runs reported.")
