"""The fleet's metric events, written by beats and workers; `operations.metrics` serves them at `/metrics`.

Why Redis and not prometheus-client's own counters: the events happen in beats and workers, the scrape
hits one web process, and they may all run in different containers — `PROMETHEUS_MULTIPROC_DIR` cannot
span containers. So every process adds its events to a few Redis hashes (HINCRBY / HINCRBYFLOAT in one
pipeline per event, after the database commit, fire-and-forget with sub-second timeouts: a Redis hiccup
loses a data point, never a fire or a launch), and a custom collector reads them at scrape time together
with what is better computed then (trigger counts from the database, queue depths and the leader lock from
Redis). Counters therefore survive process restarts, and reset only when Redis loses its data.

Keys (``<prefix>`` is ``REDBEAT_KEY_PREFIX``)::

    <prefix>::metrics:counters      hash  "<name>" or "<name>|<label>=<value>" -> count
    <prefix>::metrics:hist:<name>   hash  "le:<bound>" -> observations in that bucket alone (not cumulative),
                                          "count", "sum"
    <prefix>::beat                  hash  the leader's heartbeat: host, pid, tick_at (unix), tick_seconds

Writers: `record_due` (beat, per publish batch), `runs_recorded` (fire path and manual runs),
`runs_skipped` (a run skipped at its launch), `attempts_recorded` (launch), `runs_finished` (every end of a
run: its duration and the usage it reported), the beat's heartbeat (every tick, in the script of its peek
at the schedule; `beat_heartbeat` is the same write on its own). Credits and cost are sums of decimals
(HINCRBYFLOAT), the other counters whole counts.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import redis
from django.conf import settings
from django.db import transaction
from redis.typing import EncodableT, FieldT

from toolkit import redisurl

logger = logging.getLogger(__name__)


class RunRecord(Protocol):
    """What the writers read of an execution (the toolkit knows no app's models)."""

    status: str
    skip_reason: str
    origin: str
    fire_at: datetime | None
    created_at: datetime
    duration_ms: int | None
    credits_used: Decimal | None
    input_tokens: int | None
    output_tokens: int | None
    cost: Decimal | None


#: Writes must never hold up a fire or a launch: a Redis that does not answer within this is skipped.
WRITE_TIMEOUT_SECONDS = 0.5
READ_TIMEOUT_SECONDS = 2.0
INF = float("inf")


# --- Definitions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CounterDef:
    name: str  # without the `_total` suffix, which the exposition adds
    doc: str
    label: str | None = None


@dataclass(frozen=True)
class HistogramDef:
    name: str
    doc: str
    buckets: tuple[float, ...]  # upper bounds, ascending, +Inf last

    def bucket_of(self, value: float) -> float:
        return next(bound for bound in self.buckets if value <= bound)


DUE = CounterDef("scheduler_schedules_due", "Slots that came due and were sent to the fire task by a beat.")
EMITTED = CounterDef("scheduler_runs_emitted", "Runs recorded to be launched (scheduled, caught up, manual).")
SKIPPED = CounterDef("scheduler_runs_skipped", "Slots recorded as skipped, by reason.", label="reason")
FAILED_LAUNCH = CounterDef(
    "scheduler_runs_failed_launch", "Runs that ended failed or timed out because their launch failed."
)
ATTEMPTS = CounterDef("scheduler_run_attempts", "Launch attempts, by outcome.", label="outcome")
AFTER_END = CounterDef(
    "scheduler_slots_after_end",
    "Fires for slots after their trigger's end (completed, past end_at or max_runs): nothing recorded.",
)
AUTO_PAUSED = CounterDef(
    "scheduler_triggers_auto_paused", "Triggers paused by their auto_pause_after_failures limit."
)
USAGE_CREDITS = CounterDef("scheduler_usage_credits", "Credits that ended runs reported using.")
USAGE_TOKENS = CounterDef(
    "scheduler_usage_tokens", "Tokens that ended runs reported using, by kind (input, output).", label="kind"
)
USAGE_COST = CounterDef("scheduler_usage_cost", "Cost that ended runs reported.")
RUNS_WITH_USAGE = CounterDef("scheduler_runs_with_usage", "Ended runs that reported usage.")
COUNTERS = (
    DUE, EMITTED, SKIPPED, FAILED_LAUNCH, ATTEMPTS, AFTER_END, AUTO_PAUSED, RUNS_WITH_USAGE, USAGE_CREDITS,
    USAGE_TOKENS, USAGE_COST,
)  # fmt: skip

LATENESS = HistogramDef(
    "scheduler_fire_lateness_seconds",
    "Time from a slot's fire_at to its execution being recorded (scheduled and tick fires).",
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, INF),
)
DURATION = HistogramDef(
    "scheduler_run_duration_seconds",
    "Run time of finished runs, from the target accepting it to its end.",
    (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, INF),
)
HISTOGRAMS = (LATENESS, DURATION)


