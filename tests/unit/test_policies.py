"""Unit tests for executions.policies: tables for every policy and edge, hypothesis for the invariants.

Why no Django: the module under test is pure, so these run with ``-p no:django`` and fixed clocks only
(every "now" below is the constant ``NOW``); a failure here is a rule bug, never a fixture or timing issue.
"""

from __future__ import annotations

import http.client
import math
import random
import socket
import urllib.error
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from email.message import Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executions.policies import (
    PRIORITY_VALUES,
    CatchupPolicy,
    Outcome,
    OverlapAction,
    OverlapPolicy,
    Priority,
    SkipReason,
    SlotPlan,
    TriggerState,
    after_the_end,
    apply_bounds,
    backoff_delay,
    bounds_skip_reason,
    classify_exception,
    classify_http_status,
    decide_overlap,
    is_misfired,
    parse_retry_after,
    plan_slots,
    priority_value,
    should_retry,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
GRACE = 60
WINDOW = 3600
CAP = 10

# Hypothesis must not leave a .hypothesis/ example database in the shared tree; deadline off because CI
# machines are noisy and these functions have no timing contract.
HYPOTHESIS = settings(deadline=None, database=None, max_examples=300)


def m(minutes: float) -> datetime:
    """NOW shifted by ``minutes`` (negative = in the past); keeps the tables readable."""
    return NOW + timedelta(minutes=minutes)


def summarize(plans: list[SlotPlan]) -> list[tuple]:
    """(minutes from NOW, "run" or skip reason, catchup, not_before in seconds from NOW or None) per plan."""
    return [
        (
            (p.slot - NOW) / timedelta(minutes=1),
            "run" if p.run else str(p.reason),
            p.catchup,
            None if p.not_before is None else (p.not_before - NOW).total_seconds(),
        )
        for p in plans
    ]


def plan(
    *,
    missed_minutes: Sequence[float] = (),
    policy: CatchupPolicy | str,
    due_minutes: float = 0,
    due_fire_minutes: float | None = None,
    window: int = WINDOW,
    grace: int = GRACE,
    max_slots: int = CAP,
) -> list[SlotPlan]:
    """plan_slots with slots given in minutes from NOW (negative = past).

    Every slot's fire_at is its slot time unless ``due_fire_minutes`` moves the due slot's; so a due slot at
    ``due_minutes=-5`` is a message that should have fired five minutes ago and is only processed now.
    """
    return plan_slots(
        due_slot=m(due_minutes),
        due_fire_at=m(due_minutes if due_fire_minutes is None else due_fire_minutes),
        missed=[(m(x), m(x)) for x in missed_minutes],
        now=NOW,
        policy=policy,
        window_seconds=window,
        grace_seconds=grace,
        max_slots=max_slots,
    )


RUN = "run"
DUE = (0.0, RUN, False, None)  # the on-time due slot at NOW


# ----------------------------------------------------------------------------------------------------
# is_misfired
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fire_at", "grace", "expected"),
    [
        pytest.param(NOW, 60, False, id="fired-just-now"),
        pytest.param(NOW - timedelta(seconds=59), 60, False, id="inside-grace"),
        pytest.param(NOW - timedelta(seconds=60), 60, False, id="exactly-at-grace-is-on-time"),
        pytest.param(NOW - timedelta(seconds=60, microseconds=1), 60, True, id="one-microsecond-late"),
        pytest.param(NOW - timedelta(hours=1), 60, True, id="an-hour-late"),
        pytest.param(NOW - timedelta(seconds=1), 0, True, id="zero-grace-one-second-late"),
        pytest.param(NOW, 0, False, id="zero-grace-on-the-dot"),
        pytest.param(NOW - timedelta(seconds=1), -30, True, id="negative-grace-reads-as-zero"),
        pytest.param(NOW + timedelta(minutes=5), 0, False, id="fire-at-in-the-future"),
    ],
)
def test_is_misfired(fire_at: datetime, grace: int, expected: bool) -> None:
    assert is_misfired(fire_at, NOW, grace) is expected


def test_is_misfired_compares_instants_across_time_zones() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert is_misfired(datetime(2024, 6, 1, 13, 58, tzinfo=plus_two), NOW, 60) is True
    assert is_misfired(datetime(2024, 6, 1, 13, 59, 30, tzinfo=plus_two), NOW, 60) is False


@pytest.mark.parametrize(
    ("fire_at", "now"),
    [
        pytest.param(NOW.replace(tzinfo=None), NOW, id="naive-fire-at"),
        pytest.param(NOW, NOW.replace(tzinfo=None), id="naive-now"),
    ],
)
def test_is_misfired_rejects_naive_datetimes(fire_at: datetime, now: datetime) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_misfired(fire_at, now, 60)


# ----------------------------------------------------------------------------------------------------
# plan_slots: one table for every catch-up policy and edge
# ----------------------------------------------------------------------------------------------------

