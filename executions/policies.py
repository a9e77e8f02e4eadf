"""Pure scheduling policies: what to do with a slot, when to retry, how to read an HTTP outcome.

Why this module exists on its own: every decision the fire service and the launchers make about a slot
(run it, skip it and why, hold it back, retry it and after how long) is a pure function of a few timestamps
and counters. Keeping those decisions here, free of Django, Redis and Celery, means

* the rules of the design doc live in one place that can be read top to bottom,
* the unit tests drive them with fixed clocks and seeded randomness (no ``now()`` anywhere in this file:
  the caller passes ``now``), and
* the service layer only has to translate ORM rows into the plain values below and back.

All datetimes must be timezone-aware; a naive one raises ``ValueError`` rather than being silently read as
local time, because a wrong offset here means firing a slot hours early or late.
"""

from __future__ import annotations

import http.client
import math
import random
import re
import socket
import urllib.error
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

from schedules import rules as slot_rules
from schedules.vocabulary import PRIORITY_VALUES, CatchupPolicy, OverlapPolicy, Priority, priority_value
from toolkit.enums import Choices

__all__ = [
    "PRIORITY_VALUES",
    "CatchupPolicy",
    "Outcome",
    "OverlapAction",
    "OverlapPolicy",
    "Priority",
    "SkipReason",
    "SlotPlan",
    "TriggerState",
    "after_the_end",
    "apply_bounds",
    "apply_rules",
    "backoff_delay",
    "bounds_skip_reason",
    "classify_exception",
    "classify_http_status",
    "decide_overlap",
    "is_misfired",
    "parse_age",
    "parse_retry_after",
    "plan_slots",
    "priority_value",
    "should_retry",
]


# ----------------------------------------------------------------------------------------------------
# Vocabulary
# ----------------------------------------------------------------------------------------------------


class SkipReason(Choices):
    """Why a slot was recorded as skipped; stored on the execution row, so values are part of the schema."""

    PAUSED = "paused", "Trigger paused"
    COMPLETED = "completed", "Trigger completed"
    OVERLAP = "overlap", "An earlier run was still running"
    OUTSIDE_BOUNDS = "outside_bounds", "Outside the start/end bounds"
    CATCHUP_NONE = "catchup_none", "Missed; catch-up policy is none"
    CATCHUP_SUPERSEDED = "catchup_superseded", "Missed; a later slot ran instead"
    CATCHUP_WINDOW = "catchup_window", "Missed; older than the catch-up window"
    CATCHUP_CAP = "catchup_cap", "Missed; beyond the catch-up cap"
    MISFIRE = "misfire", "Started later than the misfire grace"
    #: On a waiting run: what holds it back (cleared when it starts).
    OWNER_LIMIT = "owner_limit", "Held back: the owner's limit of concurrent runs"
    WORKFLOW_LIMIT = "workflow_limit", "Held back: the owner's limit of concurrent runs of one workflow"
    LIMIT_REACHED = "limit_reached", "max_runs reached"
    STOPPED = "stopped", "The scheduler was stopped by an operator"
    CREDITS_EXHAUSTED = "credits_exhausted", "The owner's credit budget is used up"
    DELETED = "deleted", "Trigger deleted"
    OUTSIDE_WINDOW = slot_rules.OUTSIDE_WINDOW, "Outside the trigger's execution windows"
    BLACKOUT = slot_rules.BLACKOUT, "In one of the trigger's blackouts"
    CALENDAR = slot_rules.CALENDAR, "On a date the trigger's calendar excludes"
    #: On a run that was not skipped: a window or blackout moved its start to `not_before` (kept once run).
    DEFERRED = "deferred", "Deferred to the window's opening (or the blackout's end)"