def _prefix() -> str:
    return f"{settings.REDBEAT_KEY_PREFIX}::"


def counters_key() -> str:
    return f"{_prefix()}metrics:counters"


def histogram_key(histogram: HistogramDef) -> str:
    return f"{_prefix()}metrics:hist:{histogram.name}"


def beat_key() -> str:
    return f"{_prefix()}beat"


def counter_field(counter: CounterDef, label_value: str | None = None) -> str:
    return counter.name if label_value is None else f"{counter.name}|{counter.label}={label_value}"


def bucket_field(bound: float) -> str:
    return "le:+Inf" if bound == INF else f"le:{bound:g}"


@functools.lru_cache(maxsize=8)
def _client(url: str, timeout: float) -> redis.Redis:
    """One client (one connection pool) per process and URL; redis-py resets pools after a fork."""
    return redisurl.connect(
        url, master=settings.REDIS_SENTINEL_MASTER, socket_timeout=timeout, socket_connect_timeout=timeout
    )


def write_client() -> redis.Redis:
    return _client(settings.REDIS_URL, WRITE_TIMEOUT_SECONDS)


# --- Writing ----------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """The Redis writes of one event, sent in one pipeline."""

    counts: dict[str, int]
    observations: list[tuple[HistogramDef, float]]
    amounts: dict[str, Decimal] = dataclasses.field(default_factory=dict)  # decimal sums (credits, cost)

    @classmethod
    def empty(cls) -> Batch:
        return cls(counts={}, observations=[])

    def count(self, counter: CounterDef, amount: int = 1, label_value: str | None = None) -> None:
        field = counter_field(counter, label_value)
        self.counts[field] = self.counts.get(field, 0) + amount

    def add(self, counter: CounterDef, amount: Decimal) -> None:
        field = counter_field(counter)
        self.amounts[field] = self.amounts.get(field, Decimal(0)) + amount

    def observe(self, histogram: HistogramDef, value: float) -> None:
        self.observations.append((histogram, max(0.0, value)))

    def send(self) -> None:
        if not self.counts and not self.observations and not self.amounts:
            return
        try:
            with write_client().pipeline(transaction=False) as pipe:
                for field, amount in self.counts.items():
                    pipe.hincrby(counters_key(), field, amount)
                for field, amount_sum in self.amounts.items():
                    pipe.hincrbyfloat(counters_key(), field, float(amount_sum))
                # Summed per histogram first: a batch of 200 runs is a handful of commands, not 600.
                buckets: dict[tuple[str, str], int] = {}
                totals: dict[str, list[float]] = {}
                for histogram, value in self.observations:
                    key = histogram_key(histogram)
                    field = bucket_field(histogram.bucket_of(value))
                    buckets[(key, field)] = buckets.get((key, field), 0) + 1
                    total = totals.setdefault(key, [0, 0.0])
                    total[0] += 1
                    total[1] += value
                for (key, field), amount in buckets.items():
                    pipe.hincrby(key, field, amount)
                for key, (count, value_sum) in totals.items():
                    pipe.hincrby(key, "count", int(count))
                    pipe.hincrbyfloat(key, "sum", value_sum)
                pipe.execute()
        except redis.RedisError as exc:  # a lost data point, never a failed fire
            logger.debug("metrics: write skipped (%s: %s)", type(exc).__name__, exc)


def record_due(count: int) -> None:
    """Beat: `count` due slots were published to the fire task."""
    if count:
        batch = Batch.empty()
        batch.count(DUE, count)
        batch.send()


def runs_recorded(executions: Iterable[RunRecord]) -> None:
    """Fire path and manual runs, once the executions are committed: skipped ones count by reason, the
    others as emitted; lateness is observed for slots fired on time (schedule / tick), from the row's
    creation: a catch-up run is late by design and would drown the histogram."""
    batch = Batch.empty()
    for execution in executions:
        if execution.status == "skipped":
            batch.count(SKIPPED, label_value=execution.skip_reason or "unknown")
        else:
            batch.count(EMITTED)
        if execution.origin in ("schedule", "tick") and execution.fire_at and execution.created_at:
            batch.observe(LATENESS, (execution.created_at - execution.fire_at).total_seconds())
    batch.send()