CATCHUP_CASES = [
    # --- none ---------------------------------------------------------------------------------------------
    pytest.param({"policy": "none"}, [DUE], id="none-with-0-missed"),
    pytest.param(
        {"policy": "none", "missed_minutes": [-5]},
        [(-5.0, "catchup_none", True, None), DUE],
        id="none-with-1-missed",
    ),
    pytest.param(
        {"policy": "none", "missed_minutes": [-15, -10, -5]},
        [
            (-15.0, "catchup_none", True, None),
            (-10.0, "catchup_none", True, None),
            (-5.0, "catchup_none", True, None),
            DUE,
        ],
        id="none-with-3-missed",
    ),
    pytest.param(
        {"policy": "none", "due_minutes": -5},
        [(-5.0, "catchup_none", True, None)],
        id="none-misfired-due-slot-is-skipped-too",
    ),
    # --- latest -------------------------------------------------------------------------------------------
    pytest.param({"policy": "latest"}, [DUE], id="latest-with-0-missed"),
    pytest.param(
        {"policy": "latest", "missed_minutes": [-5]},
        [(-5.0, "catchup_superseded", True, None), DUE],
        id="latest-with-1-missed-superseded-by-on-time-due",
    ),
    pytest.param(
        {"policy": "latest", "missed_minutes": [-15, -10, -5]},
        [
            (-15.0, "catchup_superseded", True, None),
            (-10.0, "catchup_superseded", True, None),
            (-5.0, "catchup_superseded", True, None),
            DUE,
        ],
        id="latest-with-3-missed",
    ),
    pytest.param(
        {"policy": "latest", "due_minutes": -5},
        [(-5.0, RUN, True, None)],
        id="latest-misfired-due-slot-alone-runs-as-catchup",
    ),
    pytest.param(
        {"policy": "latest", "missed_minutes": [-15, -10], "due_minutes": -5},
        [
            (-15.0, "catchup_superseded", True, None),
            (-10.0, "catchup_superseded", True, None),
            (-5.0, RUN, True, None),
        ],
        id="latest-misfired-due-slot-is-the-latest",
    ),
    # --- fire_immediately ---------------------------------------------------------------------------------
    pytest.param({"policy": "fire_immediately"}, [DUE], id="fire-immediately-with-0-missed"),
    pytest.param(
        {"policy": "fire_immediately", "missed_minutes": [-5]},
        [(-5.0, RUN, True, None), DUE],
        id="fire-immediately-with-1-missed",
    ),
    pytest.param(
        {"policy": "fire_immediately", "missed_minutes": [-15, -10, -5]},
        [(-15.0, RUN, True, None), (-10.0, RUN, True, None), (-5.0, RUN, True, None), DUE],
        id="fire-immediately-with-3-missed",
    ),
    pytest.param(
        {"policy": "fire_immediately", "missed_minutes": [-10], "due_minutes": -5},
        [(-10.0, RUN, True, None), (-5.0, RUN, True, None)],
        id="fire-immediately-misfired-due-slot-joins-missed",
    ),
    # --- spread (window 3600 s) ---------------------------------------------------------------------------
    pytest.param({"policy": "spread"}, [DUE], id="spread-with-0-missed"),
    pytest.param(
        {"policy": "spread", "missed_minutes": [-5]},
        [(-5.0, RUN, True, 0.0), DUE],
        id="spread-with-1-missed-starts-now",
    ),
    pytest.param(
        {"policy": "spread", "missed_minutes": [-20, -15, -10, -5]},
        [
            (-20.0, RUN, True, 0.0),
            (-15.0, RUN, True, 900.0),
            (-10.0, RUN, True, 1800.0),
            (-5.0, RUN, True, 2700.0),
            DUE,
        ],
        id="spread-with-4-missed-exact-quarter-hours",
    ),
    pytest.param(
        {"policy": "spread", "missed_minutes": [-10], "due_minutes": -5},
        [(-10.0, RUN, True, 0.0), (-5.0, RUN, True, 1800.0)],
        id="spread-misfired-due-slot-is-spread-too",
    ),
    pytest.param(
        {"policy": "spread", "missed_minutes": [-1.5, -1, -0.5], "window": 100, "grace": 0},
        [(-1.5, RUN, True, 0.0), (-1.0, RUN, True, 33.333333), (-0.5, RUN, True, 66.666666), DUE],
        id="spread-uneven-division-floors-to-the-microsecond",
    ),
    # --- catch-up window ----------------------------------------------------------------------------------
    pytest.param(
        {"policy": "fire_immediately", "missed_minutes": [-60, -45, -20, -10], "window": 1800},
        [
            (-60.0, "catchup_window", True, None),
            (-45.0, "catchup_window", True, None),
            (-20.0, RUN, True, None),
            (-10.0, RUN, True, None),
            DUE,
        ],
        id="window-skips-slots-older-than-now-minus-window",
    ),
    pytest.param(
        {"policy": "fire_immediately", "missed_minutes": [-30.01, -30], "window": 1800},
        [(-30.01, "catchup_window", True, None), (-30.0, RUN, True, None), DUE],
        id="window-boundary-is-inclusive",
    ),
    pytest.param(
        {
            "policy": "latest",
            "missed_minutes": [-90, -70],
            "window": 3600,
            "due_minutes": -65,
        },
        [
            (-90.0, "catchup_window", True, None),
            (-70.0, "catchup_window", True, None),
            (-65.0, "catchup_window", True, None),
        ],
        id="latest-everything-outside-window-runs-nothing",
    ),
    pytest.param(
        {"policy": "none", "missed_minutes": [-90, -10]},
        [(-90.0, "catchup_window", True, None), (-10.0, "catchup_none", True, None), DUE],
        id="window-reason-wins-over-policy-reason",
    ),
    pytest.param(
        {"policy": "fire_immediately", "missed_minutes": [-10], "window": 0},
        [(-10.0, "catchup_window", True, None), DUE],
        id="zero-window-catches-up-nothing",
    ),
    pytest.param(
        {"policy": "fire_immediately", "missed_minutes": [-10], "window": -60},
        [(-10.0, "catchup_window", True, None), DUE],
        id="negative-window-reads-as-zero",
    ),
    # --- cap ----------------------------------------------------------------------------------------------
    pytest.param(
        {"policy": "fire_immediately", "missed_minutes": [-40, -30, -20, -10], "max_slots": 2},
        [
            (-40.0, "catchup_cap", True, None),
            (-30.0, "catchup_cap", True, None),
            (-20.0, RUN, True, None),
            (-10.0, RUN, True, None),
            DUE,
        ],
        id="cap-keeps-the-newest",
    ),
    pytest.param(
        {"policy": "fire_immediately", "missed_minutes": [-20, -10], "max_slots": 2},
        [(-20.0, RUN, True, None), (-10.0, RUN, True, None), DUE],
        id="cap-exactly-reached-skips-nothing",
    ),
    pytest.param(
        {"policy": "spread", "missed_minutes": [-40, -30, -20, -10], "max_slots": 2},
        [
            (-40.0, "catchup_cap", True, None),
            (-30.0, "catchup_cap", True, None),
            (-20.0, RUN, True, 0.0),
            (-10.0, RUN, True, 1800.0),
            DUE,
        ],
        id="spread-divides-window-by-kept-slots-only",
    ),
    pytest.param(
        {"policy": "latest", "missed_minutes": [-40, -30, -20, -10], "max_slots": 2},
        [
            (-40.0, "catchup_cap", True, None),
            (-30.0, "catchup_cap", True, None),
            (-20.0, "catchup_superseded", True, None),
            (-10.0, "catchup_superseded", True, None),
            DUE,
        ],
        id="latest-with-cap",
    ),
    pytest.param(
        {
            "policy": "fire_immediately",
            "missed_minutes": [-10],
            "due_minutes": -5,
            "max_slots": 1,
        },
        [(-10.0, "catchup_cap", True, None), (-5.0, RUN, True, None)],
        id="misfired-due-slot-counts-against-cap",
    ),
    pytest.param(
        {"policy": "fire_immediately", "missed_minutes": [-20, -10], "max_slots": 0},
        [(-20.0, "catchup_cap", True, None), (-10.0, "catchup_cap", True, None), DUE],
        id="zero-cap-still-runs-on-time-due",
    ),
    pytest.param(
        {"policy": "fire_immediately", "missed_minutes": [-10], "max_slots": -3},
        [(-10.0, "catchup_cap", True, None), DUE],
        id="negative-cap-reads-as-zero",
    ),
    # --- window and cap at once ---------------------------------------------------------------------------
    pytest.param(
        {
            "policy": "fire_immediately",
            "missed_minutes": [-50, -40, -25, -20, -10],
            "window": 1800,
            "max_slots": 2,
        },
        [
            (-50.0, "catchup_window", True, None),
            (-40.0, "catchup_window", True, None),
            (-25.0, "catchup_cap", True, None),
            (-20.0, RUN, True, None),
            (-10.0, RUN, True, None),
            DUE,
        ],
        id="window-first-then-cap-on-what-is-left",
    ),
    pytest.param(
        {"policy": "spread", "missed_minutes": [-50, -25, -20, -10], "window": 1800, "max_slots": 2},
        [
            (-50.0, "catchup_window", True, None),
            (-25.0, "catchup_cap", True, None),
            (-20.0, RUN, True, 0.0),
            (-10.0, RUN, True, 900.0),
            DUE,
        ],
        id="spread-with-window-and-cap",
    ),
    # --- on-time edges ------------------------------------------------------------------------------------
    pytest.param(
        {"policy": "none", "due_minutes": -1},
        [(-1.0, RUN, False, None)],
        id="due-slot-exactly-at-grace-is-on-time",
    ),
    pytest.param(
        {"policy": "latest", "missed_minutes": [-0.5]},
        [(-0.5, RUN, False, None), DUE],
        id="older-slot-still-inside-grace-is-on-time-not-missed",
    ),
    pytest.param(
        {"policy": "none", "due_minutes": -90, "due_fire_minutes": 0, "window": 1800},
        [(-90.0, RUN, False, None)],
        id="on-time-due-slot-ignores-window",
    ),
]


