"""The one place that talks to RedBeat and its Redis keys: the beat scheduler the fleet runs, the sync of one
trigger after every service write, the reconcile that rebuilds Redis from the database, and the beat pass
that the tick endpoint shares with the beat.

Key layout (``<prefix>`` is ``REDBEAT_KEY_PREFIX``, default ``redbeat``)::

    <prefix>::lock           string  the leader lock: a redis-py Lock token with a TTL of REDBEAT_LOCK_TIMEOUT
    <prefix>:schedule        zset    entry key -> due time in whole unix seconds, ceil(fire_at): never early
    <prefix>:trigger:<uuid>  hash    one trigger's entry
        definition  JSON {"task": "executions.fire", "args": ["<uuid>"], "options": {"priority": 0|3|6|9},
                          "schedule": {"__type__": "trigger", <ScheduleSpec fields>, "jitter_seconds": n}}
        next_slot   ISO-8601 UTC: the next slot the beat owes (the nominal instant: the run's identity)
        fire_at     unix seconds: next_slot plus its deterministic jitter (when it becomes due)
        rev         integer, +1 on every write made from the database (sync, reconcile)
        catchup     ISO-8601 UTC: the last missed slot reconcile sent, so each is sent once
    <prefix>::stats          hash    counters: fired_<origin>, conflicts, corrupt, quarantined
    <prefix>::reconciled     string  taken (TTL one reconcile period) by a tick endpoint call that reconciles
    <prefix>::built          string  set when a full reconcile completed: its absence (FLUSHDB, a Redis
                                     restarted empty, a first start) is what makes the leader rebuild
    <prefix>::watermark      string  ISO-8601 UTC start of the last completed repair: triggers changed
                                     (updated_at) before it, less an overlap, are known to be in Redis
    <prefix>::housekeeping:<task>  string  taken (TTL its period) by whoever sends that periodic system task

A removed entry (trigger paused, completed, deleted or gone) keeps only ``rev``, as a tombstone that expires
after TOMBSTONE_SECONDS: a revision must never repeat while a beat pass that read the old one may still be
running, or an entry removed and re-created in between could pass its compare-and-set.

Every writer goes through one guard, a Lua compare-and-set on (next_slot, rev) as the writer read them:

* the beat reserves a due slot (advances next_slot, fire_at and the score) only while it holds the lock
  token and the entry is unchanged, and publishes only what it reserved. An edit or delete racing a tick
  changes rev, so the tick publishes nothing for that entry: no slot of an old schedule, no resurrection.
* the tick endpoint reserves the same way, without the lock requirement, so it is safe beside a beat.
* sync and reconcile write what the database says (rev + 1), only if the entry is still what they read
  before reading the database. Two syncs of one trigger racing each other therefore converge on the newer
  row, and a reconcile never overwrites a newer sync with an older row.

The hot path never touches the database. Three repairs keep Redis true to it: the leader's periodic one (on
taking the lock and every SCHEDULER_RECONCILE_SECONDS) reads only the triggers changed since the last
repair's watermark; a slow audit compares everything, a slice at a time within a CPU budget; and a full
reconcile (``manage.py sync_schedules``, or the leader when ``::built`` is gone after FLUSHDB or an empty
restart) rebuilds every entry.

The scripts touch several keys at once (entries, the schedule, the lock), so all of them must live on one
Redis (or, on a cluster, share a hash slot through a ``{...}`` prefix).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any

import redis
from celery import Celery
from celery.schedules import BaseSchedule, schedstate
from django.conf import settings
from django.db import close_old_connections
from kombu.exceptions import OperationalError as BrokerError
from redbeat.schedulers import (
    LUA_EXTEND_TO_SCRIPT,
    RedBeatScheduler,
    RedBeatSchedulerEntry,
    ensure_conf,
    get_redis,
)
from redis.exceptions import LockNotOwnedError, ResponseError

from schedules import timing
from schedules.models import Trigger

# The pure policy module (no Django, no Celery) is the one table of broker priorities for fires and launches.
from schedules.vocabulary import priority_value
from toolkit import broker, clock, metrics

logger = logging.getLogger(__name__)
#: One INFO line per published fire, on its own logger so an operator can silence it without losing the rest.
fires_logger = logging.getLogger("schedules.beat.fires")

FIRE_TASK = "executions.fire"
#: What the beat sends: one message per batch of fires (see `publish`).
FIRE_BATCH_TASK = "executions.fire_batch"
#: Entries loaded, reserved and published together: one read script, one compare-and-set script, one publish
#: batch per chunk.
CHUNK_SIZE = 1000
#: How long a removed entry's rev survives (see the module docstring); far longer than any beat pass.
TOMBSTONE_SECONDS = 3600
#: How long an entry whose schedule raises stays out of the due set before the beat tries it again.
QUARANTINE_SECONDS = 300
#: Conflicting writes a sync retries before leaving the entry to reconcile.
SYNC_ATTEMPTS = 8
#: Triggers one reconcile pass sends a missed slot for; the rest wait for the next pass.
RECONCILE_MAX_CATCHUP = 500
#: The audit's slice (rows, or schedule members) and the least slack a tick must have to run one: ~30 ms of
#: work, only when the next fire is at least this far off, so the audit never delays a due slot.
AUDIT_ROWS = 250
AUDIT_SLACK_SECONDS = 0.25
TINY = timedelta(microseconds=1)


# --------------------------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True)
class Keys:
    """The key names, derived from the Celery app's RedBeat configuration so the beat, the web process and
    the management command can never disagree about them."""

    prefix: str
    schedule: str
    lock: str

    @classmethod
    def of(cls, app: Celery) -> Keys:
        conf = ensure_conf(app)
        return cls(prefix=conf.key_prefix, schedule=conf.schedule_key, lock=conf.lock_key)

    @property
    def stats(self) -> str:
        return f"{self.prefix}::stats"

    @property
    def reconciled(self) -> str:
        return f"{self.prefix}::reconciled"

    @property
    def built(self) -> str:
        return f"{self.prefix}::built"

    @property
    def watermark(self) -> str:
        return f"{self.prefix}::watermark"

    @property
    def entry_pattern(self) -> str:
        return f"{self.prefix}:trigger:*"

    def entry(self, trigger_id: uuid.UUID | str) -> str:
        return f"{self.prefix}:trigger:{trigger_id}"

    def housekeeping(self, task: str) -> str:
        return f"{self.prefix}::housekeeping:{task}"

    def trigger_id(self, key: str) -> uuid.UUID | None:
        """The trigger an entry key belongs to, or None for a key that is not one of ours."""
        head = f"{self.prefix}:trigger:"
        if not key.startswith(head):
            return None
        try:
            return uuid.UUID(key[len(head) :])
        except ValueError:
            return None


def celery_app() -> Celery:
    from celery import current_app as app

    return app


def redis_client(app: Celery | None = None) -> redis.Redis:
    """RedBeat's own client (decoded responses), so every path shares its configuration."""
    return get_redis(app or celery_app())


# --------------------------------------------------------------------------------------------------------
# Encoding


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def score_of(fire_at: datetime) -> int:
    """Whole seconds, rounded up: an entry is never due before its fire_at."""
    return math.ceil(fire_at.timestamp())