def _require_aware(value: datetime, what: str) -> None:
    """Reject naive datetimes: mixed with aware ones they either raise late or, worse, shift by the TZ."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {value!r}")


def _seconds(value: float, what: str) -> float:
    """Validate a duration in seconds coming from configuration; negative durations are clamped to zero.

    Why clamp instead of raise: a negative grace or window has only one sensible reading ("no tolerance"),
    and the fire path should keep working on a misconfigured trigger. NaN has no reading at all, so it raises.
    """
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{what} must be a number of seconds, got NaN")
    return max(0.0, float(value))


# ----------------------------------------------------------------------------------------------------
# Misfire and trigger bounds
# ----------------------------------------------------------------------------------------------------


def is_misfired(fire_at: datetime, now: datetime, grace_seconds: int) -> bool:
    """True when a slot is too late to count as on time: ``now`` is strictly past ``fire_at + grace``.

    Why strictly: a message processed exactly at the end of its grace is still on time; only after that does
    the slot become "missed" and fall under the catch-up policy. A negative grace is read as zero.
    """
    _require_aware(fire_at, "fire_at")
    _require_aware(now, "now")
    return now > fire_at + timedelta(seconds=_seconds(grace_seconds, "grace_seconds"))


_STATUS_ACTIVE = "active"
_STATUS_PAUSED = "paused"
_STATUS_COMPLETED = "completed"
_KNOWN_STATUSES = frozenset({_STATUS_ACTIVE, _STATUS_PAUSED, _STATUS_COMPLETED})


@dataclass(frozen=True)
class TriggerState:
    """What the fire service knows about the trigger at decision time (a snapshot, not the ORM row)."""

    status: str  # "active" | "paused" | "completed"
    start_at: datetime | None
    end_at: datetime | None
    max_runs: int | None
    run_count: int
    #: The operators' fleet-wide stop is on (`FleetSwitch`): a slot that would run is recorded skipped.
    stopped: bool = False


def bounds_skip_reason(state: TriggerState, slot: datetime) -> SkipReason | None:
    """Why the trigger's own bounds forbid running ``slot``, or None when they allow it.

    Precedence, most final first, so the recorded reason is the one a user can act on:
    completed > paused > outside_bounds (slot < start_at or slot > end_at; both ends inclusive) >
    limit_reached (run_count >= max_runs) > stopped (the fleet-wide stop: only a slot that would run). An
    unknown status raises ``ValueError``: guessing "active" could fire a trigger someone meant to stop,
    guessing "paused" would silently lose runs.
    """
    _require_aware(slot, "slot")
    if state.status not in _KNOWN_STATUSES:
        raise ValueError(
            f"unknown trigger status {state.status!r}; expected one of {sorted(_KNOWN_STATUSES)}"
        )
    if state.status == _STATUS_COMPLETED:
        return SkipReason.COMPLETED
    if state.status == _STATUS_PAUSED:
        return SkipReason.PAUSED
    if state.start_at is not None:
        _require_aware(state.start_at, "start_at")
        if slot < state.start_at:
            return SkipReason.OUTSIDE_BOUNDS
    if state.end_at is not None:
        _require_aware(state.end_at, "end_at")
        if slot > state.end_at:
            return SkipReason.OUTSIDE_BOUNDS
    if state.max_runs is not None and state.run_count >= state.max_runs:
        return SkipReason.LIMIT_REACHED
    if state.stopped:
        return SkipReason.STOPPED
    return None


# ----------------------------------------------------------------------------------------------------
# Catch-up planning
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotPlan:
    """The decision for one slot: run it (possibly not before a given time) or record it skipped, and why."""

    slot: datetime
    run: bool  # False -> record skipped
    reason: SkipReason | None  # set when run is False
    not_before: datetime | None  # for spread: launch no earlier than this; None = now
    catchup: bool  # True when the slot was handled as a missed slot (origin "catchup")
    deferred: bool = False  # a window or blackout moved `not_before` (see `apply_rules`)

    def __post_init__(self) -> None:
        # Invariants checked at construction so a plan that says "skip" without a reason (or "run" with one)
        # can never reach the database, where it would be indistinguishable from a bug.
        _require_aware(self.slot, "slot")
        if self.run and self.reason is not None:
            raise ValueError("a plan that runs must not carry a skip reason")
        if not self.run and self.reason is None:
            raise ValueError("a plan that skips must carry a skip reason")
        if self.not_before is not None:
            if not self.run:
                raise ValueError("not_before only makes sense for a plan that runs")
            _require_aware(self.not_before, "not_before")


def _distinct_slots(
    due_slot: datetime, due_fire_at: datetime, missed: Sequence[tuple[datetime, datetime]]
) -> dict[datetime, datetime]:
    """Map slot -> fire_at with one entry per distinct slot.

    Duplicates of the due slot take the due slot's own ``fire_at`` (it is the authoritative message); other
    duplicates keep their earliest ``fire_at``, i.e. the one most likely to be misfired, because treating a
    slot as late when one of its reports says so is the conservative reading.
    """
    fire_at_by_slot: dict[datetime, datetime] = {}
    for slot, fire_at in missed:
        _require_aware(slot, "missed slot")
        _require_aware(fire_at, "missed fire_at")
        previous = fire_at_by_slot.get(slot)
        fire_at_by_slot[slot] = fire_at if previous is None else min(previous, fire_at)
    fire_at_by_slot[due_slot] = due_fire_at
    return fire_at_by_slot


def plan_slots(
    *,
    due_slot: datetime,
    due_fire_at: datetime,
    missed: Sequence[tuple[datetime, datetime]],
    now: datetime,
    policy: CatchupPolicy | str,
    window_seconds: int,
    grace_seconds: int,
    max_slots: int,
) -> list[SlotPlan]:
    """Decide, for the due slot and every missed slot, whether it runs now, runs later, or is skipped and why.

    Returns exactly one plan per distinct slot (due slot plus ``missed``), oldest first. ``missed`` may be
    unsorted and may contain duplicates (also of ``due_slot``); it is normalised here so callers can pass raw
    query results.

    The rules, in order:

    1. A slot is *on time* when it is not misfired (``is_misfired(fire_at, now, grace)`` is False).
       On-time slots are always run (``catchup=False``, ``not_before=None``) and never count against the
       window or the cap: the design doc says the slot beat just sent is always run. This applies to entries
       of ``missed`` too: an older slot still inside its grace is not missed, its own beat message may still
       be in flight, and recording it skipped would make that message find an execution and drop a run that
       was on time.
    2. Every misfired slot (including a due slot that sat in a queue past its grace) is a catch-up
       candidate (``catchup=True``). Candidates whose slot is older than ``now - window`` are skipped
       ``catchup_window``.
    3. If more than ``max_slots`` candidates remain, the newest ``max_slots`` are kept and the older ones
       are skipped ``catchup_cap`` (newest, because the most recent state is what a user waiting on the job
       wants).
    4. The catch-up policy decides the kept candidates:
       ``none`` -> all skipped ``catchup_none``; ``latest`` -> the newest runs and the rest are skipped
       ``catchup_superseded``, unless an on-time slot runs, which already is the latest run, so every
       candidate is superseded; ``fire_immediately`` -> all run, oldest first; ``spread`` -> all run with
       ``not_before = now + i * window / n`` (i = 0..n-1, first at ``now``), so the backlog is drained
       evenly over the window instead of hitting the downstream service as a burst.

    Window and cap reasons take precedence over the policy's own reason: "always bounded" in the design doc,
    and it tells a user that raising the window/cap (not changing the policy) would have run the slot.

    Trigger bounds (paused, completed, start/end, max_runs) and overlap are NOT applied here; see
    :func:`apply_bounds` and :func:`decide_overlap`. So with only misfired ``missed`` entries at most
    ``max_slots + 1`` slots run. Negative ``window_seconds``/``grace_seconds``/``max_slots`` are read as zero;
    an unknown policy raises ``ValueError``.
    """
    _require_aware(due_slot, "due_slot")
    _require_aware(due_fire_at, "due_fire_at")
    _require_aware(now, "now")
    catchup_policy = CatchupPolicy(policy)
    window = timedelta(seconds=_seconds(window_seconds, "window_seconds"))
    cap = max(0, int(max_slots))

    fire_at_by_slot = _distinct_slots(due_slot, due_fire_at, missed)
    plans: dict[datetime, SlotPlan] = {}
    candidates: list[datetime] = []  # misfired slots, oldest first
    has_on_time_run = False
    for slot in sorted(fire_at_by_slot):
        if is_misfired(fire_at_by_slot[slot], now, grace_seconds):
            candidates.append(slot)
        else:
            plans[slot] = SlotPlan(slot=slot, run=True, reason=None, not_before=None, catchup=False)
            has_on_time_run = True

    def skip(slot: datetime, reason: SkipReason) -> None:
        plans[slot] = SlotPlan(slot=slot, run=False, reason=reason, not_before=None, catchup=True)

    def run(slot: datetime, not_before: datetime | None = None) -> None:
        plans[slot] = SlotPlan(slot=slot, run=True, reason=None, not_before=not_before, catchup=True)

    oldest_allowed = now - window
    in_window: list[datetime] = []
    for slot in candidates:  # still oldest first
        if slot < oldest_allowed:
            skip(slot, SkipReason.CATCHUP_WINDOW)
        else:
            in_window.append(slot)

    excess = max(0, len(in_window) - cap)
    for slot in in_window[:excess]:
        skip(slot, SkipReason.CATCHUP_CAP)
    kept = in_window[excess:]

    if catchup_policy is CatchupPolicy.NONE:
        for slot in kept:
            skip(slot, SkipReason.CATCHUP_NONE)
    elif catchup_policy is CatchupPolicy.LATEST:
        winner = None if has_on_time_run or not kept else kept[-1]
        for slot in kept:
            if slot == winner:
                run(slot)
            else:
                skip(slot, SkipReason.CATCHUP_SUPERSEDED)
    elif catchup_policy is CatchupPolicy.FIRE_IMMEDIATELY:
        for slot in kept:
            run(slot)
    else:  # SPREAD
        # Integer microseconds and floor division: exact, monotone, and never reaches now + window.
        window_us = window // timedelta(microseconds=1)
        for i, slot in enumerate(kept):
            run(slot, now + timedelta(microseconds=window_us * i // len(kept)))

    return [plans[slot] for slot in sorted(plans)]


def apply_bounds(plans: Sequence[SlotPlan], state: TriggerState) -> list[SlotPlan]:
    """Turn planned runs that the trigger's bounds forbid into skips, counting runs towards ``max_runs``.

    Why this helper: ``bounds_skip_reason`` looks at one slot with a fixed ``run_count``, but a catch-up plan
    may run several slots at once; with ``max_runs=10`` and ``run_count=9`` only the first of three planned
    runs may go ahead. Runs are counted in slot order (oldest first, the order they are launched in).
    Plans that already skip keep their catch-up reason: that is the decision that was actually taken.
    Returned oldest first.
    """
    run_count = state.run_count
    result: list[SlotPlan] = []
    for plan in sorted(plans, key=lambda p: p.slot):
        if not plan.run:
            result.append(plan)
            continue
        reason = bounds_skip_reason(replace(state, run_count=run_count), plan.slot)
        if reason is None:
            run_count += 1
            result.append(plan)
        else:
            result.append(replace(plan, run=False, reason=reason, not_before=None))
    return result


def apply_rules(plans: Sequence[SlotPlan], rules: slot_rules.SlotRules | None) -> list[SlotPlan]:
    """Apply a trigger's windows, blackouts and excluded dates (`schedules.rules.decide`) to the plans that
    run: a forbidden slot is skipped with the rule as its reason (`outside_window`, `blackout`,
    `calendar`), or, when the trigger defers, keeps running with `not_before` moved to the first allowed
    instant (never earlier than a spread had put it). The slot stays the run's identity either way.

    Called before :func:`apply_bounds`, so a slot a rule skips does not count against ``max_runs``; plans
    that already skip keep their reason. Returned oldest first."""
    ordered = sorted(plans, key=lambda p: p.slot)
    if rules is None or rules.empty:
        return ordered
    result: list[SlotPlan] = []
    for plan in ordered:
        verdict = slot_rules.decide(rules, plan.slot) if plan.run else None
        if verdict is None or (verdict.run and verdict.not_before is None):
            result.append(plan)
        elif not verdict.run:
            result.append(replace(plan, run=False, reason=SkipReason(verdict.reason or ""), not_before=None))
        else:
            assert verdict.not_before is not None  # noqa: S101 - a deferral always names its instant
            later = max(verdict.not_before, plan.not_before) if plan.not_before else verdict.not_before
            result.append(replace(plan, not_before=later, deferred=True))
    return result


def after_the_end(plans: Sequence[SlotPlan], state: TriggerState) -> tuple[list[SlotPlan], list[SlotPlan]]:
    """Split bounded plans (what :func:`apply_bounds` returned) into those to record and those that fall
    after the trigger's end, which are recorded nowhere: ``(kept, after_end)``, each oldest first.

    Why a slot after the end leaves no row at all: a trigger that completed (its ``max_runs`` reached, its
    ``end_at`` passed, a one-off done) is finished, and its history must end with its last run. Fires for
    later slots still arrive — queued behind the run that completed it while the worker was busy, or sent
    by a beat entry not yet removed — and recording each as ``skipped`` would add rows to a finished
    trigger for as long as they trickle in.

    After the end means: the trigger is completed; the slot is after ``end_at``; ``max_runs`` was already
    reached; or a plan the bounds turned into ``limit_reached``. A plan that comes after the one whose run
    reaches ``max_runs`` is after the end too, even if a catch-up rule had skipped it. Plans before the end
    (a catch-up skip older than the last run, a paused slot) are kept as they are.
    """
    kept: list[SlotPlan] = []
    after_end: list[SlotPlan] = []
    runs = state.run_count
    ended = state.status == _STATUS_COMPLETED or (state.max_runs is not None and runs >= state.max_runs)
    for plan in sorted(plans, key=lambda p: p.slot):
        past_end_at = state.end_at is not None and plan.slot > state.end_at
        if ended or past_end_at or plan.reason in (SkipReason.COMPLETED, SkipReason.LIMIT_REACHED):
            after_end.append(plan)
            continue
        kept.append(plan)
        if plan.run:
            runs += 1
            ended = state.max_runs is not None and runs >= state.max_runs
    return kept, after_end


# ----------------------------------------------------------------------------------------------------
# Overlap
# ----------------------------------------------------------------------------------------------------


class OverlapAction(StrEnum):
    """What the fire service does with a slot given the trigger's other executions."""

    START = "start"  # launch now
    SKIP = "skip"  # record skipped, reason "overlap"
    WAIT = "wait"  # hold back; launched when the earlier ones end, in slot order
    REPLACE = "replace"  # cancel the running one(s), then launch this one


