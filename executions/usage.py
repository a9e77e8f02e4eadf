"""What a run used, as its target reports it, and the periods credit budgets are counted over (pure: no
Django, no Redis).

A target reports usage beside its answer — in a synchronous answer, a poll answer or the signed completion
callback — as one JSON object:

    "usage": {"credits": 3, "inputTokens": 1200, "outputTokens": 340, "cost": 0.0125}

Every key is optional (`null` or absent: not reported). Token counts may also be spelled `input_tokens` /
`output_tokens`, or as the model APIs do, `prompt_tokens` / `completion_tokens`, so an agent can pass its
model's usage through unchanged; other keys (`total_tokens`) are ignored. Credits and cost are decimals
(cost in whatever currency the operator's targets agree on), token counts whole numbers; all must be
non-negative and below a bound that keeps sums far from overflowing. Why one parser for every way usage
arrives: the callback answers a bad document with a 400 naming the field (`usage.credits`), and a
synchronous answer with the same fault keeps its run's end but drops the usage with the same message, so
the two can never disagree about what is valid.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from toolkit.enums import Choices

#: Largest credits or cost one run may report (the columns hold 12 digits before the point).
MAX_AMOUNT = Decimal("1000000000000")
#: Largest token count one run may report.
MAX_TOKENS = 10**15
#: Decimal places kept of credits and cost (the columns' scale).
PLACES = Decimal("0.000001")

#: Wire names of each usage figure, the first being the one this service writes.
SPELLINGS: dict[str, tuple[str, ...]] = {
    "credits": ("credits",),
    "input_tokens": ("inputTokens", "input_tokens", "prompt_tokens"),
    "output_tokens": ("outputTokens", "output_tokens", "completion_tokens"),
    "cost": ("cost",),
}


class UsageError(ValueError):
    """A usage document that cannot be stored; `field` is its dotted wire name (`usage.inputTokens`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Usage:
    """One run's reported usage; None where the target did not report that figure."""

    credits: Decimal | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: Decimal | None = None

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.credits, self.input_tokens, self.output_tokens, self.cost))

    def as_json(self) -> dict[str, float | int | None]:
        """The API's spelling (snake_case; decimals as JSON numbers)."""
        return {
            "credits": None if self.credits is None else float(self.credits),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": None if self.cost is None else float(self.cost),
        }

    def as_camel(self) -> dict[str, float | int | None]:
        """The spelling targets and the earlier systems' clients use (camelCase)."""
        plain = self.as_json()
        return {
            "credits": plain["credits"],
            "inputTokens": plain["input_tokens"],
            "outputTokens": plain["output_tokens"],
            "cost": plain["cost"],
        }


def _amount(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise UsageError(field, "must be a non-negative number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise UsageError(field, "must be a non-negative number") from None
    if not amount.is_finite() or amount < 0:
        raise UsageError(field, "must be a non-negative number")
    if amount >= MAX_AMOUNT:
        raise UsageError(field, f"must be below {MAX_AMOUNT:,}")
    return amount.quantize(PLACES)


def _tokens(value: Any, field: str) -> int:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(field, "must be a non-negative whole number")
    if value > MAX_TOKENS:
        raise UsageError(field, f"must be at most {MAX_TOKENS:,}")
    return value


def parse_usage(value: Any, *, field: str = "usage") -> Usage | None:
    """A decoded usage document as `Usage`, None when absent (`None`) or reporting nothing; `UsageError`
    naming the first bad field otherwise. Strings of digits are read as numbers for credits and cost (a
    target serialising decimals as strings), never for token counts."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise UsageError(field, 'must be a JSON object like {"credits": 3, "inputTokens": 1200}')
    figures: dict[str, Any] = {}
    for name, spellings in SPELLINGS.items():
        for key in spellings:
            raw = value.get(key)
            if raw is None:
                continue
            where = f"{field}.{key}"
            figures[name] = _tokens(raw, where) if name.endswith("_tokens") else _amount(raw, where)
            break
    usage = Usage(**figures)
    return None if usage.empty else usage


# ----------------------------------------------------------------------------------------------------
# Budget periods
# ----------------------------------------------------------------------------------------------------


class BudgetPeriod(Choices):
    """How often a credit budget starts again (calendar periods in UTC)."""

    DAY = "day", "Per day (from 00:00 UTC)"
    WEEK = "week", "Per week (from Monday 00:00 UTC)"
    MONTH = "month", "Per month (from the 1st, 00:00 UTC)"


def period_start(period: str, now: datetime) -> datetime | None:
    """When the budget period holding `now` began; None for a budget with no period (counted since it was
    set or last reset). Calendar periods in UTC: one instant for the whole fleet, whatever the owner's
    triggers' zones, so "the monthly budget" means the same rows to every reader."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, got naive {now!r}")
    if not period:
        return None
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    chosen = BudgetPeriod(period)
    if chosen is BudgetPeriod.DAY:
        return day
    if chosen is BudgetPeriod.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_end(period: str, now: datetime) -> datetime | None:
    """When the period holding `now` ends (the next one starts); None without a period."""
    start = period_start(period, now)
    if start is None:
        return None
    chosen = BudgetPeriod(period)
    if chosen is BudgetPeriod.DAY:
        return start + timedelta(days=1)
    if chosen is BudgetPeriod.WEEK:
        return start + timedelta(days=7)
    return start + timedelta(days=calendar.monthrange(start.year, start.month)[1])