def epoch_text(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


class CorruptEntry(KeyError):
    """An entry Redis holds that cannot be read. A KeyError because that is the one exception RedBeat's
    loader handles (it drops the key from the schedule)."""


_SPEC_DATETIMES = ("anchor_at", "run_at", "start_at", "end_at")
_SPEC_TEXTS = ("kind", "cron_expression", "timezone")
_SPEC_INTS = ("interval_seconds", "max_runs")


def _spec_to_json(spec: timing.ScheduleSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": spec.kind, "timezone": spec.timezone}
    for name in ("cron_expression", *_SPEC_INTS):
        if getattr(spec, name) is not None:
            data[name] = getattr(spec, name)
    for name in _SPEC_DATETIMES:
        if getattr(spec, name) is not None:
            data[name] = iso(getattr(spec, name))
    return data


def _spec_from_json(data: dict[str, Any]) -> timing.ScheduleSpec:
    """Types only; whether the schedule makes sense is found out when it is evaluated (and quarantined)."""
    values: dict[str, Any] = {}
    for name in _SPEC_TEXTS:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise CorruptEntry(f"schedule.{name} is not text")
        values[name] = value
    for name in _SPEC_INTS:
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise CorruptEntry(f"schedule.{name} is not an integer")
        values[name] = value
    for name in _SPEC_DATETIMES:
        value = data.get(name)
        values[name] = _parse_instant(value, f"schedule.{name}") if value is not None else None
    if values["kind"] not in {"cron", "interval", "once"}:
        raise CorruptEntry(f"unknown schedule kind {values['kind']!r}")
    values["timezone"] = values["timezone"] or "UTC"
    return timing.ScheduleSpec(**values)


def _parse_instant(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise CorruptEntry(f"{what} is not an ISO-8601 instant")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CorruptEntry(f"{what} is not an ISO-8601 instant") from None
    if parsed.tzinfo is None:
        raise CorruptEntry(f"{what} has no offset")
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class EntryDefinition:
    """What an entry fires and when: everything the beat needs, so its hot path never reads the database."""

    trigger_id: str
    spec: timing.ScheduleSpec
    jitter_seconds: int
    priority: int

    @classmethod
    def of(cls, trigger: Trigger) -> EntryDefinition:
        from schedules import validation

        return cls(
            trigger_id=str(trigger.pk),
            spec=validation.spec_of(trigger),
            jitter_seconds=trigger.jitter_seconds,
            priority=priority_value(trigger.priority),
        )

    @cached_property
    def encoded(self) -> str:
        """The definition as stored: compact and key-sorted, so equal definitions are equal bytes."""
        schedule = {"__type__": "trigger", **_spec_to_json(self.spec), "jitter_seconds": self.jitter_seconds}
        document = {
            "task": FIRE_TASK,
            "args": [self.trigger_id],
            "options": {"priority": self.priority},
            "schedule": schedule,
        }
        return json.dumps(document, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, trigger_id: str, raw: str) -> EntryDefinition:
        """Every way a definition can be wrong becomes CorruptEntry (a KeyError)."""
        try:
            document = json.loads(raw)
        except (TypeError, ValueError):
            raise CorruptEntry("definition is not JSON") from None
        if not isinstance(document, dict):
            raise CorruptEntry("definition is not a JSON object")
        schedule = document.get("schedule")
        if not isinstance(schedule, dict) or schedule.get("__type__") != "trigger":
            kind = schedule.get("__type__") if isinstance(schedule, dict) else type(schedule).__name__
            raise CorruptEntry(f"unknown schedule type {kind!r}")
        if document.get("task") != FIRE_TASK or document.get("args") != [trigger_id]:
            raise CorruptEntry("definition is not this trigger's")
        options = document.get("options")
        priority = options.get("priority") if isinstance(options, dict) else None
        jitter = schedule.get("jitter_seconds", 0)
        if not isinstance(priority, int) or not 0 <= priority <= 9:
            raise CorruptEntry("options.priority is not a broker priority")
        if isinstance(jitter, bool) or not isinstance(jitter, int) or jitter < 0:
            raise CorruptEntry("schedule.jitter_seconds is not a whole number of seconds")
        return cls(trigger_id, _spec_from_json(schedule), jitter, priority)

    def fire_at(self, slot: datetime) -> datetime:
        return slot + timing.jitter_offset(self.trigger_id, slot, self.jitter_seconds)

    def next_after(self, moment: datetime) -> datetime | None:
        return _next_slot(self.spec, moment)

    def due_slots(self, slot: datetime, now: datetime) -> tuple[datetime, datetime | None]:
        """The slot to send for an entry due at `slot`, and the slot after it.

        Normally exactly one slot is due. When the beat is behind by several (it was down, the entry was
        quarantined), the *latest* due slot is sent: the fire task resolves the missed ones before it by
        the trigger's catch-up policy, which it could not do if handed the oldest one first."""
        following = self.next_after(slot)
        if following is None or self.fire_at(following) > now:
            return slot, following
        tail = _last_slots_until(self.spec, following, now, spacing=following - slot)
        send = tail[-1]
        if self.fire_at(send) > now:  # its jitter has not elapsed yet: the one before it is the due one
            send = tail[-2] if len(tail) > 1 else slot
        return send, self.next_after(send)


@lru_cache(maxsize=65536)
def _next_slot(spec: timing.ScheduleSpec, after: datetime) -> datetime | None:
    """Memoised per (schedule, instant): a herd of entries on one expression costs one computation per slot.
    max_runs is left to the execution side (it counts runs, skips aside, and completes the trigger)."""
    return timing.next_slot(spec, after)


def _last_slots_until(
    spec: timing.ScheduleSpec, lowest: datetime, now: datetime, *, spacing: timedelta
) -> list[datetime]:
    """The last (up to two) slots in [lowest, now], `lowest` being one of them. Searched backwards from now in
    a window that doubles from two spacings, so a beat that was down for a day does not walk every slot."""
    width = max(spacing, timedelta(seconds=1)) * 2
    while True:
        start = now - width
        if start < lowest:
            start = lowest - TINY
        found = timing.slots_between(spec, start, now, limit=100_000)
        if len(found) >= 2 or start < lowest:
            return found[-2:] or [lowest]
        width *= 2


# --------------------------------------------------------------------------------------------------------
# Reading entries


ENTRY_FIELDS = ("definition", "next_slot", "fire_at", "rev", "catchup")


@dataclass(frozen=True)
class Observed:
    """One entry as Redis holds it: raw values (what a compare-and-set compares) and whether it is usable."""

    key: str
    definition_raw: str | None = None
    next_slot_raw: str | None = None
    fire_at_raw: str | None = None
    rev_raw: str | None = None
    catchup_raw: str | None = None
    score: float | None = None
    wrong_type: bool = False

    @classmethod
    def of(cls, key: str, reply: Any) -> Observed:
        if not isinstance(reply, list):
            return cls(key=key, wrong_type=True)
        fields = [*reply, None, None, None, None, None, None][:6]
        definition, next_slot, fire_at, rev, catchup = fields[:5]
        return cls(key, definition, next_slot, fire_at, rev, catchup, score=_score(fields[5]))

    @property
    def expected_slot(self) -> str:
        return self.next_slot_raw or ""

    @property
    def expected_rev(self) -> str:
        return self.rev_raw or ""

    @property
    def exists(self) -> bool:
        """An entry the beat would fire (a tombstone does not count)."""
        return self.wrong_type or self.definition_raw is not None or self.score is not None


def _score(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float | str) else None


#: KEYS entry keys. ARGV[1] the schedule key, or '' to skip scores. Per key: its ENTRY_FIELDS (plus its score
#: when asked), or 0 for a key of another type: one bad key must not fail the chunk.
READ_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local fields = redis.pcall('HMGET', key, 'definition', 'next_slot', 'fire_at', 'rev', 'catchup')
  if fields.err then
    out[i] = 0
  else
    if ARGV[1] ~= '' then fields[6] = redis.call('ZSCORE', ARGV[1], key) end
    out[i] = fields
  end
end
return out
"""


def read_entries(client: redis.Redis, keys: Sequence[str], *, schedule_key: str = "") -> list[Observed]:
    """One round trip for a chunk of entries: a Lua loop of HMGETs costs half what a pipeline of them does
    (redis-py packs and parses one command instead of a thousand)."""
    if not keys:
        return []
    replies = _script(client, READ_SCRIPT)(keys=list(keys), args=[schedule_key], client=client)
    return [Observed.of(key, reply) for key, reply in zip(keys, replies, strict=True)]


class TriggerSchedule(BaseSchedule):
    """The Celery schedule object of an entry: our timing module, never Celery's crontab."""

    def __init__(self, definition: EntryDefinition, app: Celery | None = None) -> None:
        super().__init__(nowfun=clock.now, app=app)
        self.definition = definition

    # None (no run after last_run_at) is what RedBeat's due_at expects; celery-types only allows a timedelta.
    def remaining_estimate(self, last_run_at: datetime) -> timedelta | None:  # type: ignore[override]
        following = self.definition.next_after(last_run_at)
        return None if following is None else self.definition.fire_at(following) - self.now()

    def is_due(self, last_run_at: datetime) -> schedstate:
        remaining = self.remaining_estimate(last_run_at)
        if remaining is None:
            return schedstate(False, None)  # type: ignore[arg-type]  # no next run; celery-types wants a float
        seconds = remaining.total_seconds()
        return schedstate(seconds <= 0, max(seconds, 0.0))

    def __repr__(self) -> str:
        return f"<TriggerSchedule {self.definition.spec}>"


class TriggerEntry(RedBeatSchedulerEntry):
    """An entry loaded from its hash. `from_key` reads definition, next_slot, fire_at and rev with one HMGET;
    anything unreadable (bad JSON, unknown type, WRONGTYPE, missing fields) becomes a KeyError, the only
    exception RedBeat's loader handles. Writes go through the module's scripts, never
    through RedBeat's `save`/`next`, which would write the `meta` field we do not use."""

    def __init__(
        self,
        *,
        key: str,
        definition: EntryDefinition,
        slot: datetime,
        fire_at: datetime,
        observed: Observed,
        app: Celery | None = None,
    ) -> None:
        super().__init__(
            name=key,
            task=FIRE_TASK,
            args=[definition.trigger_id],
            kwargs={},
            options={"priority": definition.priority},
            app=app,
            last_run_at=slot,
        )
        # Set after the base constructor: Celery's maybe_schedule() coercion costs ~20 us an entry, for a
        # herd of 10k a fifth of a second, and a TriggerSchedule needs no coercing.
        self.schedule = TriggerSchedule(definition, app=app)
        self.definition = definition
        self.slot = slot
        self.fire_at = fire_at
        self.observed = observed

    @classmethod
    def from_key(cls, key: str, app: Celery | None = None) -> TriggerEntry:
        app = app or celery_app()
        try:
            (observed,) = read_entries(redis_client(app), [key])
        except ResponseError as exc:
            raise CorruptEntry(f"unreadable: {exc}") from None
        return cls.from_observed(observed, app=app)

    @classmethod
    def from_observed(
        cls, observed: Observed, *, app: Celery | None, keys: Keys | None = None
    ) -> TriggerEntry:
        keys = keys or Keys.of(app or celery_app())
        if observed.wrong_type:
            raise CorruptEntry("not a hash (WRONGTYPE)")
        trigger_id = keys.trigger_id(observed.key)
        if trigger_id is None:
            raise CorruptEntry("not a trigger entry key")
        if observed.definition_raw is None or observed.next_slot_raw is None or observed.fire_at_raw is None:
            raise CorruptEntry("missing definition, next_slot or fire_at")
        definition = EntryDefinition.from_json(str(trigger_id), observed.definition_raw)
        slot = _parse_instant(observed.next_slot_raw, "next_slot")
        try:
            fire_at = datetime.fromtimestamp(float(observed.fire_at_raw), UTC)
        except (ValueError, OverflowError, OSError):
            raise CorruptEntry("fire_at is not a unix time") from None
        return cls(
            key=observed.key, definition=definition, slot=slot, fire_at=fire_at, observed=observed, app=app
        )

    @property
    def key(self) -> str:
        """The hash's own key (RedBeat's would prepend the prefix to the name a second time)."""
        return self.observed.key

    @property
    def due_at(self) -> datetime:
        return self.fire_at

    @property
    def score(self) -> int:
        return score_of(self.fire_at)

    def is_due(self) -> schedstate:
        remaining = (self.fire_at - clock.now()).total_seconds()
        return schedstate(remaining <= 0, max(remaining, 0.0))

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("trigger entries are written by schedules.redbeat_sync, not by RedBeat")

    save = delete = reschedule = _next_instance = __next__ = next = _refuse


# --------------------------------------------------------------------------------------------------------
# Compare-and-set scripts

_GUARD = """
local current = redis.call('HMGET', KEYS[1], 'next_slot', 'rev')
if (current[1] or '') ~= ARGV[2] or (current[2] or '') ~= ARGV[3] then return 0 end
"""

#: A chunk at once. KEYS schedule, lock, then the entries. ARGV[1] the lock token ('' = not required: the tick
#: endpoint), then six values per entry: expected next_slot, expected rev, mode ('advance' | 'park'), new
#: next_slot ('' = the schedule has ended), new fire_at, new score. Returns -1 when the lock is not this
#: beat's (nothing reserved), else per entry 1 reserved or 0 changed since it was read (publish nothing).
RESERVE_SCRIPT = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local out = {}
for i = 3, #KEYS do
  local key, a = KEYS[i], 2 + (i - 3) * 6
  local current = redis.pcall('HMGET', key, 'next_slot', 'rev')
  if current.err or (current[1] or '') ~= ARGV[a] or (current[2] or '') ~= ARGV[a + 1] then
    out[i - 2] = 0
  else
    if ARGV[a + 2] == 'park' then
      redis.call('ZADD', KEYS[1], ARGV[a + 5], key)
    elseif ARGV[a + 3] == '' then
      redis.call('HDEL', key, 'next_slot', 'fire_at')
      redis.call('ZREM', KEYS[1], key)
    else
      redis.call('HSET', key, 'next_slot', ARGV[a + 3], 'fire_at', ARGV[a + 4])
      redis.call('ZADD', KEYS[1], ARGV[a + 5], key)
    end
    out[i - 2] = 1
  end
end
return out
"""

#: KEYS entry, schedule. ARGV unused, expected next_slot, expected rev, mode ('put' | 'remove' | 'catchup'),
#: then for put: definition, next_slot, fire_at, score; for remove: tombstone TTL; for catchup: the slot.
#: Returns the new rev, or 0 when the entry changed since it was read.
WRITE_SCRIPT = (
    _GUARD
    + """
if ARGV[4] == 'catchup' then
  redis.call('HSET', KEYS[1], 'catchup', ARGV[5])
  return 1
end
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
if ARGV[4] == 'put' then
  redis.call('HSET', KEYS[1], 'definition', ARGV[5], 'next_slot', ARGV[6], 'fire_at', ARGV[7])
  redis.call('PERSIST', KEYS[1])
  redis.call('ZADD', KEYS[2], ARGV[8], KEYS[1])
else
  redis.call('HDEL', KEYS[1], 'definition', 'next_slot', 'fire_at', 'catchup')
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('ZREM', KEYS[2], KEYS[1])
end
return rev
"""
)


_script_cache: dict[str, Any] = {}


def _script(client: redis.Redis, source: str) -> Any:
    """A registered script. Calls pass `client=` (a client or a pipeline), so one object serves every
    connection; redis-py sends EVALSHA and loads the script on NOSCRIPT (pipelines check before executing)."""
    script = _script_cache.get(source)
    if script is None:
        script = _script_cache[source] = client.register_script(source)
    return script


# --------------------------------------------------------------------------------------------------------
# What the database says an entry should be


@dataclass(frozen=True)
class Desired:
    definition: EntryDefinition
    slot: datetime

    @property
    def fire_at(self) -> datetime:
        return self.definition.fire_at(self.slot)

    def put_args(self) -> list[str | int]:
        return [
            "put",
            self.definition.encoded,
            iso(self.slot),
            epoch_text(self.fire_at),
            score_of(self.fire_at),
        ]

    def matches(self, observed: Observed) -> bool:
        return (
            not observed.wrong_type
            and observed.definition_raw == self.definition.encoded
            and observed.next_slot_raw == iso(self.slot)
            and observed.fire_at_raw == epoch_text(self.fire_at)
            and observed.score == score_of(self.fire_at)
        )


class SlotMemo:
    """`timing.next_slot` answers for one reconcile pass (or one sync). A fleet has far fewer schedules than
    triggers, and within a pass most questions repeat ("the first slot of `*/5 * * * *` after now"), which
    turns a 100k-trigger pass from seconds of cron arithmetic into a dictionary lookup per trigger."""

    def __init__(self) -> None:
        self._answers: dict[tuple[Any, ...], datetime | None] = {}

    def next(self, spec: timing.ScheduleSpec, after: datetime, runs_so_far: int = 0) -> datetime | None:
        counted = spec.max_runs is not None or spec.kind == "once"
        key = (spec, after, runs_so_far if counted else 0)
        if key not in self._answers:
            self._answers[key] = timing.next_slot(spec, after, runs_so_far=runs_so_far)
        return self._answers[key]


def desired_entry(
    trigger: Trigger | None, observed: Observed, *, now: datetime, memo: SlotMemo | None = None
) -> Desired | None:
    """The entry a trigger should have, or None for no entry (paused, completed, deleted, missing, ended).

    Its next slot is the first one after now (or after the last recorded slot, if later) — so a new or
    resumed trigger waits for its next slot — except that an entry whose schedule did not change keeps the
    slot it already owes, when that is still one of the schedule's slots, after the last recorded one and
    not beyond the first one after now. A rename or a priority change must not skip a slot that fell due a
    moment before the sync ran; an edit of the schedule itself moves the due time at once.

    `now` must be read after `observed`: a slot the beat reserved in between is then at or before now, so
    the first slot after now is never older than the entry's (which would look like drift and re-fire it)."""
    if trigger is None or trigger.deleted_at is not None or trigger.status != "active":
        return None
    memo = memo or SlotMemo()
    definition = EntryDefinition.of(trigger)
    floor = max(now, trigger.last_slot) if trigger.last_slot else now
    expected = memo.next(definition.spec, floor, trigger.runs_so_far)
    kept = _owed_slot(observed, definition, trigger, memo)
    if expected is None:
        # The schedule has nothing after now, but its last slot may still be owed: a one-off whose run_at
        # passed a moment before this sync or reconcile, not yet fired. Dropping the entry would turn an
        # on-time run into a catch-up after the misfire grace.
        return Desired(definition, kept) if kept is not None else None
    return Desired(definition, kept if kept is not None and kept <= expected else expected)


def _owed_slot(
    observed: Observed, definition: EntryDefinition, trigger: Trigger, memo: SlotMemo
) -> datetime | None:
    if observed.wrong_type or observed.definition_raw is None or observed.next_slot_raw is None:
        return None
    try:
        if observed.definition_raw != definition.encoded:  # fast path: byte-identical means same schedule
            current = EntryDefinition.from_json(definition.trigger_id, observed.definition_raw)
            if current.spec != definition.spec:
                return None
        slot = _parse_instant(observed.next_slot_raw, "next_slot")
        if memo.next(definition.spec, slot - TINY, trigger.runs_so_far) != slot:
            return None
    except (KeyError, timing.TimingError):
        return None
    if trigger.last_slot is not None and slot <= trigger.last_slot:
        return None
    return slot


def _write(client: redis.Redis, keys: Keys, observed: Observed, desired: Desired | None) -> bool:
    """Write one entry if it is still what was read. A WRONGTYPE key is deleted first: it cannot be ours."""
    if observed.wrong_type:
        client.delete(observed.key)
        observed = Observed(key=observed.key)
    args = desired.put_args() if desired is not None else ["remove", TOMBSTONE_SECONDS]
    written = _script(client, WRITE_SCRIPT)(
        keys=[observed.key, keys.schedule],
        args=["", observed.expected_slot, observed.expected_rev, *args],
        client=client,
    )
    return bool(written)


def sync_trigger(trigger_id: uuid.UUID | str) -> Desired | None:
    """Make one trigger's entry what the database says, after a service committed a change.

    Redis is read before the database so a concurrent writer is caught by the compare-and-set: whichever
    write lands last was computed from a database read that came after the other's commit."""
    app = celery_app()
    client, keys = redis_client(app), Keys.of(app)
    key = keys.entry(trigger_id)
    for _attempt in range(SYNC_ATTEMPTS):
        (observed,) = read_entries(client, [key])
        trigger = Trigger.objects.filter(pk=trigger_id).first()
        desired = desired_entry(trigger, observed, now=clock.now())
        if _write(client, keys, observed, desired):
            logger.debug("sync: %s -> %s", key, desired.slot if desired else "removed")
            return desired
    client.hincrby(keys.stats, "conflicts", 1)
    logger.warning("sync: %s kept changing under %d attempts; reconcile will repair it", key, SYNC_ATTEMPTS)
    return None


def sync_triggers(trigger_ids: Sequence[uuid.UUID | str]) -> None:
    """`sync_trigger` for many triggers at once (a herd of one-offs completing together): per chunk one read
    script, one database query and one pipeline of compare-and-set writes, in the same order as
    `sync_trigger` (Redis read before the database). An entry that changed in between is left to
    `sync_trigger`, which retries it alone."""
    ids = list(dict.fromkeys(str(pk) for pk in trigger_ids))
    if not ids:
        return
    app = celery_app()
    client, keys = redis_client(app), Keys.of(app)
    for start in range(0, len(ids), CHUNK_SIZE):
        chunk = ids[start : start + CHUNK_SIZE]
        observed = read_entries(client, [keys.entry(pk) for pk in chunk])
        rows = {str(t.pk): t for t in Trigger.objects.filter(pk__in=chunk)}
        now = clock.now()
        writes = [
            (entry, desired_entry(rows.get(pk), entry, now=now))
            for pk, entry in zip(chunk, observed, strict=True)
        ]
        for pk, written in zip(chunk, _apply_writes(client, keys, writes), strict=True):
            if not written:
                sync_trigger(pk)


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
        for fire in fires:
            fires_logger.info(
                "fire trigger=%s slot=%s origin=%s", fire.trigger_id, iso(fire.slot), fire.origin
            )
    return len(fires)


# --------------------------------------------------------------------------------------------------------
# One beat pass: load due entries, plan, reserve (compare-and-set), publish


#: What Redis or the broker being unreachable looks like to the beat.
OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, BrokerError)


class LockLost(LockNotOwnedError):
    """This beat no longer holds the leader lock; the process must exit."""


class _Once:
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
        once: _Once | None = None,
    ) -> None:
        self.app, self.client, self.keys = app, client, Keys.of(app)
        self.origin = origin
        self.lock_token = lock_token
        self.keep_alive = keep_alive
        self.producer = producer
        self.once = once or _Once()
        self.reserve_delay = _test_reserve_delay()

    def due_keys(self, now: datetime) -> tuple[list[str], float | None]:
        """Due keys and the score of the next one not yet due: the whole idle cost of a tick."""
        stamp = now.timestamp()
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
        for observed in read_entries(self.client, keys):
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
                tail = ["advance", iso(following), epoch_text(fire_at), score_of(fire_at)]
            keys.append(entry.key)
            args += [entry.observed.expected_slot, entry.observed.expected_rev, *tail]
        for entry in parked:
            keys.append(entry.key)
            args += [entry.observed.expected_slot, entry.observed.expected_rev, "park", "", "", park_score]
        if len(keys) == 2:
            return [], False
        replies = _script(self.client, RESERVE_SCRIPT)(keys=keys, args=args, client=self.client)
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


# --------------------------------------------------------------------------------------------------------
# Reconcile: Redis rebuilt from the database


@dataclass
class ReconcileReport:
    """What a reconcile changed (or, in a dry run, would change): trigger ids, or keys that are not ours."""

    dry_run: bool = False
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)
    catchup: list[Fire] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.corrected or self.catchup or self.failed)

    def lines(self, *, limit: int | None = 20) -> list[str]:
        verb = "would be" if self.dry_run else ""
        counts = (
            f"{len(self.added)} added, {len(self.removed)} removed, {len(self.corrected)} corrected, "
            f"{len(self.catchup)} missed slots sent to catch-up, {len(self.failed)} failed"
        )
        lines = [f"reconcile{' (dry run: nothing written or sent)' if self.dry_run else ''}: {counts}"]
        named = (
            ("added", self.added),
            ("removed", self.removed),
            ("corrected", self.corrected),
            ("catch-up", [f"{f.trigger_id}@{iso(f.slot)}" for f in self.catchup]),
            ("failed", self.failed),
        )
        for title, ids in named:
            if ids:
                shown = ids if limit is None else ids[:limit]
                more = f" … and {len(ids) - len(shown)} more" if len(shown) < len(ids) else ""
                lines.append(f"  {title}{(' ' + verb) if verb else ''}: {', '.join(shown)}{more}")
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "added": self.added,
            "removed": self.removed,
            "corrected": self.corrected,
            "catchup": [f.as_json() for f in self.catchup],
            "failed": self.failed,
        }