def slots_after_end(count: int) -> None:
    """Fire path, after commit: `count` slots fell after their trigger's end and recorded no row."""
    if count:
        batch = Batch.empty()
        batch.count(AFTER_END, count)
        batch.send()


def trigger_auto_paused() -> None:
    """After commit: a trigger's failure streak paused it."""
    batch = Batch.empty()
    batch.count(AUTO_PAUSED)
    batch.send()


def attempts_recorded(outcomes: Iterable[str]) -> None:
    """Launch, once the attempts are committed: each attempt ended with its outcome; a failed or timed-out
    one is final (retryable failures are recorded as `retryable`), so it also counts as a failed launch."""
    batch = Batch.empty()
    for outcome in outcomes:
        batch.count(ATTEMPTS, label_value=outcome)
        if outcome in ("failed", "timed_out"):
            batch.count(FAILED_LAUNCH)
    batch.send()


def runs_skipped(reasons: Iterable[str]) -> None:
    """After commit: runs recorded to be launched were skipped when their launch came (each counted once
    more, by its reason, beside the `emitted` it already counted)."""
    batch = Batch.empty()
    for reason in reasons:
        batch.count(SKIPPED, label_value=reason or "unknown")
    batch.send()


def runs_finished(executions: Iterable[RunRecord]) -> None:
    """Every end of a run (called inside the transaction that ends it): its duration, when it ran at all,
    and the usage it reported. Sent after the commit — a rolled-back end is not an end, and no Redis round
    trip is made while the run's rows are locked. Outside a transaction `on_commit` runs at once."""
    batch = Batch.empty()
    for execution in executions:
        if execution.duration_ms is not None:
            batch.observe(DURATION, execution.duration_ms / 1000)
        figures = (execution.credits_used, execution.input_tokens, execution.output_tokens, execution.cost)
        if all(figure is None for figure in figures):
            continue
        batch.count(RUNS_WITH_USAGE)
        if execution.credits_used is not None:
            batch.add(USAGE_CREDITS, execution.credits_used)
        if execution.cost is not None:
            batch.add(USAGE_COST, execution.cost)
        for kind, tokens in (("input", execution.input_tokens), ("output", execution.output_tokens)):
            if tokens:
                batch.count(USAGE_TOKENS, tokens, label_value=kind)
    if batch.observations or batch.counts:
        transaction.on_commit(batch.send, robust=True)


def heartbeat_identity() -> list[str]:
    """The heartbeat's fields that name the beat (host, pid), as field, value, …"""
    return ["host", socket.gethostname(), "pid", str(os.getpid())]


def beat_heartbeat(duration: float) -> None:
    """Beat, every tick: the leader's identity, the wall time of this tick and how long it took. Wall time
    (not the scheduler's clock): it is compared across hosts by /healthz and the status page. The beat
    writes the same fields (`heartbeat_identity`, tick_at, tick_seconds) to `beat_key()` in its tick's one
    round trip (`schedules.beat.dispatch.PEEK_SCRIPT`); this is the same write on its own."""
    mapping: dict[FieldT, EncodableT] = {
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "tick_at": f"{time.time():.3f}",
        "tick_seconds": f"{duration:.6f}",
    }
    try:
        write_client().hset(beat_key(), mapping=mapping)
    except redis.RedisError as exc:
        logger.debug("metrics: heartbeat skipped (%s: %s)", type(exc).__name__, exc)


# --- Reading ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heartbeat:
    host: str
    pid: int
    tick_at: float  # unix seconds
    tick_seconds: float

    @property
    def identity(self) -> str:
        return f"{self.host}:{self.pid}"

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.tick_at)

    @classmethod
    def parse(cls, raw: Mapping[bytes | str, bytes | str]) -> Heartbeat | None:
        values = {as_text(k): as_text(v) for k, v in raw.items()}
        try:
            return cls(
                host=values["host"],
                pid=int(values["pid"]),
                tick_at=float(values["tick_at"]),
                tick_seconds=float(values["tick_seconds"]),
            )
        except (KeyError, ValueError):
            return None


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def read_client() -> redis.Redis:
    return _client(settings.REDIS_URL, READ_TIMEOUT_SECONDS)


def read_heartbeat(client: redis.Redis) -> Heartbeat | None:
    return Heartbeat.parse(client.hgetall(beat_key()))


def lock_key() -> str:
    from celery import current_app

    return str(current_app.conf.redbeat_lock_key)
