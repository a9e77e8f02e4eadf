"""What the database says an entry should be, and the compare-and-set write that puts it there: the sync of
one trigger (or many) after every service write.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from schedules import timing
from schedules.beat.entries import (
    CHUNK_SIZE,
    TINY,
    TOMBSTONE_SECONDS,
    EntryDefinition,
    Keys,
    Observed,
    celery_app,
    epoch_text,
    parse_epoch,
    read_entries,
    redis_client,
    registered_script,
    score_of,
)
from schedules.models import Trigger
from toolkit import clock

logger = logging.getLogger(__name__)

#: Conflicting writes a sync retries before leaving the entry to reconcile.
SYNC_ATTEMPTS = 8


#: KEYS entry, schedule, definitions, references. ARGV unused, expected next_slot, expected rev, mode ('put' |
#: 'remove' | 'catchup'), then for put: definition id, definition text, next_slot, fire_at, score; for remove:
#: tombstone TTL; for catchup: the slot. Returns the new rev, or 0 when the entry changed since it was read.
#: A definition is stored once, with the number of entries that refer to it; the last one out removes it.
WRITE_SCRIPT = """
local current = redis.call('HMGET', KEYS[1], 's', 'r', 'd')
if (current[1] or '') ~= ARGV[2] or (current[2] or '') ~= ARGV[3] then return 0 end
if ARGV[4] == 'catchup' then
  redis.call('HSET', KEYS[1], 'c', ARGV[5])
  return 1
end
local rev = redis.call('HINCRBY', KEYS[1], 'r', 1)
local old, new = current[3], false
if ARGV[4] == 'put' then
  new = ARGV[5]
  if old ~= new and redis.call('HINCRBY', KEYS[4], new, 1) == 1 then
    redis.call('HSET', KEYS[3], new, ARGV[6])
  end
  redis.call('HSET', KEYS[1], 'd', new, 's', ARGV[7], 'f', ARGV[8])
  redis.call('PERSIST', KEYS[1])
  redis.call('ZADD', KEYS[2], ARGV[9], KEYS[1])
else
  redis.call('HDEL', KEYS[1], 'd', 's', 'f', 'c')
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('ZREM', KEYS[2], KEYS[1])
end
if old and old ~= new and redis.call('HINCRBY', KEYS[4], old, -1) <= 0 then
  redis.call('HDEL', KEYS[4], old)
  redis.call('HDEL', KEYS[3], old)
end
return rev
"""


def write_keys(keys: Keys, entry_key: str) -> list[str]:
    """The KEYS of WRITE_SCRIPT for one entry."""
    return [entry_key, keys.schedule, keys.definitions, keys.references]


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
            self.definition.ref,
            self.definition.encoded,
            epoch_text(self.slot),
            epoch_text(self.fire_at),
            score_of(self.fire_at),
        ]

    def matches(self, observed: Observed) -> bool:
        return (
            not observed.wrong_type
            and observed.definition_ref == self.definition.ref
            and observed.definition_raw == self.definition.encoded
            and observed.next_slot_raw == epoch_text(self.slot)
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
        slot = parse_epoch(observed.next_slot_raw, "next_slot")
        # Byte-identical definitions are the same schedule; a one-off's run_at is not in them, and the slot
        # check below is what tells an old run_at from the row's.
        if observed.definition_raw != definition.encoded:
            current = EntryDefinition.from_json(definition.trigger_id, observed.definition_raw, slot)
            if current.spec != definition.spec:
                return None
        if memo.next(definition.spec, slot - TINY, trigger.runs_so_far) != slot:
            return None
    except (KeyError, timing.TimingError):
        return None
    if trigger.last_slot is not None and slot <= trigger.last_slot:
        return None
    return slot


def sync_trigger(trigger_id: uuid.UUID | str) -> Desired | None:
    """Make one trigger's entry what the database says, after a service committed a change.

    Redis is read before the database so a concurrent writer is caught by the compare-and-set: whichever
    write lands last was computed from a database read that came after the other's commit."""
    app = celery_app()
    client, keys = redis_client(app), Keys.of(app)
    key = keys.entry(trigger_id)
    for _attempt in range(SYNC_ATTEMPTS):
        (observed,) = read_entries(client, keys, [key])
        trigger = Trigger.objects.filter(pk=trigger_id).first()
        desired = desired_entry(trigger, observed, now=clock.now())
        if apply_writes(client, keys, [(observed, desired)])[0]:
            logger.debug("sync: %s -> %s", key, desired.slot if desired else "removed")
            return desired
    client.hincrby(keys.stats, "conflicts", 1)
    logger.warning("sync: %s kept changing under %d attempts; reconcile will repair it", key, SYNC_ATTEMPTS)
    return None