_RECONCILE_FIELDS = (
    "id", "status", "deleted_at", "kind", "cron_expression", "interval_seconds", "anchor_at", "run_at",
    "timezone", "start_at", "end_at", "max_runs", "jitter_seconds", "priority", "run_count", "last_slot",
    "resumed_at", "schedule_changed_at", "created_at", "misfire_grace_seconds", "catchup_window_seconds",
)  # fmt: skip


def _active_triggers(chunk_size: int) -> Iterator[list[Trigger]]:
    """Keyset pages, so no transaction or cursor stays open across the beat ticks fired between them."""
    query = Trigger.objects.active().order_by("pk").only(*_RECONCILE_FIELDS)
    last: uuid.UUID | None = None
    while True:
        page = list((query.filter(pk__gt=last) if last is not None else query)[:chunk_size])
        if not page:
            return
        yield page
        last = page[-1].pk


def _verdict(observed: Observed, desired: Desired | None) -> str | None:
    if desired is None:
        return "removed" if observed.exists else None
    if observed.definition_raw is None and not observed.wrong_type:
        return "added"
    return None if desired.matches(observed) else "corrected"


def _missed_slot(
    trigger: Trigger, observed: Observed, desired: Desired | None, now: datetime, memo: SlotMemo
) -> Fire | None:
    """The latest slot of an active trigger that nobody will send any more, if one is missed.

    Slots from the entry's next slot on are the beat's. Those before it were reserved by a beat (or skipped
    on purpose by an edit or a resume); one counts as missed when its fire_at plus the misfire grace has
    passed and it is after the last recorded slot, the last resume and the last schedule edit (the floors
    the fire task uses too). Only the latest is sent: the fire task resolves the older ones by the
    trigger's catch-up policy, which sending them one by one would defeat."""
    definition = desired.definition if desired is not None else EntryDefinition.of(trigger)
    grace = timedelta(seconds=trigger.misfire_grace_seconds)
    floors = [trigger.last_slot, trigger.resumed_at, trigger.schedule_changed_at, trigger.created_at]
    window = now - grace - timedelta(seconds=trigger.catchup_window_seconds)
    floor = max([f for f in floors if f is not None] + [window])
    until = now - grace
    if desired is not None:
        until = min(until, desired.slot - TINY)
    if until <= floor:
        return None  # the common case: the trigger fired within its grace, or nothing is owed before the next
    first = memo.next(definition.spec, floor, trigger.runs_so_far)
    if first is None or first > until:
        return None
    following = timing.next_slot(definition.spec, first)
    spacing = (following - first) if following is not None else timedelta(seconds=1)
    tail = [s for s in _last_slots_until(definition.spec, first, until, spacing=spacing) if s > floor]
    tail = [s for s in tail if definition.fire_at(s) + grace < now]
    if not tail or observed.catchup_raw == iso(tail[-1]):
        return None
    return Fire(definition.trigger_id, tail[-1], definition.priority, "catchup")


