"""Keys and entries: the key names, how an entry is encoded in its hash, and how a chunk of entries is read
back (one Lua script per chunk) into `Observed` values and RedBeat `TriggerEntry` objects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any

import redis
from celery import Celery
from celery.schedules import BaseSchedule, schedstate
from redbeat.schedulers import (
    RedBeatSchedulerEntry,
    ensure_conf,
    get_redis,
)
from redis.exceptions import ResponseError

from schedules import timing
from schedules.models import Trigger

# The pure policy module (no Django, no Celery) is the one table of broker priorities for fires and launches.
from schedules.vocabulary import priority_value
from toolkit import clock

logger = logging.getLogger(__name__)

FIRE_TASK = "executions.fire"
#: Entries loaded, reserved and published together: one read script, one compare-and-set script, one publish
#: batch per chunk.
CHUNK_SIZE = 1000
#: How long a removed entry's rev survives (see the module docstring); far longer than any beat pass.
TOMBSTONE_SECONDS = 3600
TINY = timedelta(microseconds=1)
#: The version of the key layout and entry encoding. A leader that finds another in `<prefix>::layout` (or
#: none) rebuilds every entry, dropping the old layout's keys first (`reconcile.reconcile`).
LAYOUT = "2"
#: The hash fields of an entry (short names: a field name is stored in every entry).
DEFINITION, NEXT_SLOT, FIRE_AT, REV, CATCHUP = "d", "s", "f", "r", "c"


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
    def layout(self) -> str:
        return f"{self.prefix}::layout"

    @property
    def heartbeat(self) -> str:
        """The leader's heartbeat (`toolkit.metrics.beat_key`: the same name, written by the beat's tick)."""
        return f"{self.prefix}::beat"

    @property
    def definitions(self) -> str:
        return f"{self.prefix}::defs"

    @property
    def references(self) -> str:
        return f"{self.prefix}::refs"

    @property
    def entry_pattern(self) -> str:
        return f"{self.prefix}:t:*"

    @property
    def legacy_entry_pattern(self) -> str:
        """Entries of layout 1 (`<prefix>:trigger:<uuid>`, JSON definitions inline)."""
        return f"{self.prefix}:trigger:*"

    def entry(self, trigger_id: uuid.UUID | str) -> str:
        return f"{self.prefix}:t:{trigger_id}"

    def housekeeping(self, task: str) -> str:
        return f"{self.prefix}::housekeeping:{task}"

    def owns(self, key: str) -> bool:
        """Whether a key is under the entry prefix of this layout or the last one."""
        return key.startswith((f"{self.prefix}:t:", f"{self.prefix}:trigger:"))

    def trigger_id(self, key: str) -> uuid.UUID | None:
        """The trigger an entry key belongs to, or None for a key that is not one of ours."""
        head = f"{self.prefix}:t:"
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
    """RedBeat's own client (decoded responses), so every path shares its configuration. Behind Sentinel,
    RedBeat hands out a new master client (a new pool: a new connection) on every call; the first is kept."""
    app = app or celery_app()
    kept = getattr(app, "_beat_sentinel_client", None)
    if kept is not None:
        return kept
    client = get_redis(app)
    if getattr(app, "redbeat_sentinel", None) is not None:
        app._beat_sentinel_client = client  # type: ignore[attr-defined]
    return client


# --------------------------------------------------------------------------------------------------------
# Encoding


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def score_of(fire_at: datetime) -> int:
    """Whole seconds, rounded up: an entry is never due before its fire_at."""
    return math.ceil(fire_at.timestamp())


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_text(moment: datetime) -> str:
    """An instant as stored in an entry: whole microseconds since the epoch, exact (Redis keeps a small
    integer in a few bytes of the entry's listpack, an ISO string in 25)."""
    return str((moment - EPOCH) // TINY)


def parse_epoch(value: Any, what: str) -> datetime:
    if not isinstance(value, str) or not value.lstrip("-").isdigit():
        raise CorruptEntry(f"{what} is not a whole number of microseconds")
    try:
        return EPOCH + int(value) * TINY
    except OverflowError:
        raise CorruptEntry(f"{what} is out of range") from None


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
        values[name] = parse_instant(value, f"schedule.{name}") if value is not None else None
    if values["kind"] not in {"cron", "interval", "once"}:
        raise CorruptEntry(f"unknown schedule kind {values['kind']!r}")
    values["timezone"] = values["timezone"] or "UTC"
    return timing.ScheduleSpec(**values)


def parse_instant(value: Any, what: str) -> datetime:
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
        """The shared part as stored in `<prefix>::defs`: schedule, jitter and priority, compact and
        key-sorted so equal definitions are equal bytes. No trigger id: triggers on the same expression,
        zone, jitter and priority share one copy. No run_at either: a one-off's only slot is its run_at,
        which its entry holds as its next slot (`from_json` puts it back), so a million one-offs share a
        handful of definitions instead of owning one each."""
        spec = _spec_to_json(self.spec)
        if self.spec.kind == "once":
            spec.pop("run_at", None)
        document = {**spec, "jitter_seconds": self.jitter_seconds, "priority": self.priority}
        return json.dumps(document, separators=(",", ":"), sort_keys=True)

    @cached_property
    def ref(self) -> str:
        """The id an entry stores in place of the definition: 64 bits of its hash."""
        return hashlib.blake2b(self.encoded.encode(), digest_size=8).hexdigest()

    @classmethod
    def from_json(cls, trigger_id: str, raw: str, slot: datetime | None = None) -> EntryDefinition:
        """Every way a definition can be wrong becomes CorruptEntry (a KeyError). `slot` is the entry's next
        slot: a one-off's run_at (see `encoded`); a one-off without either is corrupt."""
        spec, jitter, priority = _parse_definition(raw)
        if spec.kind == "once" and spec.run_at is None:
            if slot is None:
                raise CorruptEntry("a one-off's definition without a slot to run at")
            spec = dataclasses.replace(spec, run_at=slot)
        return cls(trigger_id, spec, jitter, priority)

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
        tail = last_slots_until(self.spec, following, now, spacing=following - slot)
        send = tail[-1]
        if self.fire_at(send) > now:  # its jitter has not elapsed yet: the one before it is the due one
            send = tail[-2] if len(tail) > 1 else slot
        return send, self.next_after(send)


@lru_cache(maxsize=4096)
def _parse_definition(raw: str) -> tuple[timing.ScheduleSpec, int, int]:
    """Parsed once per distinct definition text, however many entries share it."""
    try:
        document = json.loads(raw)
    except (TypeError, ValueError):
        raise CorruptEntry("definition is not JSON") from None
    if not isinstance(document, dict):
        raise CorruptEntry("definition is not a JSON object")
    priority = document.get("priority")
    jitter = document.get("jitter_seconds", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise CorruptEntry("priority is not a broker priority")
    if isinstance(jitter, bool) or not isinstance(jitter, int) or jitter < 0:
        raise CorruptEntry("jitter_seconds is not a whole number of seconds")
    return _spec_from_json(document), jitter, priority


@lru_cache(maxsize=65536)
def _next_slot(spec: timing.ScheduleSpec, after: datetime) -> datetime | None:
    """Memoised per (schedule, instant): a herd of entries on one expression costs one computation per slot.
    max_runs is left to the execution side (it counts runs, skips aside, and completes the trigger)."""
    return timing.next_slot(spec, after)


def last_slots_until(
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


ENTRY_FIELDS = (DEFINITION, NEXT_SLOT, FIRE_AT, REV, CATCHUP)


@dataclass(frozen=True)
class Observed:
    """One entry as Redis holds it: raw values (what a compare-and-set compares) and whether it is usable.
    `definition_raw` is the shared definition its `definition_ref` names (None when that is missing)."""

    key: str
    definition_ref: str | None = None
    next_slot_raw: str | None = None
    fire_at_raw: str | None = None
    rev_raw: str | None = None
    catchup_raw: str | None = None
    score: float | None = None
    wrong_type: bool = False
    definition_raw: str | None = None

    @classmethod
    def of(cls, key: str, reply: Any, definitions: dict[str, str]) -> Observed:
        if not isinstance(reply, list):
            return cls(key=key, wrong_type=True)
        fields = [*reply, None, None, None, None, None, None][:6]
        ref, next_slot, fire_at, rev, catchup = fields[:5]
        text = definitions.get(ref) if ref is not None else None
        return cls(key, ref, next_slot, fire_at, rev, catchup, _score(fields[5]), definition_raw=text)

    @property
    def expected_slot(self) -> str:
        return self.next_slot_raw or ""

    @property
    def expected_rev(self) -> str:
        return self.rev_raw or ""

    @property
    def exists(self) -> bool:
        """An entry the beat would fire (a tombstone does not count)."""
        return self.wrong_type or self.definition_ref is not None or self.score is not None


def _score(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float | str) else None


#: KEYS the definitions hash, the schedule, then the entries. ARGV[1] '1' to read scores too. Per entry its
#: ENTRY_FIELDS (plus its score when asked), or 0 for a key of another type: one bad key must not fail the
#: chunk. Last, the definitions the chunk refers to, each once, as a flat list of id, text.
READ_SCRIPT = """
local out, wanted, ids = {}, {}, {}
for i = 3, #KEYS do
  local fields = redis.pcall('HMGET', KEYS[i], 'd', 's', 'f', 'r', 'c')
  if fields.err then
    out[i - 2] = 0
  else
    if ARGV[1] == '1' then fields[6] = redis.call('ZSCORE', KEYS[2], KEYS[i]) end
    out[i - 2] = fields
    if fields[1] and not wanted[fields[1]] then
      wanted[fields[1]] = true
      ids[#ids + 1] = fields[1]
    end
  end
end
local definitions = {}
if #ids > 0 then
  local texts = redis.call('HMGET', KEYS[1], unpack(ids))
  for j, id in ipairs(ids) do
    definitions[2 * j - 1] = id
    definitions[2 * j] = texts[j]
  end
end
out[#KEYS - 1] = definitions
return out
"""


def read_entries(
    client: redis.Redis, keys: Keys, entry_keys: Sequence[str], *, scores: bool = False
) -> list[Observed]:
    """One round trip for a chunk of entries and the definitions they share: a Lua loop of HMGETs costs
    half what a pipeline of them does (redis-py packs and parses one command instead of a thousand)."""
    if not entry_keys:
        return []
    replies = registered_script(client, READ_SCRIPT)(
        keys=[keys.definitions, keys.schedule, *entry_keys], args=["1" if scores else ""], client=client
    )
    flat = replies[-1]
    definitions = {flat[i]: flat[i + 1] for i in range(0, len(flat), 2) if flat[i + 1] is not None}
    return [Observed.of(key, reply, definitions) for key, reply in zip(entry_keys, replies[:-1], strict=True)]


def describe(client: redis.Redis, keys: Keys, key: str) -> dict[str, Any]:
    """One entry in words (ISO instants, the definition it refers to), for people and tests: the stored
    form is compact, not readable."""
    (observed,) = read_entries(client, keys, [key], scores=True)
    if observed.wrong_type:
        return {"wrong_type": True}
    shown: dict[str, Any] = {}
    if observed.definition_ref is not None:
        shown["definition"] = observed.definition_raw
    for name, raw in (("next_slot", observed.next_slot_raw), ("fire_at", observed.fire_at_raw),
                      ("catchup", observed.catchup_raw)):  # fmt: skip
        if raw is not None:
            shown[name] = iso(parse_epoch(raw, name))
    if observed.rev_raw is not None:
        shown["rev"] = observed.rev_raw
    return shown


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
            (observed,) = read_entries(redis_client(app), Keys.of(app), [key])
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
        if observed.definition_ref is None or observed.next_slot_raw is None or observed.fire_at_raw is None:
            raise CorruptEntry("missing definition, next_slot or fire_at")
        if observed.definition_raw is None:
            raise CorruptEntry(f"definition {observed.definition_ref} is not in {keys.definitions}")
        slot = parse_epoch(observed.next_slot_raw, "next_slot")
        definition = EntryDefinition.from_json(str(trigger_id), observed.definition_raw, slot)
        fire_at = parse_epoch(observed.fire_at_raw, "fire_at")
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
        raise NotImplementedError("trigger entries are written by schedules.beat, not by RedBeat")

    save = delete = reschedule = _next_instance = __next__ = next = _refuse


_scripts: dict[str, Any] = {}


def registered_script(client: redis.Redis, source: str) -> Any:
    """A registered script. Calls pass `client=` (a client or a pipeline), so one object serves every
    connection; redis-py sends EVALSHA and loads the script on NOSCRIPT (pipelines check before executing)."""
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = client.register_script(source)
    return script
