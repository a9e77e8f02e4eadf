"""The usage document a target reports, and the periods budgets count over (pure: `executions.usage`), plus
what the demo target reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from executions.launchers import demo
from executions.launchers.base import LaunchPayload, reported_usage
from executions.usage import BudgetPeriod, Usage, UsageError, parse_usage, period_end, period_start


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param({}, None, id="empty"),
        pytest.param({"credits": None, "cost": None}, None, id="all-null"),
        pytest.param(
            {"credits": 3, "inputTokens": 1200, "outputTokens": 300, "cost": 0.0125},
            Usage(Decimal("3"), 1200, 300, Decimal("0.0125")),
            id="camel",
        ),
        pytest.param(
            {"input_tokens": 10, "output_tokens": 2}, Usage(None, 10, 2, None), id="snake-tokens-only"
        ),
        pytest.param(
            {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
            Usage(None, 7, 1, None),
            id="model-api-spelling",
        ),
        pytest.param({"credits": "2.5"}, Usage(Decimal("2.5")), id="decimal-as-string"),
        pytest.param({"inputTokens": 12.0}, Usage(input_tokens=12), id="whole-float-tokens"),
        pytest.param({"cost": 0.1234567}, Usage(cost=Decimal("0.123457")), id="cost-rounded-to-6-places"),
        pytest.param({"credits": 0}, Usage(Decimal("0")), id="zero-is-reported"),
    ],
)
def test_usage_documents_are_read(document, expected) -> None:
    assert parse_usage(document) == expected


@pytest.mark.parametrize(
    ("document", "field"),
    [
        pytest.param([1, 2], "usage", id="not-an-object"),
        pytest.param("3 credits", "usage", id="text"),
        pytest.param({"credits": -1}, "usage.credits", id="negative-credits"),
        pytest.param({"credits": True}, "usage.credits", id="bool"),
        pytest.param({"credits": "lots"}, "usage.credits", id="words"),
        pytest.param({"credits": "NaN"}, "usage.credits", id="nan"),
        pytest.param({"cost": float("inf")}, "usage.cost", id="infinite"),
        pytest.param({"cost": 1e13}, "usage.cost", id="too-large"),
        pytest.param({"inputTokens": 1.5}, "usage.inputTokens", id="fractional-tokens"),
        pytest.param({"inputTokens": "12"}, "usage.inputTokens", id="tokens-as-text"),
        pytest.param({"output_tokens": -3}, "usage.output_tokens", id="negative-tokens"),
        pytest.param({"completion_tokens": 10**16}, "usage.completion_tokens", id="too-many-tokens"),
        pytest.param({"credits": {"n": 1}}, "usage.credits", id="object"),
    ],
)
def test_bad_usage_names_the_field(document, field) -> None:
    with pytest.raises(UsageError) as raised:
        parse_usage(document)
    assert raised.value.field == field


def test_a_sync_answer_with_bad_usage_keeps_its_end_and_says_why() -> None:
    assert reported_usage({"status": "succeeded", "usage": {"credits": 2}}) == (Usage(Decimal(2)), "")
    assert reported_usage({"status": "succeeded"}) == (None, "")
    assert reported_usage(["not", "an", "object"]) == (None, "")
    usage, note = reported_usage({"usage": {"credits": -2}})
    assert usage is None
    assert note == "usage ignored: usage.credits: must be a non-negative number"


NOON = datetime(2026, 3, 18, 12, 30, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        pytest.param("day", datetime(2026, 3, 18, tzinfo=UTC), datetime(2026, 3, 19, tzinfo=UTC), id="day"),
        pytest.param("week", datetime(2026, 3, 16, tzinfo=UTC), datetime(2026, 3, 23, tzinfo=UTC), id="week"),
        pytest.param("month", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), id="month"),
        pytest.param("", None, None, id="no-period"),
    ],
)
def test_budget_periods_are_utc_calendar_periods(period, start, end) -> None:
    assert period_start(period, NOON) == start
    assert period_end(period, NOON) == end


def test_a_period_is_read_in_utc_whatever_the_offset_given() -> None:
    tokyo_morning = datetime(2026, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=9)))  # still Feb 28 in UTC
    assert period_start(BudgetPeriod.MONTH, tokyo_morning) == datetime(2026, 2, 1, tzinfo=UTC)
    assert period_end(BudgetPeriod.MONTH, tokyo_morning) == datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        period_start("day", datetime(2026, 3, 1))  # noqa: DTZ001 - the point of the test


def test_the_demo_reports_usage_for_metered_workflows_only() -> None:
    config = {"speed": 0}
    found = {}
    for n in range(40):
        payload = LaunchPayload(f"e{n}", "t", "agent", "2026-03-02T12:00:00Z", attempt=1)
        decided, document, _ = demo.run(payload, config=config)
        if decided.succeeds:
            found[n] = document["usage"]
    assert found, "some agent runs succeed"
    for usage in found.values():
        assert usage["credits"] == 2.0
        assert 900 <= usage["inputTokens"] <= 2700
        assert usage["outputTokens"] == usage["inputTokens"] // 4
        assert usage["cost"] > 0
    hello = demo.run(LaunchPayload("e", "t", "hello", "2026-03-02T12:00:00Z", attempt=1), config=config)[1]
    assert "usage" not in hello
    again = demo.plan("agent", "e1", 1, config=config)
    assert again.usage == demo.plan("agent", "e1", 1, config=config).usage, "the same attempt, the same usage"