def reconcile(
    *,
    app: Celery | None = None,
    dry_run: bool = False,
    pause: Callable[[], None] = lambda: None,
    producer: Any = None,
    chunk_size: int = CHUNK_SIZE,
) -> ReconcileReport:
    """Compare Redis with the database and repair Redis: entries missing are added, orphans removed, drifted
    ones corrected, and missed slots (a publish lost after its reserve) sent to the fire task as catch-up.

    `pause` runs between chunks: the beat extends its lock there and fires what fell due meanwhile, so a
    reconcile of a large fleet neither outlives the lock nor holds slots back."""
    app = app or celery_app()
    client, keys = redis_client(app), Keys.of(app)
    report = ReconcileReport(dry_run=dry_run)
    on_redis = set(client.scan_iter(match=keys.entry_pattern, count=1000))
    on_redis.update(client.zrange(keys.schedule, 0, -1))
    started = clock.now()
    seen: set[str] = set()
    memo = SlotMemo()
    for page in _active_triggers(chunk_size):
        pause()
        seen.update(_reconcile_page(app, client, keys, page, report, memo, producer))
    _remove_orphans(client, keys, sorted(on_redis - seen), report, pause)
    if not dry_run:
        client.set(keys.built, iso(started))
        client.set(keys.watermark, iso(started))
    return report