@pytest.mark.parametrize(("kwargs", "expected"), CATCHUP_CASES)
def test_plan_slots(kwargs: dict, expected: list[tuple]) -> None:
    assert summarize(plan(**kwargs)) == expected


@pytest.mark.parametrize("policy", [*CatchupPolicy, *(p.value for p in CatchupPolicy)])
def test_plan_slots_accepts_enum_and_string_policies(policy: CatchupPolicy | str) -> None:
    assert summarize(plan(policy=policy)) == [DUE]


def test_plan_slots_sorts_and_deduplicates_input() -> None:
    messy = plan_slots(
        due_slot=NOW,
        due_fire_at=NOW,
        missed=[(m(-5), m(-5)), (m(-15), m(-15)), (NOW, NOW), (m(-5), m(-5)), (m(-10), m(-10))],
        now=NOW,
        policy=CatchupPolicy.FIRE_IMMEDIATELY,
        window_seconds=WINDOW,
        grace_seconds=GRACE,
        max_slots=CAP,
    )
    assert summarize(messy) == summarize(plan(policy="fire_immediately", missed_minutes=[-15, -10, -5]))


def test_duplicate_slot_uses_its_earliest_fire_at() -> None:
    # One report says the -0.5 min slot fired on time, another that it fired 10 minutes ago: it is late.
    plans = plan_slots(
        due_slot=NOW,
        due_fire_at=NOW,
        missed=[(m(-0.5), m(-0.5)), (m(-0.5), m(-10))],
        now=NOW,
        policy="none",
        window_seconds=WINDOW,
        grace_seconds=GRACE,
        max_slots=CAP,
    )
    assert summarize(plans) == [(-0.5, "catchup_none", True, None), DUE]