def sync_triggers(trigger_ids: Sequence[uuid.UUID | str]) -> None:
    """`sync_trigger` for triggers whose schedule just ended (the fire path's, a herd of one-offs completing
    together): per chunk one read script, one database query and one pipeline of compare-and-set writes, in
    the same order as `sync_trigger` (Redis read before the database). An entry that changed in between is
    left to `sync_trigger`, which retries it alone.

    An entry holding no next slot is left alone, without reading its row: the beat's reserve retired it
    when it published the last slot (a one-off fired by the beat or a tick), so it can fire nothing, and
    the fire moved the trigger's `updated_at`, so `reconcile_changed` tidies it within a period. Reading
    every such row cost a fifth of recording a herd of one-offs. An entry still owing a slot (`max_runs` or
    `end_at` reached with the next slot reserved) is removed at once."""
    ids = list(dict.fromkeys(str(pk) for pk in trigger_ids))
    if not ids:
        return
    app = celery_app()
    client, keys = redis_client(app), Keys.of(app)
    for start in range(0, len(ids), CHUNK_SIZE):
        part = ids[start : start + CHUNK_SIZE]
        read = zip(part, read_entries(client, keys, [keys.entry(pk) for pk in part]), strict=True)
        live = [(pk, entry) for pk, entry in read if entry.next_slot_raw is not None or entry.wrong_type]
        if not live:
            continue
        chunk, observed = [pk for pk, _entry in live], [entry for _pk, entry in live]
        rows = {str(t.pk): t for t in Trigger.objects.filter(pk__in=chunk)}
        now = clock.now()
        writes = [
            (entry, desired_entry(rows.get(pk), entry, now=now))
            for pk, entry in zip(chunk, observed, strict=True)
        ]
        for pk, written in zip(chunk, apply_writes(client, keys, writes), strict=True):
            if not written:
                sync_trigger(pk)


def apply_writes(
    client: redis.Redis, keys: Keys, writes: Sequence[tuple[Observed, Desired | None]]
) -> list[bool]:
    """Pipelined compare-and-set writes; whether each one was written. A conflict means another writer got
    there first, with a newer row (reconcile leaves it; `sync_trigger` retries, `sync_triggers` hands it to
    `sync_trigger`). A WRONGTYPE key is deleted first: it cannot be ours."""
    if not writes:
        return []
    wrong = [observed.key for observed, _desired in writes if observed.wrong_type]
    if wrong:
        client.delete(*wrong)
    script = registered_script(client, WRITE_SCRIPT)
    with client.pipeline(transaction=False) as pipe:
        for observed, desired in writes:
            args = desired.put_args() if desired is not None else ["remove", TOMBSTONE_SECONDS]
            expected = ("", "") if observed.wrong_type else (observed.expected_slot, observed.expected_rev)
            script(keys=write_keys(keys, observed.key), args=["", *expected, *args], client=pipe)
        replies = pipe.execute(raise_on_error=False)
    return [bool(reply) and not isinstance(reply, Exception) for reply in replies]