def reconcile_changed(
    *,
    since: datetime,
    app: Celery | None = None,
    pause: Callable[[], None] = lambda: None,
    producer: Any = None,
    chunk_size: int = CHUNK_SIZE,
) -> ReconcileReport:
    """The steady repair: only the triggers changed (`updated_at`) since `since`, whatever their status —
    an active one gets the entry it should have, any other loses its entry. Every service write bumps
    `updated_at` and syncs its entry after commit, so a sync lost in between (a crash, a Redis blip) is
    one of these; the cost is what changed, not the size of the fleet. What no write explains (an entry
    edited or dropped by hand) is the slow audit's (`Audit`)."""
    app = app or celery_app()
    client, keys = redis_client(app), Keys.of(app)
    report = ReconcileReport()
    started = clock.now()
    changed = list(Trigger.objects.filter(updated_at__gte=since).order_by("pk").values_list("pk", flat=True))
    memo = SlotMemo()
    for start in range(0, len(changed), chunk_size):
        pause()
        chunk = changed[start : start + chunk_size]
        active = list(Trigger.objects.active().filter(pk__in=chunk).order_by("pk").only(*_RECONCILE_FIELDS))
        _reconcile_page(app, client, keys, active, report, memo, producer)
        gone = sorted(set(chunk) - {t.pk for t in active})
        _remove_orphans(client, keys, [keys.entry(pk) for pk in gone], report, pause)
    client.set(keys.watermark, iso(started))
    return report


