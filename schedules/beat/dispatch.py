"""Reserve and publish: one beat pass loads due entries, plans each one's slot, reserves the chunk with one
compare-and-set script (the lock checked atomically with it) and publishes only what it reserved.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from celery import Celery
from django.conf import settings
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import LockNotOwnedError

from schedules.beat.entries import (
    CHUNK_SIZE,
    Keys,
    TriggerEntry,
    epoch_text,
    iso,
    read_entries,
    registered_script,
    score_of,
)

# The pure policy module (no Django, no Celery) is the one table of broker priorities for fires and launches.
from toolkit import broker, metrics

#: What the beat published, on its own logger so an operator can silence it without losing the rest: one
#: INFO line per published batch (count, first and last fire), one DEBUG line per fire
#: (LOG_LEVELS=schedules.beat.fires=DEBUG). A line per fire at INFO cost a herd of 100k as many lines of the
#: beat's CPU.
fires_logger = logging.getLogger("schedules.beat.fires")

logger = logging.getLogger(__name__)

#: What the beat sends: one message per batch of fires (see `publish`).
FIRE_BATCH_TASK = "executions.fire_batch"
#: How long an entry whose schedule raises stays out of the due set before the beat tries it again.
QUARANTINE_SECONDS = 300


#: A chunk at once. KEYS schedule, lock, then the entries. ARGV[1] the lock token ('' = not required: the tick
#: endpoint), then six values per entry: expected next_slot, expected rev, mode ('advance' | 'park'), new
#: next_slot ('' = the schedule has ended), new fire_at, new score. Returns -1 when the lock is not this
#: beat's (nothing reserved), else per entry 1 reserved or 0 changed since it was read (publish nothing).
RESERVE_SCRIPT = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local out = {}
for i = 3, #KEYS do
  local key, a = KEYS[i], 2 + (i - 3) * 6
  local current = redis.pcall('HMGET', key, 's', 'r')
  if current.err or (current[1] or '') ~= ARGV[a] or (current[2] or '') ~= ARGV[a + 1] then
    out[i - 2] = 0
  else
    if ARGV[a + 2] == 'park' then
      redis.call('ZADD', KEYS[1], ARGV[a + 5], key)
    elseif ARGV[a + 3] == '' then
      redis.call('HDEL', key, 's', 'f')
      redis.call('ZREM', KEYS[1], key)
    else
      redis.call('HSET', key, 's', ARGV[a + 3], 'f', ARGV[a + 4])
      redis.call('ZADD', KEYS[1], ARGV[a + 5], key)
    end
    out[i - 2] = 1
  end
end
return out
"""


#: An idle tick's one command. KEYS schedule, heartbeat; ARGV the heartbeat's fields and values. Returns the
#: schedule's earliest member and its score (empty when the schedule is).
PEEK_SCRIPT = """
redis.call('HSET', KEYS[2], unpack(ARGV))
return redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
"""


# --------------------------------------------------------------------------------------------------------
# Publishing


@dataclass(frozen=True)
class Fire:
    """One `executions.fire` message: the slot (never "now") is the identity of the run."""

    trigger_id: str
    slot: datetime
    priority: int
    origin: str

    def as_json(self) -> dict[str, str]:
        return {"trigger_id": self.trigger_id, "slot": iso(self.slot), "origin": self.origin}


def publish(app: Celery, fires: Sequence[Fire], *, producer: Any = None) -> int:
    """Send fires by task name (beat code never imports the executions package), as fast as Celery allows:
    `executions.fire_batch` messages of up to SCHEDULER_FIRE_BATCH_SIZE fires each, one per priority level
    (a message has one broker priority), through `toolkit.broker.publish_batch` (one kombu publish batch
    for the whole call). A herd is recorded a batch per transaction instead of a slot per transaction."""
    if not fires:
        return 0
    size = max(1, int(settings.SCHEDULER_FIRE_BATCH_SIZE))
    by_priority: dict[int, list[Fire]] = {}
    for fire in fires:
        by_priority.setdefault(fire.priority, []).append(fire)
    messages = [
        broker.TaskMessage(
            args=[[[f.trigger_id, iso(f.slot), f.origin] for f in group[start : start + size]]],
            priority=priority,
        )
        for priority, group in sorted(by_priority.items())
        for start in range(0, len(group), size)
    ]
    # retry=False: inside a batch a publish only buffers. The flush is one pipeline that kombu does not
    # retry either; if it fails, the reserved slots are caught up by reconcile.
    broker.publish_batch(app, FIRE_BATCH_TASK, messages, producer=producer, batch_size=CHUNK_SIZE)
    metrics.record_due(len(fires))
    if fires_logger.isEnabledFor(logging.INFO):
        first, last = fires[0], fires[-1]
        fires_logger.info(
            "published %d fires: first trigger=%s slot=%s origin=%s, last trigger=%s slot=%s origin=%s",
            len(fires), first.trigger_id, iso(first.slot), first.origin,
            last.trigger_id, iso(last.slot), last.origin,
        )  # fmt: skip
    if fires_logger.isEnabledFor(logging.DEBUG):
        for fire in fires:
            fires_logger.debug(
                "fire trigger=%s slot=%s origin=%s", fire.trigger_id, iso(fire.slot), fire.origin
            )
    return len(fires)


