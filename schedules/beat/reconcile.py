"""Reconcile and audit: Redis repaired from the database. The full rebuild (`reconcile`), the steady pass
over what changed since a watermark (`reconcile_changed`) and the slow audit in slices (`Audit`).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from celery import Celery
from django.conf import settings

from schedules import timing
from schedules.beat import dispatch
from schedules.beat.dispatch import Fire
from schedules.beat.entries import (
    CHUNK_SIZE,
    LAYOUT,
    TINY,
    EntryDefinition,
    Keys,
    Observed,
    celery_app,
    epoch_text,
    iso,
    last_slots_until,
    read_entries,
    redis_client,
    registered_script,
)
from schedules.beat.sync import WRITE_SCRIPT, Desired, SlotMemo, apply_writes, desired_entry, write_keys
from schedules.models import Trigger

# The pure policy module (no Django, no Celery) is the one table of broker priorities for fires and launches.
from toolkit import broker, clock

logger = logging.getLogger(__name__)

#: Triggers one reconcile pass sends a missed slot for; the rest wait for the next pass.
RECONCILE_MAX_CATCHUP = 500
#: The audit's slice (rows, or schedule members) and the least slack a tick must have to run one: ~30 ms of
#: work, only when the next fire is at least this far off, so the audit never delays a due slot.
AUDIT_ROWS = 250


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
    #: Missed slots found while fires may still be in flight (`fires_settled`): left for a later pass.
    deferred: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.corrected or self.catchup or self.failed)

    def lines(self, *, limit: int | None = 20) -> list[str]:
        verb = "would be" if self.dry_run else ""
        counts = (
            f"{len(self.added)} added, {len(self.removed)} removed, {len(self.corrected)} corrected, "
            f"{len(self.catchup)} missed slots sent to catch-up, {len(self.failed)} failed"
        )
        if self.deferred:
            counts += f", {self.deferred} missed slots deferred while fires were in flight"
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


#: Seconds a fire delivered to a worker and not acknowledged holds catch-ups back (`fires_settled`).
FIRE_DELIVERY_HORIZON = 120.0


def fires_settled() -> bool:
    """Whether no fire is in flight: none waiting in the fire queue, none delivered to a worker and not yet
    acknowledged (`toolkit.broker.messages_in_flight`; acks are late, after the fire is recorded).

    A slot counts as missed when its fire_at plus grace has passed and the row does not record it. During a
    herd that outlasts the grace, the row is stale because the fire is still queued, not because it was
    lost: sending it to catch-up then is a duplicate (the unique (trigger, slot) execution absorbs it, at
    the cost of a fire message each; 1,000 of them once in a 100k herd). So every pass checks this before
    it reads its rows, and sends missed slots only when it holds: every fire published before the check
    was then recorded before the rows were read. Otherwise the slots are deferred (not marked as sent) to a
    later pass. A broker that cannot be read counts as not settled.

    A delivery counts as in flight for FIRE_DELIVERY_HORIZON only: a worker killed holding a fire leaves it
    unacknowledged until the broker's visibility timeout (an hour in production), and catch-up for every
    other trigger must not wait that long behind it (a fire batch records in well under a second)."""
    try:
        client = broker.broker_client(timeout=2)
        since = time.time() - FIRE_DELIVERY_HORIZON  # the broker's clock, as kombu stamps deliveries
        in_flight = broker.messages_in_flight(client, settings.SCHEDULER_FIRE_QUEUE, delivered_since=since)
        return in_flight == 0
    except redis.RedisError as exc:
        logger.warning("reconcile: cannot read the fire queue (%s); missed slots wait", exc)
        return False


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
    if observed.definition_ref is None and not observed.wrong_type:
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
    tail = [s for s in last_slots_until(definition.spec, first, until, spacing=spacing) if s > floor]
    tail = [s for s in tail if definition.fire_at(s) + grace < now]
    if not tail or observed.catchup_raw == epoch_text(tail[-1]):
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
    if not dry_run and client.get(keys.layout) != LAYOUT:
        _drop_legacy_entries(client, keys)
    started = clock.now()
    memo = SlotMemo()
    settled = fires_settled()  # before each page's rows are read (the generator reads the next page)
    for page in _active_triggers(chunk_size):
        pause()
        _reconcile_page(app, client, keys, page, report, memo, producer, settled=settled)
        settled = fires_settled()
    # Then every entry key and schedule member, a chunk at a time, against the database: no set of every
    # key in memory, so the beat's memory stays flat in the number of triggers.
    on_redis = itertools.chain(
        client.scan_iter(match=keys.entry_pattern, count=1000),
        (member for member, _score in client.zscan_iter(keys.schedule, count=1000)),
    )
    while chunk := list(itertools.islice(on_redis, CHUNK_SIZE)):
        _remove_orphans(client, keys, chunk, report, pause)
    if not dry_run:
        client.mset({keys.built: iso(started), keys.watermark: iso(started), keys.layout: LAYOUT})
    return report


def _drop_legacy_entries(client: redis.Redis, keys: Keys) -> None:
    """Before a rebuild into a new layout: the old layout's entries out of the schedule and out of Redis, at
    once (no firing in between: the beat would meet them and drop each as corrupt, with a warning). A few
    seconds at a million entries, well within a lock timeout."""
    batch: list[str] = []
    for key in [*client.scan_iter(match=keys.legacy_entry_pattern, count=10_000), None]:
        if key is not None:
            batch.append(key)
        if batch and (key is None or len(batch) == CHUNK_SIZE):
            with client.pipeline(transaction=False) as pipe:
                pipe.zrem(keys.schedule, *batch)
                pipe.delete(*batch)
                pipe.execute()
            batch = []


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
        settled = fires_settled()
        active = list(Trigger.objects.active().filter(pk__in=chunk).order_by("pk").only(*_RECONCILE_FIELDS))
        _reconcile_page(app, client, keys, active, report, memo, producer, settled=settled)
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
    *,
    settled: bool,
) -> None:
    """Repair the entries of one page of active triggers (and send their missed slots, when no fire was in
    flight before the page was read: `settled`, see `fires_settled`). A dry-run report reads and decides
    but writes and sends nothing."""
    observed = read_entries(client, keys, [keys.entry(t.pk) for t in page], scores=True)
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
        if fire is not None and not settled:
            report.deferred += 1
        elif fire is not None and len(report.catchup) + len(missed) < RECONCILE_MAX_CATCHUP:
            missed.append((entry, desired, fire))
    report.catchup.extend(fire for _entry, _desired, fire in missed)
    if not report.dry_run:
        apply_writes(client, keys, writes)
        _send_catchups(app, client, keys, missed, producer)


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
            settled = fires_settled()
            query = Trigger.objects.active().order_by("pk").only(*_RECONCILE_FIELDS)
            page = list((query.filter(pk__gt=self.after) if self.after else query)[: self.rows])
            if page:
                _reconcile_page(app, client, keys, page, report, SlotMemo(), producer, settled=settled)
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
    dispatch.publish(app, [fire for _observed, _desired, fire in missed], producer=producer)
    client.hincrby(keys.stats, "fired_catchup", len(missed))
    script = registered_script(client, WRITE_SCRIPT)
    fresh = read_entries(client, keys, [observed.key for observed, _d, _f in missed])
    with client.pipeline(transaction=False) as pipe:
        for entry, (_observed, _desired, fire) in zip(fresh, missed, strict=True):
            if entry.definition_ref is not None:
                args = ["", entry.expected_slot, entry.expected_rev, "catchup", epoch_text(fire.slot)]
                script(keys=write_keys(keys, entry.key), args=args, client=pipe)
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
                ours = [key for key in foreign if keys.owns(key)]
                if ours:
                    client.delete(*ours)
        candidates_ours = [
            key for key, trigger_id in ids.items() if trigger_id and str(trigger_id) not in active
        ]
        observed = read_entries(client, keys, candidates_ours, scores=True)
        orphans = [entry for entry in observed if entry.exists]
        report.removed.extend(str(ids[entry.key]) for entry in orphans)
        if not report.dry_run:
            apply_writes(client, keys, [(entry, None) for entry in orphans])