def _reconcile_page(
    app: Celery,
    client: redis.Redis,
    keys: Keys,
    page: Sequence[Trigger],
    report: ReconcileReport,
    memo: SlotMemo,
    producer: Any,
) -> list[str]:
    """Repair the entries of one page of active triggers (and send their missed slots); returns the keys
    seen. A dry-run report reads and decides but writes and sends nothing."""
    observed = read_entries(client, [keys.entry(t.pk) for t in page], schedule_key=keys.schedule)
    now = clock.now()  # after the read: see desired_entry
    writes: list[tuple[Observed, Desired | None]] = []
    missed: list[tuple[Observed, Desired | None, Fire]] = []
    for trigger, entry in zip(page, observed, strict=True):
        try:
            desired = desired_entry(trigger, entry, now=now, memo=memo)
            fire = _missed_slot(trigger, entry, desired, now, memo)
        except Exception:
            logger.exception("reconcile: cannot evaluate the schedule of trigger %s", trigger.pk)
            report.failed.append(str(trigger.pk))
            continue
        verdict = _verdict(entry, desired)
        if verdict is not None:
            getattr(report, verdict).append(str(trigger.pk))
            writes.append((entry, desired))
        if fire is not None and len(report.catchup) + len(missed) < RECONCILE_MAX_CATCHUP:
            missed.append((entry, desired, fire))
    report.catchup.extend(fire for _entry, _desired, fire in missed)
    if not report.dry_run:
        _apply_writes(client, keys, writes)
        _send_catchups(app, client, keys, missed, producer)
    return [entry.key for entry in observed]


class Audit:
    """The full comparison of Redis with the database, in slices small enough to run between ticks: every
    active trigger's entry, by primary key, then every member of the schedule (orphans), then again. Its
    pace is a CPU budget (SCHEDULER_AUDIT_BUDGET, a fraction of one core): after a slice that took d
    seconds the next waits d / budget, so at a million triggers the audit costs the same per minute as at
    a thousand and simply takes longer to go round. It finds what no write explains; what writes explain is
    `reconcile_changed`'s, every period."""

    def __init__(self, *, budget: float, rows: int = AUDIT_ROWS) -> None:
        self.budget = budget  # 0: no audit
        self.rows = rows
        self.after: uuid.UUID | None = None
        self.scan_cursor: int | None = None  # None: auditing triggers; else: scanning the schedule
        self.next_at = -math.inf if budget > 0 else math.inf
        self.rounds = 0

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def step(self, *, app: Celery, producer: Any = None) -> ReconcileReport:
        started = time.monotonic()
        client, keys = redis_client(app), Keys.of(app)
        report = ReconcileReport()
        if self.scan_cursor is None:
            query = Trigger.objects.active().order_by("pk").only(*_RECONCILE_FIELDS)
            page = list((query.filter(pk__gt=self.after) if self.after else query)[: self.rows])
            if page:
                _reconcile_page(app, client, keys, page, report, SlotMemo(), producer)
                self.after = page[-1].pk
            else:
                self.after, self.scan_cursor = None, 0
        else:
            cursor, members = client.zscan(keys.schedule, cursor=self.scan_cursor, count=self.rows)
            _remove_orphans(client, keys, [str(member) for member, _score in members], report, lambda: None)
            self.scan_cursor = None if cursor == 0 else int(cursor)
            if self.scan_cursor is None:
                self.rounds += 1
        self.next_at = time.monotonic() + (time.monotonic() - started) / max(self.budget, 1e-6)
        return report


def _apply_writes(
    client: redis.Redis, keys: Keys, writes: Sequence[tuple[Observed, Desired | None]]
) -> list[bool]:
    """Pipelined compare-and-set writes; whether each one was written. A conflict means another writer got
    there first, with a newer row (reconcile leaves it; `sync_triggers` hands it to `sync_trigger`)."""
    if not writes:
        return []
    wrong = [observed.key for observed, _desired in writes if observed.wrong_type]
    if wrong:
        client.delete(*wrong)
    script = _script(client, WRITE_SCRIPT)
    with client.pipeline(transaction=False) as pipe:
        for observed, desired in writes:
            args = desired.put_args() if desired is not None else ["remove", TOMBSTONE_SECONDS]
            expected = ("", "") if observed.wrong_type else (observed.expected_slot, observed.expected_rev)
            script(keys=[observed.key, keys.schedule], args=["", *expected, *args], client=pipe)
        replies = pipe.execute(raise_on_error=False)
    return [bool(reply) and not isinstance(reply, Exception) for reply in replies]


def _send_catchups(
    app: Celery,
    client: redis.Redis,
    keys: Keys,
    missed: Sequence[tuple[Observed, Desired | None, Fire]],
    producer: Any,
) -> None:
    """Send, then mark each entry with the slot sent so the next pass does not send it again."""
    if not missed:
        return
    publish(app, [fire for _observed, _desired, fire in missed], producer=producer)
    client.hincrby(keys.stats, "fired_catchup", len(missed))
    script = _script(client, WRITE_SCRIPT)
    fresh = read_entries(client, [observed.key for observed, _d, _f in missed])
    with client.pipeline(transaction=False) as pipe:
        for entry, (_observed, _desired, fire) in zip(fresh, missed, strict=True):
            if entry.definition_raw is not None:
                args = ["", entry.expected_slot, entry.expected_rev, "catchup", iso(fire.slot)]
                script(keys=[entry.key, keys.schedule], args=args, client=pipe)
        pipe.execute(raise_on_error=False)