def decide_overlap(
    *, policy: OverlapPolicy | str, running: int, waiting: int, max_concurrent: int = 1
) -> OverlapAction:
    """Overlap decision for a slot that is ready to launch.

    ``running``: executions of this trigger that are running or queued (started or being started);
    ``waiting``: executions held back by an earlier WAIT. ``max_concurrent``: how many may run at once
    before the policy applies — the rules below read "something runs" as "``max_concurrent`` run"
    (a trigger allowing 3 starts its second and third slots while the first still runs). ``allow``
    ignores it.

    * ``allow`` always starts.
    * Nothing running and nothing waiting: start, whatever the policy.
    * ``skip``: skip while anything runs. ``replace``: replace while anything runs. With nothing running both
      start even if something is waiting (neither policy creates waiting executions; any left over from a
      policy change must not block them).
    * ``queue``: wait whenever something runs or waits, so slots launch in slot order.
    * ``buffer_one``: wait if nothing is waiting yet (and something runs); skip once one is already
      waiting, even when nothing runs at this instant (the waiting one is about to be promoted): waiting
      here would make two waiting executions and break "at most one waiting".

    Negative counts raise ``ValueError``: they can only come from a bug in the counting query.
    """
    if running < 0 or waiting < 0:
        raise ValueError(f"running and waiting must be >= 0, got running={running}, waiting={waiting}")
    if isinstance(max_concurrent, bool) or max_concurrent < 1:
        raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent!r}")
    overlap_policy = OverlapPolicy(policy)
    if overlap_policy is OverlapPolicy.ALLOW:
        return OverlapAction.START
    busy = running >= max_concurrent
    if overlap_policy is OverlapPolicy.BUFFER_ONE:
        if waiting > 0:
            return OverlapAction.SKIP
        return OverlapAction.WAIT if busy else OverlapAction.START
    if overlap_policy is OverlapPolicy.QUEUE:
        return OverlapAction.WAIT if busy or waiting > 0 else OverlapAction.START
    if not busy:
        return OverlapAction.START
    return OverlapAction.SKIP if overlap_policy is OverlapPolicy.SKIP else OverlapAction.REPLACE


