"""Credit budgets: an operator's allowance of credits per user (admin, `PUT /api/v1/credits/{user}/`).

What a budget does is decided elsewhere, by the same reading (`selectors.owners_out_of_credit`): the fire
path records a due slot of an owner with no credit left as `skipped` (`credits_exhausted`), and the launch
claim does the same to any run still waiting for its first attempt (a run now, a run held back or spread,
a slot fired before the budget ran out), so no run of theirs starts. Usage is known only when a run ends,
so runs already going when the budget runs out still finish and count: an owner can overshoot by what
their runs in flight use."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from executions import usage
from executions.models import CreditBudget
from toolkit import clock


def _clean_credits(value: Any) -> Decimal:
    """The same rule as a run's reported credits (`usage.parse_usage`): a non-negative decimal."""
    if value is None or value == "":
        raise ValidationError({"credits": ["is required: a non-negative number (0 stops every run)"]})
    try:
        parsed = usage.parse_usage({"credits": value})
    except usage.UsageError as exc:
        raise ValidationError({"credits": [exc.message]}) from None
    return parsed.credits if parsed is not None and parsed.credits is not None else Decimal(0)


def _clean_period(value: Any) -> str:
    period = "" if value is None else value
    if period != "" and period not in usage.BudgetPeriod.values:
        allowed = ", ".join(usage.BudgetPeriod.values)
        raise ValidationError({"period": [f"must be one of {allowed}, or empty for no period"]})
    return str(period)


def credit_budget_check(*, credits: Any, period: Any, note: Any) -> tuple[Decimal, str, str]:
    """The budget's values as stored, or `ValidationError` naming the field (the admin's form asks this
    before saving, so it shows the API's messages beside the fields)."""
    cleaned = _clean_credits(credits)
    period = _clean_period(period)
    if not isinstance(note, str) or len(note) > 500 or "\x00" in note:
        raise ValidationError({"note": ["must be text of at most 500 characters"]})
    return cleaned, period, note


@transaction.atomic
def credit_budget_set(
    *, owner: Any, credits: Any, period: Any = usage.BudgetPeriod.MONTH, note: str = "", reset: bool = False
) -> CreditBudget:
    """Set `owner`'s allowance of `credits` per `period` (`day`, `week`, `month`; empty: one allowance
    counted since the budget was set). `reset` counts usage afresh from now, as the agent task queue's
    operators did with `creditsUsed = 0`. Raising or lowering the allowance applies to the next run due."""
    cleaned, period, note = credit_budget_check(credits=credits, period=period, note=note)
    now = clock.now()
    budget = CreditBudget.objects.select_for_update().filter(owner=owner).first()
    if budget is None:
        budget = CreditBudget(owner=owner, counted_from=now)
    elif reset:
        budget.counted_from = now
    budget.credits, budget.period, budget.note = cleaned, period, note
    budget.save()
    return budget


@transaction.atomic
def credit_budget_delete(*, owner: Any) -> bool:
    """Remove `owner`'s budget: their runs are no longer held to any allowance. Whether there was one."""
    deleted, _ = CreditBudget.objects.filter(owner=owner).delete()
    return bool(deleted)