def test_missed_entry_equal_to_due_slot_uses_due_fire_at() -> None:
    plans = plan_slots(
        due_slot=NOW,
        due_fire_at=NOW,
        missed=[(NOW, m(-30))],
        now=NOW,
        policy="none",
        window_seconds=WINDOW,
        grace_seconds=GRACE,
        max_slots=CAP,
    )
    assert summarize(plans) == [DUE]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"policy": "sometimes"}, ValueError, id="unknown-policy"),
        pytest.param({"policy": "none", "now": NOW.replace(tzinfo=None)}, ValueError, id="naive-now"),
        pytest.param({"policy": "none", "due_slot": NOW.replace(tzinfo=None)}, ValueError, id="naive-due"),
        pytest.param(
            {"policy": "none", "missed": [(m(-5).replace(tzinfo=None), m(-5))]}, ValueError, id="naive-missed"
        ),
    ],
)
def test_plan_slots_rejects_bad_input(kwargs: dict, error: type[Exception]) -> None:
    arguments = {
        "due_slot": NOW,
        "due_fire_at": NOW,
        "missed": [],
        "now": NOW,
        "window_seconds": WINDOW,
        "grace_seconds": GRACE,
        "max_slots": CAP,
        **kwargs,
    }
    with pytest.raises(error):
        plan_slots(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"run": True, "reason": SkipReason.OVERLAP}, "must not carry", id="run-with-reason"),
        pytest.param({"run": False, "reason": None}, "must carry", id="skip-without-reason"),
        pytest.param(
            {"run": False, "reason": SkipReason.PAUSED, "not_before": NOW}, "not_before", id="skip-with-delay"
        ),
    ],
)
def test_slot_plan_rejects_contradictions(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SlotPlan(**{"slot": NOW, "not_before": None, "catchup": False, **kwargs})


# ----------------------------------------------------------------------------------------------------
# plan_slots: properties
# ----------------------------------------------------------------------------------------------------

policies = st.sampled_from([*CatchupPolicy, *(p.value for p in CatchupPolicy)])
# Offsets in seconds before NOW; microseconds included so spread rounding is exercised.
seconds_ago = st.integers(min_value=0, max_value=3 * 3600 * 10**6).map(lambda us: timedelta(microseconds=us))
delays = st.integers(min_value=0, max_value=600 * 10**6).map(lambda us: timedelta(microseconds=us))
slot_entries = st.tuples(seconds_ago, delays).map(lambda t: (NOW - t[0], NOW - t[0] + t[1]))


@st.composite
def plan_inputs(draw: st.DrawFn, *, only_misfired: bool = False) -> dict:
    """Arbitrary plan_slots arguments; with only_misfired, every missed entry is genuinely missed."""
    grace = draw(st.integers(min_value=-5, max_value=300))
    due_slot, due_fire_at = draw(slot_entries)
    missed = draw(st.lists(slot_entries, max_size=25))
    if only_misfired:
        missed = [(slot, fire_at) for slot, fire_at in missed if is_misfired(fire_at, NOW, grace)]
    if missed and draw(st.booleans()):
        missed = [*missed, *draw(st.lists(st.sampled_from(missed), max_size=5))]  # duplicates
    return {
        "due_slot": due_slot,
        "due_fire_at": due_fire_at,
        "missed": draw(st.permutations(missed)),
        "now": NOW,
        "policy": draw(policies),
        "window_seconds": draw(st.integers(min_value=-10, max_value=4 * 3600)),
        "grace_seconds": grace,
        "max_slots": draw(st.integers(min_value=-2, max_value=30)),
    }


def fire_at_of(kwargs: dict) -> dict[datetime, datetime]:
    """Slot -> effective fire_at, mirroring plan_slots' dedup rules (due wins, else earliest)."""
    result: dict[datetime, datetime] = {}
    for slot, fire_at in kwargs["missed"]:
        result[slot] = min(fire_at, result.get(slot, fire_at))
    result[kwargs["due_slot"]] = kwargs["due_fire_at"]
    return result


@HYPOTHESIS
@given(plan_inputs())
def test_property_one_plan_per_distinct_slot_oldest_first(kwargs: dict) -> None:
    plans = plan_slots(**kwargs)
    slots = [p.slot for p in plans]
    assert slots == sorted(set(slots))
    assert set(slots) == {kwargs["due_slot"], *(slot for slot, _ in kwargs["missed"])}


@HYPOTHESIS
@given(plan_inputs())
def test_property_never_runs_a_missed_slot_older_than_the_window(kwargs: dict) -> None:
    oldest_allowed = NOW - timedelta(seconds=max(0, kwargs["window_seconds"]))
    fire_at = fire_at_of(kwargs)
    for p in plans_that_run(kwargs):
        if p.catchup:
            assert p.slot >= oldest_allowed
        else:  # only on-time slots bypass the window
            assert not is_misfired(fire_at[p.slot], NOW, kwargs["grace_seconds"])


def plans_that_run(kwargs: dict) -> list[SlotPlan]:
    return [p for p in plan_slots(**kwargs) if p.run]


@HYPOTHESIS
@given(plan_inputs(only_misfired=True))
def test_property_never_runs_more_than_max_slots_plus_one(kwargs: dict) -> None:
    runs = plans_that_run(kwargs)
    assert len(runs) <= max(0, kwargs["max_slots"]) + 1
    assert sum(p.catchup for p in runs) <= max(0, kwargs["max_slots"])


@HYPOTHESIS
@given(plan_inputs())
def test_property_catchup_runs_bounded_by_cap_even_with_on_time_stragglers(kwargs: dict) -> None:
    runs = plans_that_run(kwargs)
    assert sum(p.catchup for p in runs) <= max(0, kwargs["max_slots"])
    if CatchupPolicy(kwargs["policy"]) is CatchupPolicy.LATEST:
        assert sum(p.catchup for p in runs) <= 1
    if CatchupPolicy(kwargs["policy"]) is CatchupPolicy.NONE:
        assert not any(p.catchup for p in runs)


@HYPOTHESIS
@given(plan_inputs())
def test_property_spread_not_before_is_monotone_and_inside_window(kwargs: dict) -> None:
    window = timedelta(seconds=max(0, kwargs["window_seconds"]))
    plans = plan_slots(**kwargs)
    delayed = [p.not_before for p in plans if p.not_before is not None]
    if CatchupPolicy(kwargs["policy"]) is not CatchupPolicy.SPREAD:
        assert delayed == []
        return
    assert delayed == sorted(delayed)
    assert all(NOW <= t <= NOW + window for t in delayed)
    assert all(p.not_before is not None for p in plans if p.run and p.catchup)
    if delayed:
        assert delayed[0] == NOW


@HYPOTHESIS
@given(plan_inputs())
def test_property_skips_always_carry_a_catchup_reason_and_on_time_always_runs(kwargs: dict) -> None:
    catchup_reasons = {
        SkipReason.CATCHUP_NONE,
        SkipReason.CATCHUP_SUPERSEDED,
        SkipReason.CATCHUP_WINDOW,
        SkipReason.CATCHUP_CAP,
    }
    for p in plan_slots(**kwargs):
        assert p.run or (p.catchup and p.reason in catchup_reasons)
        assert p.catchup or p.run


@HYPOTHESIS
@given(plan_inputs(), st.randoms(use_true_random=False))
def test_property_input_order_and_duplicates_do_not_matter(kwargs: dict, rnd: random.Random) -> None:
    shuffled = list(kwargs["missed"]) * 2
    rnd.shuffle(shuffled)
    assert plan_slots(**{**kwargs, "missed": shuffled}) == plan_slots(**kwargs)


# ----------------------------------------------------------------------------------------------------
# Trigger bounds
# ----------------------------------------------------------------------------------------------------


def state(**overrides: object) -> TriggerState:
    base = {"status": "active", "start_at": None, "end_at": None, "max_runs": None, "run_count": 0}
    return TriggerState(**{**base, **overrides})


@pytest.mark.parametrize(
    ("trigger", "slot", "expected"),
    [
        pytest.param(state(), NOW, None, id="active-unbounded-runs"),
        pytest.param(state(status="paused"), NOW, SkipReason.PAUSED, id="paused"),
        pytest.param(state(status="completed"), NOW, SkipReason.COMPLETED, id="completed"),
        pytest.param(state(start_at=m(1)), NOW, SkipReason.OUTSIDE_BOUNDS, id="before-start"),
        pytest.param(state(start_at=NOW), NOW, None, id="start-is-inclusive"),
        pytest.param(state(end_at=m(-1)), NOW, SkipReason.OUTSIDE_BOUNDS, id="after-end"),
        pytest.param(state(end_at=NOW), NOW, None, id="end-is-inclusive"),
        pytest.param(state(start_at=m(-5), end_at=m(5)), NOW, None, id="inside-both-bounds"),
        pytest.param(state(max_runs=3, run_count=3), NOW, SkipReason.LIMIT_REACHED, id="limit-reached"),
        pytest.param(state(max_runs=3, run_count=7), NOW, SkipReason.LIMIT_REACHED, id="limit-exceeded"),
        pytest.param(state(max_runs=3, run_count=2), NOW, None, id="one-run-left"),
        pytest.param(state(max_runs=0), NOW, SkipReason.LIMIT_REACHED, id="max-runs-zero"),
        pytest.param(
            state(status="completed", max_runs=1, run_count=1, end_at=m(-1)),
            NOW,
            SkipReason.COMPLETED,
            id="completed-wins-over-everything",
        ),
        pytest.param(
            state(status="paused", end_at=m(-1)), NOW, SkipReason.PAUSED, id="paused-wins-over-bounds"
        ),
        pytest.param(
            state(end_at=m(-1), max_runs=1, run_count=1),
            NOW,
            SkipReason.OUTSIDE_BOUNDS,
            id="bounds-win-over-limit",
        ),
    ],
)
def test_bounds_skip_reason(trigger: TriggerState, slot: datetime, expected: SkipReason | None) -> None:
    assert bounds_skip_reason(trigger, slot) == expected


@pytest.mark.parametrize(
    ("trigger", "slot"),
    [
        pytest.param(state(status="archived"), NOW, id="unknown-status"),
        pytest.param(state(status="Active"), NOW, id="status-is-case-sensitive"),
        pytest.param(state(), NOW.replace(tzinfo=None), id="naive-slot"),
        pytest.param(state(start_at=NOW.replace(tzinfo=None)), NOW, id="naive-start"),
    ],
)
def test_bounds_skip_reason_rejects_bad_input(trigger: TriggerState, slot: datetime) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - message content is not part of the contract
        bounds_skip_reason(trigger, slot)


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        pytest.param(
            state(max_runs=10, run_count=8),
            [
                (-15.0, RUN, True, 0.0),
                (-10.0, RUN, True, 1200.0),
                (-5.0, "limit_reached", True, None),
                (0.0, "limit_reached", False, None),
            ],
            id="max-runs-counts-planned-runs-oldest-first",
        ),
        pytest.param(
            state(end_at=m(-7)),
            [
                (-15.0, RUN, True, 0.0),
                (-10.0, RUN, True, 1200.0),
                (-5.0, "outside_bounds", True, None),
                (0.0, "outside_bounds", False, None),
            ],
            id="end-at-cuts-newer-slots",
        ),
        pytest.param(
            state(status="paused"),
            [
                (-15.0, "paused", True, None),
                (-10.0, "paused", True, None),
                (-5.0, "paused", True, None),
                (0.0, "paused", False, None),
            ],
            id="paused-skips-every-run",
        ),
        pytest.param(
            state(),
            [(-15.0, RUN, True, 0.0), (-10.0, RUN, True, 1200.0), (-5.0, RUN, True, 2400.0), DUE],
            id="unbounded-changes-nothing",
        ),
    ],
)
def test_apply_bounds(trigger: TriggerState, expected: list[tuple]) -> None:
    plans = plan(policy="spread", missed_minutes=[-15, -10, -5])
    # Input order must not matter: runs are counted oldest first regardless.
    assert summarize(apply_bounds(list(reversed(plans)), trigger)) == expected