# ----------------------------------------------------------------------------------------------------
# Retries
# ----------------------------------------------------------------------------------------------------

# 2**62 * base is far beyond any sane cap; stopping the exponent there keeps huge attempt numbers from
# overflowing float arithmetic.
_MAX_EXPONENT = 62


def should_retry(*, outcome: Outcome, attempt: int, max_attempts: int) -> bool:
    """Whether to schedule another attempt after attempt number ``attempt`` (1-based) ended with ``outcome``.

    Why spelled out: "up to max_attempts" counts the first attempt, so with ``max_attempts=3`` attempts 1 and
    2 may be retried and attempt 3 is final. Pass the same ``attempt`` to :func:`backoff_delay`.
    """
    return outcome is Outcome.RETRYABLE and attempt < max_attempts


def backoff_delay(
    *,
    attempt: int,
    base_seconds: float,
    cap_seconds: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before the next attempt, always within ``[0, cap_seconds]``.

    ``attempt`` is the number of the attempt that just failed (1-based): the ceiling is
    ``min(cap, base * 2**(attempt - 1))`` (2 s, 4 s, 8 s ... for base 2) and the delay is drawn uniformly from
    ``[0, ceiling)`` ("full jitter"). Full jitter, not "ceiling +/- a bit": when many launches fail together
    (downstream outage) it spreads their retries over the whole interval instead of re-synchronising them.

    A server's ``Retry-After`` (seconds, see :func:`parse_retry_after`) replaces the computed delay: the
    server knows when it will accept us again, and retrying sooner only earns another 429/503. It is still
    capped, because the caller's cap keeps the countdown below the broker's visibility timeout; beyond that
    the broker would redeliver the task and we would run it twice. A negative or NaN ``retry_after`` is
    ignored.

    ``rng`` makes the jitter reproducible in tests; None uses the process-wide generator. Attempts below 1 are
    read as 1. Negative or NaN base/cap raise ``ValueError`` (configuration bug, no sensible reading).
    """
    for value, what in ((base_seconds, "base_seconds"), (cap_seconds, "cap_seconds")):
        if math.isnan(value) or value < 0:
            raise ValueError(f"{what} must be >= 0, got {value!r}")
    if retry_after is not None and not math.isnan(retry_after) and retry_after >= 0:
        return float(min(cap_seconds, retry_after))
    exponent = min(max(1, attempt) - 1, _MAX_EXPONENT)
    ceiling = min(float(cap_seconds), float(base_seconds) * float(2**exponent))
    draw = rng.random() if rng is not None else random.random()  # noqa: S311 - jitter, not a secret
    return min(ceiling * draw, float(cap_seconds))


_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, or None when absent or unreadable.

    Accepts delay-seconds (``"120"``; a decimal like ``"1.5"`` is tolerated) and an HTTP-date in any of the
    three formats HTTP allows (IMF-fixdate, RFC 850, asctime; a date without zone is GMT, as HTTP requires).
    A date in the past means "now" (0.0). Negative numbers, NaN/inf spellings and garbage give None, so the
    caller falls back to its own backoff instead of trusting a value the server did not really send.
    ``now`` is passed in (not read from the clock) so the date form is testable.
    """
    _require_aware(now, "now")
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)  # an absurdly long digit string becomes inf; backoff_delay caps it
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