# --------------------------------------------------------------------------------------------------------
# One beat pass: load due entries, plan, reserve (compare-and-set), publish


#: What Redis or the broker being unreachable looks like to the beat.
OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, BrokerError)


class LockLost(LockNotOwnedError):
    """This beat no longer holds the leader lock; the process must exit."""


class Once:
    """Log a problem with a key once, however many ticks meet it (bounded, so a flood cannot grow it)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.limit = limit

    def first(self, key: str, what: str) -> bool:
        if (key, what) in self.seen:
            return False
        if len(self.seen) >= self.limit:
            self.seen.clear()
        self.seen.add((key, what))
        return True


@dataclass
class PassResult:
    fired: list[Fire] = field(default_factory=list)
    conflicts: int = 0
    dropped: int = 0
    parked: int = 0

    @property
    def progressed(self) -> bool:
        return bool(self.fired or self.conflicts or self.dropped or self.parked)


def _test_reserve_delay() -> float:
    """Test-only: seconds to sleep between loading a chunk and reserving it, to widen the race with an edit
    on purpose (SCHEDULER_TEST_RESERVE_DELAY). Unset in production."""
    raw = os.environ.get("SCHEDULER_TEST_RESERVE_DELAY", "")
    try:
        return max(0.0, float(raw)) if raw else 0.0
    except ValueError:
        return 0.0


class BeatPass:
    """Everything between "these keys are due" and "their slots are published", shared by the beat (with its
    lock token) and the tick endpoint (without one). Per chunk: one read script, one compare-and-set script
    (the lock is checked once, atomically with every reservation of the chunk), one publish batch, with
    `keep_alive` called before the chunk and again before its reservation (the beat extends its lock there,
    so a long pass, load phase included, never outlives it)."""

    def __init__(
        self,
        *,
        app: Celery,
        client: redis.Redis,
        origin: str,
        lock_token: bytes | None = None,
        keep_alive: Callable[[], None] = lambda: None,
        producer: Any = None,
        once: Once | None = None,
    ) -> None:
        self.app, self.client, self.keys = app, client, Keys.of(app)
        self.origin = origin
        self.lock_token = lock_token
        self.keep_alive = keep_alive
        self.producer = producer
        self.once = once or Once()
        self.reserve_delay = _test_reserve_delay()

    def due_keys(self, now: datetime, *, heartbeat: Sequence[str] = ()) -> tuple[list[str], float | None]:
        """Due keys and the score of the next one not yet due: the whole idle cost of a tick. An idle tick
        is one round trip carrying one command: the earliest member and its score (ZRANGE 0 0, O(log n) and
        a one-element reply at any size) — with the beat's heartbeat (`heartbeat`: field, value, …), one
        small script that writes it and peeks, no pipeline. Only when that member is due are the due keys
        themselves read."""
        stamp = now.timestamp()
        if heartbeat:
            keys = [self.keys.schedule, self.keys.heartbeat]
            script = registered_script(self.client, PEEK_SCRIPT)
            first = script(keys=keys, args=heartbeat, client=self.client)
            earliest = float(first[1]) if first else None
        else:
            peeked = self.client.zrange(self.keys.schedule, 0, 0, withscores=True)
            earliest = float(peeked[0][1]) if peeked else None
        if earliest is None or earliest > stamp:
            return [], earliest
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(self.keys.schedule, "-inf", stamp)
            pipe.zrangebyscore(self.keys.schedule, f"({stamp}", "+inf", start=0, num=1, withscores=True)
            due, upcoming = pipe.execute()
        return due, (upcoming[0][1] if upcoming else None)

    def run(self, keys: Sequence[str], now: datetime) -> PassResult:
        result = PassResult()
        for start in range(0, len(keys), CHUNK_SIZE):
            self.keep_alive()
            self._chunk(keys[start : start + CHUNK_SIZE], now, result)
        return result

    def _chunk(self, keys: Sequence[str], now: datetime, result: PassResult) -> None:
        entries = self._load(keys, result)
        plans: list[tuple[TriggerEntry, datetime, datetime | None]] = []
        parked: list[TriggerEntry] = []
        for entry in entries:
            try:
                if entry.fire_at > now:
                    continue
                send, following = entry.definition.due_slots(entry.slot, now)
            except Exception:  # a schedule that raises is quarantined, never fatal to the beat
                if self.once.first(entry.key, "schedule raises"):
                    logger.exception(
                        "beat: schedule of %s raises; quarantined for %ss", entry.key, QUARANTINE_SECONDS
                    )
                parked.append(entry)
                continue
            plans.append((entry, send, following))
        if self.reserve_delay:
            time.sleep(self.reserve_delay)
        self.keep_alive()
        reserved, lost = self._reserve(plans, parked, now, result)
        if reserved:
            try:
                publish(self.app, reserved, producer=self.producer)
            except Exception:
                # Reserved but not sent: the slots are lost on the Redis side, and reconcile's missed-slot
                # check finds them once their misfire grace has passed.
                logger.exception(
                    "beat: publishing %d fires failed; reconcile will catch them up", len(reserved)
                )
            else:
                result.fired.extend(reserved)
                self.client.hincrby(self.keys.stats, f"fired_{self.origin}", len(reserved))
        if lost:
            raise LockLost("this beat no longer holds the lock")

    def _load(self, keys: Sequence[str], result: PassResult) -> list[TriggerEntry]:
        entries, corrupt = [], []
        for observed in read_entries(self.client, self.keys, keys):
            try:
                entries.append(TriggerEntry.from_observed(observed, app=self.app, keys=self.keys))
            except KeyError as exc:
                corrupt.append(observed.key)
                if self.once.first(observed.key, "corrupt"):
                    logger.warning("beat: cannot load %s (%s); removed from the schedule", observed.key, exc)
        if corrupt:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.zrem(self.keys.schedule, *corrupt)
                pipe.hincrby(self.keys.stats, "corrupt", len(corrupt))
                pipe.execute()
            result.dropped += len(corrupt)
        return entries

    def _reserve(
        self,
        plans: Sequence[tuple[TriggerEntry, datetime, datetime | None]],
        parked: Sequence[TriggerEntry],
        now: datetime,
        result: PassResult,
    ) -> tuple[list[Fire], bool]:
        park_score = int(now.timestamp()) + QUARANTINE_SECONDS
        keys = [self.keys.schedule, self.keys.lock]
        args: list[bytes | str | int] = [self.lock_token or b""]
        for entry, _send, following in plans:
            if following is None:
                tail: list[Any] = ["advance", "", "", ""]
            else:
                fire_at = entry.definition.fire_at(following)
                tail = ["advance", epoch_text(following), epoch_text(fire_at), score_of(fire_at)]
            keys.append(entry.key)
            args += [entry.observed.expected_slot, entry.observed.expected_rev, *tail]
        for entry in parked:
            keys.append(entry.key)
            args += [entry.observed.expected_slot, entry.observed.expected_rev, "park", "", "", park_score]
        if len(keys) == 2:
            return [], False
        replies = registered_script(self.client, RESERVE_SCRIPT)(keys=keys, args=args, client=self.client)
        if replies == -1:
            return [], True
        reserved = [
            Fire(entry.definition.trigger_id, send, entry.definition.priority, self.origin)
            for (entry, send, _following), reply in zip(plans, replies, strict=False)
            if reply == 1
        ]
        conflicts = len(plans) - len(reserved)
        result.parked += sum(replies[len(plans) :])
        result.conflicts += conflicts
        if conflicts or parked:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hincrby(self.keys.stats, "conflicts", conflicts)
                pipe.hincrby(self.keys.stats, "quarantined", len(parked))
                pipe.execute()
        return reserved, False