def test_apply_bounds_keeps_existing_skip_reasons() -> None:
    plans = plan(policy="none", missed_minutes=[-10])
    assert summarize(apply_bounds(plans, state(status="paused"))) == [
        (-10.0, "catchup_none", True, None),
        (0.0, "paused", False, None),
    ]


@pytest.mark.parametrize(
    ("trigger", "policy", "kept", "dropped"),
    [
        pytest.param(state(), "spread", [-15.0, -10.0, -5.0, 0.0], [], id="unbounded-drops-nothing"),
        pytest.param(
            state(max_runs=10, run_count=8), "spread", [-15.0, -10.0], [-5.0, 0.0], id="runs-past-max-runs"
        ),
        pytest.param(state(max_runs=2, run_count=2), "none", [], [-15.0, -10.0, -5.0, 0.0],
                     id="max-runs-already-reached-drops-even-catchup-skips"),
        pytest.param(state(status="completed"), "latest", [], [-15.0, -10.0, -5.0, 0.0], id="completed"),
        pytest.param(state(end_at=m(-7)), "spread", [-15.0, -10.0], [-5.0, 0.0], id="after-end-at"),
        pytest.param(
            state(end_at=m(-7)), "none", [-15.0, -10.0], [-5.0, 0.0], id="after-end-at-even-catchup-skips"
        ),
        pytest.param(
            state(status="paused"), "spread", [-15.0, -10.0, -5.0, 0.0], [], id="paused-slots-are-kept"
        ),
        pytest.param(
            state(max_runs=3, run_count=2), "latest", [-15.0, -10.0, -5.0, 0.0], [],
            id="superseded-skips-before-the-last-run-are-kept",
        ),
    ],
)  # fmt: skip
def test_after_the_end(trigger: TriggerState, policy: str, kept: list, dropped: list) -> None:
    bounded = apply_bounds(plan(policy=policy, missed_minutes=[-15, -10, -5]), trigger)
    got_kept, got_dropped = after_the_end(list(reversed(bounded)), trigger)
    assert [(p.slot - NOW) / timedelta(minutes=1) for p in got_kept] == kept
    assert [(p.slot - NOW) / timedelta(minutes=1) for p in got_dropped] == dropped
    assert all(p.reason not in (SkipReason.COMPLETED, SkipReason.LIMIT_REACHED) for p in got_kept)