def _remove_orphans(
    client: redis.Redis,
    keys: Keys,
    candidates: Sequence[str],
    report: ReconcileReport,
    pause: Callable[[], None],
) -> None:
    """Entries of triggers that are not active. Each is checked against the database again first: a trigger
    created while the pass ran is not an orphan, and its own sync has written (or will write) its entry."""
    for start in range(0, len(candidates), CHUNK_SIZE):
        pause()
        chunk = candidates[start : start + CHUNK_SIZE]
        ids = {key: keys.trigger_id(key) for key in chunk}
        active = {
            str(pk)
            for pk in Trigger.objects.active()
            .filter(pk__in=[i for i in ids.values() if i])
            .values_list("pk", flat=True)
        }
        foreign = [key for key, trigger_id in ids.items() if trigger_id is None]
        if foreign:
            # Not a trigger entry: out of our schedule. Deleted only under our entry prefix.
            report.removed.extend(foreign)
            if not report.dry_run:
                client.zrem(keys.schedule, *foreign)
                ours = [key for key in foreign if key.startswith(f"{keys.prefix}:trigger:")]
                if ours:
                    client.delete(*ours)
        candidates_ours = [
            key for key, trigger_id in ids.items() if trigger_id and str(trigger_id) not in active
        ]
        observed = read_entries(client, candidates_ours, schedule_key=keys.schedule)
        orphans = [entry for entry in observed if entry.exists]
        report.removed.extend(str(ids[entry.key]) for entry in orphans)
        if not report.dry_run:
            _apply_writes(client, keys, [(entry, None) for entry in orphans])


# --------------------------------------------------------------------------------------------------------
# The beat


class TriggerScheduler(RedBeatScheduler):
    """Our beat scheduler (`celery beat -S schedules.redbeat_sync:TriggerScheduler`).

    * `setup_schedule` is a no-op: RedBeat's runs on every beat, standbys included, before the lock is taken,
      and would write entries (even `celery.backend_cleanup`) behind the leader's back.
    * `tick` replaces RedBeat's: due keys come from one ZRANGEBYSCORE, and are loaded, reserved and published
      in chunks by `BeatPass`. An idle tick is one round trip (plus a lock extension every lock_timeout/3).
    * The lock is extended every lock_timeout/3 — also between the chunks of a long tick and of a reconcile,
      load phase included — so a herd never outlives it. A beat that finds the lock held by another (it was
      frozen or cut off past its timeout) stands by and takes the lock again when it is free; a Redis outage
      is waited out with backoff, with a lock extension before anything is fired again (`tick`).
    * Reconcile runs on the first tick after the lock is taken (never before: standbys must not race the
      leader) and then every SCHEDULER_RECONCILE_SECONDS, on the leader only.
    """

    Entry = TriggerEntry
    lock: Any  # RedBeat's: the redis-py lock while this beat leads, else None

    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self.reconcile_seconds = float(settings.SCHEDULER_RECONCILE_SECONDS)
        self._lock_extended_at = -math.inf
        self._reconciled_at = -math.inf
        self._reconcile_now = True
        self._once = _Once()
        self._beat_pass: BeatPass | None = None
        self._dispatching = False
        self._housekeeping_at = -math.inf
        self._outages = 0  # consecutive ticks that found Redis unreachable
        self._audit = Audit(budget=float(settings.SCHEDULER_AUDIT_BUDGET))

    def setup_schedule(self) -> None:
        return None

    @property
    def beat_pass(self) -> BeatPass:
        if self._beat_pass is None:
            token = self.lock.local.token if self.lock is not None else None
            self._beat_pass = BeatPass(
                app=self.app,
                client=redis_client(self.app),
                origin="schedule",
                lock_token=token,
                keep_alive=self.keep_alive,
                producer=self.producer,
                once=self._once,
            )
        return self._beat_pass

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Lead when this beat holds the lock, stand by when another does, wait out Redis when it is gone;
        never exit for any of these (a beat needs no supervisor to come back from a Redis outage). Fires are
        only reserved after the lock was proven ours in this tick, and the reserve script checks the lock
        token again, so a beat that was cut off or frozen past its lock can never fire beside the leader."""
        try:
            if not self._hold_lock():
                return self._standby_interval()
            interval = self._lead()
        except LockLost as exc:
            self._stand_by(str(exc))
            return self._standby_interval()
        except OUTAGE_ERRORS as exc:
            return self._wait_out(exc)
        if self._outages:
            logger.warning("beat: Redis is back after %d failed ticks; leading again", self._outages)
            self._outages = 0
        return interval

    @metrics.beat_tick  # the heartbeat /healthz reads: written by the leader, on ticks that got through
    def _lead(self) -> float:
        if self._reconcile_now or time.monotonic() - self._reconciled_at >= self.reconcile_seconds:
            self.reconcile()
        self.housekeeping()
        interval = self.fire_due()
        # The audit takes a tick's slack only: never while fires are due, and its slice comes off the sleep.
        if interval >= AUDIT_SLACK_SECONDS and self._audit.due():
            started = time.monotonic()
            self.audit_step()
            interval = max(0.0, interval - (time.monotonic() - started))
        return interval

    def _hold_lock(self) -> bool:
        """Whether this beat leads now: it holds the lock (extended when due) or has just taken it. A beat
        without one (a standby, a leader that lost it, one started while Redis was down) tries to take it
        without blocking, so it keeps ticking and answering signals."""
        if not self.lock_key:
            return True
        if self.lock is None:
            client = redis_client(self.app)
            candidate = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
            candidate.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)  # extend *to*, not *by*
            if not candidate.acquire(blocking=False):
                return False
            self.lock = candidate
            self._lock_extended_at = time.monotonic()
            self._reconcile_now = True  # a new leader checks every entry before trusting them
            self._beat_pass = None
            logger.info("beat: acquired the leader lock; leading")
        self.keep_alive()
        return True

    def _standby_interval(self) -> float:
        return max(0.5, min(self.max_interval, self.lock_timeout / 6))

    def _stand_by(self, reason: str) -> None:
        logger.warning("beat: %s; standing by until the lock is free", reason)
        self.lock = None
        self._beat_pass = None
        self._reconcile_now = True

    def _wait_out(self, exc: BaseException) -> float:
        """Redis (or the broker) is unreachable: nothing can be fired or proven. Back off, force a lock
        extension first thing once it answers, and drop the broker connection so the next publish makes a
        fresh one."""
        self._outages += 1
        delay = min(5.0, 0.25 * 2**self._outages)
        if self._outages == 1 or self._outages % 30 == 0:
            logger.warning(
                "beat: Redis unreachable (%s: %s); not firing, retrying (%d failed ticks)",
                type(exc).__name__, exc, self._outages,
            )  # fmt: skip
        self._lock_extended_at = -math.inf
        self._beat_pass = None
        producer = self.__dict__.pop("producer", None)
        connection = self.__dict__.pop("connection", None)
        for part in (producer, connection):
            try:
                if part is not None:
                    part.release()
            except Exception:  # a broken connection may fail to close; it is dropped either way
                logger.debug("beat: closing a broken broker connection failed", exc_info=True)
        return delay

    def housekeeping(self) -> None:
        """At most once a second: a Redis round trip per system task is not worth making on every tick."""
        if time.monotonic() - self._housekeeping_at < 1.0:
            return
        self._housekeeping_at = time.monotonic()
        try:
            send_housekeeping(app=self.app, client=self.beat_pass.client)
        except Exception:
            logger.exception("beat: could not send housekeeping tasks; next try in 1s")

    def fire_due(self) -> float:
        """Send what is due; return how long to sleep (0 after a busy pass: more may have fallen due)."""
        if self._dispatching:
            return 0.0
        self._dispatching = True
        try:
            now = clock.now()
            due, upcoming = self.beat_pass.due_keys(now)
            if due and self.beat_pass.run(due, now).progressed:
                return 0.0
        finally:
            self._dispatching = False
        if upcoming is None:
            return self.max_interval
        return max(0.0, min(self.max_interval, upcoming - clock.now().timestamp()))

    def keep_alive(self) -> None:
        """Extend the lock once a third of its timeout has passed since the last extension."""
        if not self.lock_key:
            return
        if self.lock is None:
            raise LockLost("beat is running without the leader lock")
        started = time.monotonic()
        if started - self._lock_extended_at < self.lock_timeout / 3:
            return
        try:
            self.lock.extend(int(self.lock_timeout))
        except LockNotOwnedError:
            if not self._retake_vanished_lock():
                raise LockLost("the leader lock is held by another beat") from None
        self._lock_extended_at = started

    def _retake_vanished_lock(self) -> bool:
        """A lock key that is simply gone (FLUSHDB, a Redis restarted without data) has no other holder: take
        it back atomically (SET NX) with our token rather than exit, and reconcile at once, since the entries
        are most likely gone too. If a standby got there first, SET NX fails and we exit."""
        taken = redis_client(self.app).set(
            self.lock_key, self.lock.local.token, nx=True, px=int(self.lock_timeout * 1000)
        )
        if taken:
            logger.warning("beat: the leader lock had vanished (Redis flushed or restarted?); took it back")
            self._reconcile_now = True
        return bool(taken)

    def reconcile(self) -> ReconcileReport | None:
        """The periodic repair, and the first thing a new leader does: only what changed since the last
        repair's watermark (less an overlap for transactions that committed late), so taking over at a
        million triggers costs what changed, not a million rows. A full rebuild runs instead when Redis
        has lost what the last full one built (`built` is gone: FLUSHDB, a Redis restarted empty, a
        first start), its chunks interleaved with firing as ever."""
        self._reconcile_now = False
        close_old_connections()  # a long-lived process: drop a connection the database has closed
        try:
            client, keys = redis_client(self.app), Keys.of(self.app)
            built, watermark = client.mget([keys.built, keys.watermark])
            pause, producer = self._between_reconcile_chunks, self.producer
            if built is None or watermark is None:
                logger.info("beat: no complete build in Redis; rebuilding every entry")
                report = reconcile(app=self.app, pause=pause, producer=producer)
            else:
                overlap = timedelta(seconds=2 * self.reconcile_seconds + 30)
                since = _parse_instant(watermark, "watermark") - overlap
                report = reconcile_changed(since=since, app=self.app, pause=pause, producer=producer)
        except LockLost:
            raise
        except Exception:
            logger.exception("beat: reconcile failed; next try in %ss", self.reconcile_seconds)
            return None
        finally:
            self._reconciled_at = time.monotonic()
            close_old_connections()
        for line in report.lines():
            (logger.info if report.changed else logger.debug)("beat: %s", line)
        return report

    def audit_step(self) -> None:
        """One slice of the slow full audit (see `Audit`); a failure is logged and the audit goes on."""
        close_old_connections()
        try:
            report = self._audit.step(app=self.app, producer=self.producer)
        except OUTAGE_ERRORS:
            raise
        except Exception:
            logger.exception("beat: an audit slice failed; it goes on from the next slice")
            self._audit.next_at = time.monotonic() + self.reconcile_seconds
            return
        for line in report.lines() if report.changed else ():
            logger.info("beat: audit: %s", line)

    def _between_reconcile_chunks(self) -> None:
        self.keep_alive()
        self.fire_due()

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        """Celery's per-entry path, for callers of the generic API: the same reserve-then-publish pass."""
        return self.beat_pass.run([entry.key if isinstance(entry, TriggerEntry) else str(entry)], clock.now())

    def reserve(self, entry: Any) -> Any:
        raise NotImplementedError("trigger entries are reserved by compare-and-set in BeatPass")

    @property
    def info(self) -> str:
        return f"{super().info}\n       . reconcile -> every {self.reconcile_seconds:g}s"