# ----------------------------------------------------------------------------------------------------
# Outcome classification
# ----------------------------------------------------------------------------------------------------


class Outcome(StrEnum):
    """How a launch attempt ended, from the retry logic's point of view."""

    SUCCESS = "success"
    RETRYABLE = "retryable"
    FATAL = "fatal"


# 408 (the server timed out waiting for us) and 429 (rate limited) are client-class codes that say "try again
# later"; every other 4xx says the request itself is wrong and resending it unchanged cannot help.
_RETRYABLE_4XX = frozenset({408, 429})


def classify_http_status(status: int) -> Outcome:
    """2xx -> success; 408, 429, 5xx -> retryable; anything else (other 4xx, 1xx/3xx, out of range) -> fatal.

    Why 3xx is fatal: launchers follow redirects, so one that reaches us is a loop or a misconfigured
    endpoint, which retrying does not fix. Out-of-range codes are not HTTP; better to fail visibly than
    retry forever.
    """
    if 200 <= status <= 299:
        return Outcome.SUCCESS
    if status in _RETRYABLE_4XX or 500 <= status <= 599:
        return Outcome.RETRYABLE
    return Outcome.FATAL


# Class names of third-party client errors that mean "timeout" or "could not connect" (requests, httpx,
# urllib3, redis ...). Matched by name over the MRO so this module does not have to import those libraries.
_RETRYABLE_EXCEPTION_NAMES = frozenset(
    {
        "Timeout",
        "TimeoutException",
        "TimeoutError",
        "ConnectTimeout",
        "ReadTimeout",
        "ConnectionError",
        "ConnectError",
        "NewConnectionError",
        "RemoteProtocolError",
    }
)