def test_after_the_end_drops_a_catchup_skip_newer_than_the_run_that_reached_max_runs() -> None:
    on_time = SlotPlan(slot=m(-1), run=True, reason=None, not_before=None, catchup=False)
    skipped = SlotPlan(slot=NOW, run=False, reason=SkipReason.CATCHUP_NONE, not_before=None, catchup=True)
    kept, dropped = after_the_end([skipped, on_time], state(max_runs=1, run_count=0))
    assert (kept, dropped) == ([on_time], [skipped])


# ----------------------------------------------------------------------------------------------------
# Overlap
# ----------------------------------------------------------------------------------------------------

S, K, W, R = OverlapAction.START, OverlapAction.SKIP, OverlapAction.WAIT, OverlapAction.REPLACE
# (running, waiting) states: idle, one running, one waiting and nothing running (between promotions),
# one running with one waiting, several running with several waiting.
STATES = [(0, 0), (1, 0), (0, 1), (1, 1), (3, 2)]
EXPECTED_OVERLAP = {
    OverlapPolicy.ALLOW: [S, S, S, S, S],
    OverlapPolicy.SKIP: [S, K, S, K, K],
    OverlapPolicy.QUEUE: [S, W, W, W, W],
    OverlapPolicy.BUFFER_ONE: [S, W, K, K, K],
    OverlapPolicy.REPLACE: [S, R, S, R, R],
}


@pytest.mark.parametrize(
    ("policy", "running", "waiting", "expected"),
    [
        pytest.param(OverlapPolicy.SKIP, 1, 0, S, id="skip-room-for-a-second"),
        pytest.param(OverlapPolicy.SKIP, 2, 0, K, id="skip-full"),
        pytest.param(OverlapPolicy.REPLACE, 1, 0, S, id="replace-room-for-a-second"),
        pytest.param(OverlapPolicy.REPLACE, 2, 0, R, id="replace-full"),
        pytest.param(OverlapPolicy.QUEUE, 1, 0, S, id="queue-room-for-a-second"),
        pytest.param(OverlapPolicy.QUEUE, 1, 1, W, id="queue-keeps-slot-order-behind-a-waiting-one"),
        pytest.param(OverlapPolicy.QUEUE, 2, 0, W, id="queue-full"),
        pytest.param(OverlapPolicy.BUFFER_ONE, 1, 0, S, id="buffer-one-room-for-a-second"),
        pytest.param(OverlapPolicy.BUFFER_ONE, 2, 0, W, id="buffer-one-full"),
        pytest.param(OverlapPolicy.BUFFER_ONE, 1, 1, K, id="buffer-one-already-one-waiting"),
        pytest.param(OverlapPolicy.ALLOW, 9, 9, S, id="allow-ignores-it"),
    ],
)
def test_decide_overlap_with_max_concurrent_two(
    policy: OverlapPolicy, running: int, waiting: int, expected: OverlapAction
) -> None:
    assert decide_overlap(policy=policy, running=running, waiting=waiting, max_concurrent=2) is expected


@pytest.mark.parametrize("bad", [0, -1, True])
def test_decide_overlap_rejects_a_max_concurrent_below_one(bad: int) -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        decide_overlap(policy=OverlapPolicy.SKIP, running=0, waiting=0, max_concurrent=bad)


@pytest.mark.parametrize(
    ("policy", "running", "waiting", "expected"),
    [
        pytest.param(policy, running, waiting, action, id=f"{policy}-running{running}-waiting{waiting}")
        for policy, actions in EXPECTED_OVERLAP.items()
        for (running, waiting), action in zip(STATES, actions, strict=True)
    ],
)
def test_decide_overlap(policy: OverlapPolicy, running: int, waiting: int, expected: OverlapAction) -> None:
    assert decide_overlap(policy=policy, running=running, waiting=waiting) is expected
    assert decide_overlap(policy=policy.value, running=running, waiting=waiting) is expected


@pytest.mark.parametrize(
    ("policy", "running", "waiting"),
    [
        pytest.param("sometimes", 0, 0, id="unknown-policy"),
        pytest.param("queue", -1, 0, id="negative-running"),
        pytest.param("queue", 0, -1, id="negative-waiting"),
    ],
)
def test_decide_overlap_rejects_bad_input(policy: str, running: int, waiting: int) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - message content is not part of the contract
        decide_overlap(policy=policy, running=running, waiting=waiting)


# ----------------------------------------------------------------------------------------------------
# Retries: backoff, Retry-After, should_retry
# ----------------------------------------------------------------------------------------------------