# --------------------------------------------------------------------------------------------------------
# Housekeeping: the fleet's own periodic tasks


def housekeeping_tasks() -> dict[str, float]:
    """System tasks sent on a period (task name -> seconds): the sweeper (timeouts, polls, lost messages)
    and retention. They are not trigger entries, and `setup_schedule` is a no-op, so Celery's own
    `beat_schedule` would never reach Redis: the leader (or a tick) sends them from here instead."""
    return {
        "executions.sweep": float(settings.SCHEDULER_SWEEP_SECONDS),
        "executions.prune": float(settings.SCHEDULER_PRUNE_SECONDS),
        "notifications.sweep": float(settings.SCHEDULER_NOTIFY_SWEEP_SECONDS),
        "notifications.prune": float(settings.SCHEDULER_PRUNE_SECONDS),
    }


def send_housekeeping(*, app: Celery | None = None, client: redis.Redis | None = None) -> list[str]:
    """Send each system task whose period has passed. The period is claimed fleet-wide with SET NX EX, so a
    failover, a restart or ticks beside a beat neither double nor skip a period. Urgent priority: a sweep
    stuck behind a backlog is what would let that backlog's timeouts and lost messages go unnoticed."""
    app = app or celery_app()
    client = client or redis_client(app)
    keys = Keys.of(app)
    sent = []
    for task, period in housekeeping_tasks().items():
        if period > 0 and client.set(keys.housekeeping(task), "1", nx=True, ex=max(1, math.ceil(period))):
            app.send_task(task, priority=0, expires=max(1.0, period))
            sent.append(task)
    return sent


# --------------------------------------------------------------------------------------------------------
# The beat-less tick


def run_tick(*, app: Celery | None = None) -> dict[str, Any]:
    """One beat pass for hosts without a long-lived beat (`POST /api/v1/tick`).

    Due entries come from Redis and go through the same reserve-then-publish pass as the beat, with the
    compare-and-set on (next_slot, rev) but without the lock requirement: concurrent ticks, or a tick beside
    a beat, each reserve a slot at most once, and the unique (trigger, slot) execution absorbs anything else.
    Redis rather than the database, because that is the one path whose semantics (jitter, latest due slot,
    edits racing a pass) are tested, and because the database's next_run_at is only as fresh as the last
    fire. When no beat holds the lock, a tick also reconciles, at most once per reconcile period across all
    callers, so a beat-less fleet still recovers from an empty Redis."""
    app = app or celery_app()
    client, keys = redis_client(app), Keys.of(app)
    reconciled: ReconcileReport | None = None
    period = max(1, int(settings.SCHEDULER_RECONCILE_SECONDS))
    if not client.exists(keys.lock) and client.set(keys.reconciled, "tick", nx=True, ex=period):
        reconciled = reconcile(app=app)
    housekeeping = send_housekeeping(app=app, client=client)
    beat_pass = BeatPass(app=app, client=client, origin="tick")
    now = clock.now()
    due, _upcoming = beat_pass.due_keys(now)
    result = beat_pass.run(due, now)
    return {
        "fired": [fire.as_json() for fire in result.fired],
        "count": len(result.fired),
        "conflicts": result.conflicts,
        "reconciled": reconciled.as_json() if reconciled is not None else None,
        "housekeeping": housekeeping,
    }