def classify_exception(exc: BaseException) -> Outcome:
    """Classify an exception raised by a launch attempt: timeouts and connection errors are retryable.

    ``urllib.error.HTTPError`` carries a status and is classified like one; ``URLError`` is classified by its
    underlying ``reason``. DNS failures (``socket.gaierror``) and a peer dropping the response mid-way
    (``http.client.IncompleteRead``/``RemoteDisconnected``) are treated as connection errors: all are usually
    transient. Anything else (bad URL, programming error) is fatal: retrying would repeat the same failure.
    """
    if isinstance(exc, urllib.error.HTTPError):
        return classify_http_status(exc.code)
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return classify_exception(reason) if isinstance(reason, BaseException) else Outcome.RETRYABLE
    if isinstance(exc, TimeoutError | ConnectionError | socket.gaierror | http.client.IncompleteRead):
        return Outcome.RETRYABLE
    if any(cls.__name__ in _RETRYABLE_EXCEPTION_NAMES for cls in type(exc).__mro__):
        return Outcome.RETRYABLE
    return Outcome.FATAL


# ----------------------------------------------------------------------------------------------------
# Retention
# ----------------------------------------------------------------------------------------------------

_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_AGE = re.compile(r"(\d+)([smhdw])")


def parse_age(text: str) -> timedelta:
    """An age such as ``90d``, ``12h``, ``30m``, ``45s``, ``2w`` or a sum like ``1d12h``; ``ValueError`` for
    anything else, including zero (an age of nothing would prune every finished run, surely a typo)."""
    compact = text.strip().lower().replace(" ", "") if isinstance(text, str) else ""
    parts = _AGE.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not an age like 90d, 12h, 30m or 1d12h")
    seconds = sum(int(n) * _AGE_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    if seconds > 100 * 366 * 86_400:
        raise ValueError(f"{text!r} is longer than a century")
    return timedelta(seconds=seconds)