class FixedDraw(random.Random):
    """A Random whose random() always returns one value, to pin the jitter draw."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("attempt", "expected_ceiling"),
    [
        pytest.param(1, 2.0, id="attempt-1-2s"),
        pytest.param(2, 4.0, id="attempt-2-4s"),
        pytest.param(3, 8.0, id="attempt-3-8s"),
        pytest.param(4, 16.0, id="attempt-4-16s"),
        pytest.param(5, 30.0, id="attempt-5-capped-at-30s"),
        pytest.param(1000, 30.0, id="attempt-1000-no-overflow"),
        pytest.param(0, 2.0, id="attempt-0-reads-as-1"),
        pytest.param(-4, 2.0, id="negative-attempt-reads-as-1"),
    ],
)
def test_backoff_growth_and_cap(attempt: int, expected_ceiling: float) -> None:
    # A draw just below 1 shows the ceiling; a draw of 0.5 shows it is scaled, not added to.
    assert backoff_delay(attempt=attempt, base_seconds=2, cap_seconds=30, rng=FixedDraw(0.5)) == (
        expected_ceiling / 2
    )
    top = backoff_delay(attempt=attempt, base_seconds=2, cap_seconds=30, rng=FixedDraw(1 - 1e-12))
    assert top == pytest.approx(expected_ceiling)
    assert top <= expected_ceiling
    assert backoff_delay(attempt=attempt, base_seconds=2, cap_seconds=30, rng=FixedDraw(0.0)) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 42, 2024])
def test_backoff_with_seeded_rng_is_reproducible(seed: int) -> None:
    reference = random.Random(seed)
    expected = [min(30.0, 2.0 * 2 ** (attempt - 1)) * reference.random() for attempt in range(1, 8)]
    rng = random.Random(seed)
    got = [backoff_delay(attempt=a, base_seconds=2, cap_seconds=30, rng=rng) for a in range(1, 8)]
    assert got == expected


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [pytest.param(a, min(60.0, 2.0 * 2 ** (a - 1)), id=f"attempt-{a}") for a in (1, 2, 3, 5, 8)],
)
def test_full_jitter_covers_zero_to_ceiling(attempt: int, ceiling: float) -> None:
    rng = random.Random(attempt)
    draws = [backoff_delay(attempt=attempt, base_seconds=2, cap_seconds=60, rng=rng) for _ in range(2000)]
    assert all(0 <= d <= ceiling for d in draws)
    # Full jitter: the whole interval is used, not just a band around the ceiling.
    assert min(draws) < 0.02 * ceiling
    assert max(draws) > 0.98 * ceiling
    assert 0.45 * ceiling < sum(draws) / len(draws) < 0.55 * ceiling


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 40])
def test_backoff_without_rng_stays_in_bounds(attempt: int) -> None:
    ceiling = min(20.0, 0.5 * 2 ** (attempt - 1))
    for _ in range(300):
        assert 0 <= backoff_delay(attempt=attempt, base_seconds=0.5, cap_seconds=20) <= ceiling


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        pytest.param(10.0, 10.0, id="honoured-when-below-cap"),
        pytest.param(0.0, 0.0, id="zero-means-retry-now"),
        pytest.param(1000.0, 300.0, id="capped-below-visibility-timeout"),
        pytest.param(math.inf, 300.0, id="infinite-is-capped"),
        pytest.param(-5.0, 4.0, id="negative-ignored-falls-back-to-backoff"),
        pytest.param(math.nan, 4.0, id="nan-ignored-falls-back-to-backoff"),
    ],
)
def test_backoff_retry_after(retry_after: float, expected: float) -> None:
    delay = backoff_delay(
        attempt=3, base_seconds=2, cap_seconds=300, retry_after=retry_after, rng=FixedDraw(0.5)
    )
    assert delay == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"base_seconds": -1, "cap_seconds": 30}, id="negative-base"),
        pytest.param({"base_seconds": 2, "cap_seconds": -1}, id="negative-cap"),
        pytest.param({"base_seconds": math.nan, "cap_seconds": 30}, id="nan-base"),
        pytest.param({"base_seconds": 2, "cap_seconds": math.nan}, id="nan-cap"),
    ],
)
def test_backoff_rejects_bad_configuration(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        backoff_delay(attempt=1, **kwargs)


def test_backoff_zero_cap_means_no_wait() -> None:
    assert backoff_delay(attempt=9, base_seconds=2, cap_seconds=0, rng=FixedDraw(0.9)) == 0.0
    assert backoff_delay(attempt=9, base_seconds=2, cap_seconds=0, retry_after=60) == 0.0


@HYPOTHESIS
@given(
    attempt=st.integers(min_value=-10, max_value=5000),
    base=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    cap=st.floats(min_value=0, max_value=1e7, allow_nan=False),
    retry_after=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    seed=st.none() | st.integers(min_value=0, max_value=2**32),
)
def test_property_backoff_within_zero_and_cap(
    attempt: int, base: float, cap: float, retry_after: float | None, seed: int | None
) -> None:
    rng = None if seed is None else random.Random(seed)
    delay = backoff_delay(
        attempt=attempt, base_seconds=base, cap_seconds=cap, retry_after=retry_after, rng=rng
    )
    assert 0 <= delay <= cap
    if retry_after is None:
        assert delay <= base * 2 ** min(max(attempt, 1) - 1, 62)


def http_date(moment: datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("120", 120.0, id="seconds"),
        pytest.param("  5 ", 5.0, id="seconds-with-whitespace"),
        pytest.param("0", 0.0, id="zero-seconds"),
        pytest.param("1.5", 1.5, id="decimal-seconds-tolerated"),
        pytest.param(http_date(NOW + timedelta(seconds=90)), 90.0, id="imf-fixdate-in-future"),
        pytest.param("Saturday, 01-Jun-24 12:02:00 GMT", 120.0, id="rfc850-date"),
        pytest.param("Sat Jun  1 12:03:00 2024", 180.0, id="asctime-date-is-gmt"),
        pytest.param("Sat, 01 Jun 2024 14:01:00 +0200", 60.0, id="numeric-offset-date"),
        pytest.param(http_date(NOW - timedelta(hours=1)), 0.0, id="past-date-means-now"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("   ", None, id="blank"),
        pytest.param("soon", None, id="garbage-word"),
        pytest.param("-5", None, id="negative-seconds"),
        pytest.param("-1.5", None, id="negative-decimal"),
        pytest.param("+5", None, id="signed-seconds"),
        pytest.param("1e3", None, id="exponent-notation"),
        pytest.param("nan", None, id="nan-spelling"),
        pytest.param("inf", None, id="inf-spelling"),
        pytest.param("5 seconds", None, id="seconds-with-unit"),
        pytest.param("Sat, 32 Jun 2024 12:00:00 GMT", None, id="impossible-date"),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_parse_retry_after_rejects_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_retry_after("5", now=NOW.replace(tzinfo=None))


@HYPOTHESIS
@given(st.text(alphabet="0123456789 .,:+-eE/GMTSatSunJunNovinfa\t", max_size=40))
def test_property_parse_retry_after_never_raises(header: str) -> None:
    result = parse_retry_after(header, now=NOW)
    assert result is None or result >= 0


@pytest.mark.parametrize(
    ("outcome", "attempt", "max_attempts", "expected"),
    [
        pytest.param(Outcome.RETRYABLE, 1, 3, True, id="first-failure-retries"),
        pytest.param(Outcome.RETRYABLE, 2, 3, True, id="second-failure-retries"),
        pytest.param(Outcome.RETRYABLE, 3, 3, False, id="last-attempt-is-final"),
        pytest.param(Outcome.RETRYABLE, 1, 1, False, id="single-attempt-never-retries"),
        pytest.param(Outcome.FATAL, 1, 3, False, id="fatal-never-retries"),
        pytest.param(Outcome.SUCCESS, 1, 3, False, id="success-never-retries"),
    ],
)
def test_should_retry(outcome: Outcome, attempt: int, max_attempts: int, expected: bool) -> None:
    assert should_retry(outcome=outcome, attempt=attempt, max_attempts=max_attempts) is expected


# ----------------------------------------------------------------------------------------------------
# Outcome classification
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(code, outcome, id=f"{code}-{outcome}")
        for code, outcome in [
            (200, Outcome.SUCCESS),
            (201, Outcome.SUCCESS),
            (204, Outcome.SUCCESS),
            (299, Outcome.SUCCESS),
            (400, Outcome.FATAL),
            (401, Outcome.FATAL),
            (404, Outcome.FATAL),
            (408, Outcome.RETRYABLE),
            (409, Outcome.FATAL),
            (429, Outcome.RETRYABLE),
            (499, Outcome.FATAL),
            (500, Outcome.RETRYABLE),
            (502, Outcome.RETRYABLE),
            (503, Outcome.RETRYABLE),
            (599, Outcome.RETRYABLE),
            (100, Outcome.FATAL),
            (301, Outcome.FATAL),
            (304, Outcome.FATAL),
            (600, Outcome.FATAL),
            (0, Outcome.FATAL),
        ]
    ],
)
def test_classify_http_status(status: int, expected: Outcome) -> None:
    assert classify_http_status(status) is expected


def http_error(code: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://launcher.invalid/", code, "status", Message(), None)


class ReadTimeout(Exception):
    """Stands in for requests/httpx timeouts, which are recognised by class name without importing them."""


class ConnectError(Exception):
    """Stands in for httpx.ConnectError."""


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(TimeoutError("read timed out"), Outcome.RETRYABLE, id="timeout"),
        pytest.param(ConnectionRefusedError(), Outcome.RETRYABLE, id="connection-refused"),
        pytest.param(ConnectionResetError(), Outcome.RETRYABLE, id="connection-reset"),
        pytest.param(http.client.RemoteDisconnected("closed"), Outcome.RETRYABLE, id="remote-disconnected"),
        pytest.param(http.client.IncompleteRead(b""), Outcome.RETRYABLE, id="incomplete-read"),
        pytest.param(socket.gaierror(-3, "temporary failure"), Outcome.RETRYABLE, id="dns-failure"),
        pytest.param(
            urllib.error.URLError(ConnectionRefusedError()), Outcome.RETRYABLE, id="urlerror-refused"
        ),
        pytest.param(urllib.error.URLError(TimeoutError()), Outcome.RETRYABLE, id="urlerror-timeout"),
        pytest.param(urllib.error.URLError("no route"), Outcome.RETRYABLE, id="urlerror-text-reason"),
        pytest.param(urllib.error.URLError(ValueError("bad")), Outcome.FATAL, id="urlerror-wrapping-bug"),
        pytest.param(http_error(503), Outcome.RETRYABLE, id="httperror-503"),
        pytest.param(http_error(429), Outcome.RETRYABLE, id="httperror-429"),
        pytest.param(http_error(404), Outcome.FATAL, id="httperror-404"),
        pytest.param(ReadTimeout(), Outcome.RETRYABLE, id="third-party-timeout-by-name"),
        pytest.param(ConnectError(), Outcome.RETRYABLE, id="third-party-connect-error-by-name"),
        pytest.param(ValueError("unknown url type"), Outcome.FATAL, id="bad-url"),
        pytest.param(PermissionError(), Outcome.FATAL, id="non-network-oserror"),
        pytest.param(KeyError("x"), Outcome.FATAL, id="programming-error"),
    ],
)
def test_classify_exception(exc: BaseException, expected: Outcome) -> None:
    assert classify_exception(exc) is expected


# ----------------------------------------------------------------------------------------------------
# Priority
# ----------------------------------------------------------------------------------------------------


def test_priority_values_match_redis_transport_order() -> None:
    assert PRIORITY_VALUES == {Priority.URGENT: 0, Priority.HIGH: 3, Priority.MEDIUM: 6, Priority.LOW: 9}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("urgent", 0, id="urgent"),
        pytest.param("high", 3, id="high"),
        pytest.param("medium", 6, id="medium"),
        pytest.param("low", 9, id="low"),
        pytest.param(Priority.HIGH, 3, id="enum-member"),
        pytest.param(" URGENT ", 0, id="case-and-whitespace-ignored"),
        pytest.param("critical", 6, id="unknown-is-medium"),
        pytest.param("", 6, id="empty-is-medium"),
        pytest.param(None, 6, id="none-is-medium"),
    ],
)
def test_priority_value(name: str, expected: int) -> None:
    assert priority_value(name) == expected


def test_the_fleet_wide_stop_skips_only_a_slot_that_would_run() -> None:
    from datetime import UTC, datetime

    from executions.policies import SkipReason, TriggerState, bounds_skip_reason

    slot = datetime(2026, 3, 2, 12, tzinfo=UTC)
    state = TriggerState(
        status="active", start_at=None, end_at=None, max_runs=None, run_count=0, stopped=True
    )
    assert bounds_skip_reason(state, slot) is SkipReason.STOPPED
    paused = TriggerState(
        status="paused", start_at=None, end_at=None, max_runs=None, run_count=0, stopped=True
    )
    assert bounds_skip_reason(paused, slot) is SkipReason.PAUSED, "the trigger's own reason comes first"
    done = TriggerState(status="active", start_at=None, end_at=None, max_runs=1, run_count=1, stopped=True)
    assert bounds_skip_reason(done, slot) is SkipReason.LIMIT_REACHED
