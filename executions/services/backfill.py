"""Backfill: a past range of a trigger's slots run on request, as scheduled runs.

There is no second way of starting a scheduled run here: the slots come from the time engine
(`timing.slots_between`, so `start_at`/`end_at` and the zone's daylight-saving rules hold), and each one goes
through the fire path (`fire.execution_fire_batch`, origin `backfill`) — the trigger row locked, the unique
(trigger, slot) key the judge, the overlap policy and the per-owner limit applied as to any slot. So a slot
already recorded (by beat, catch-up or an earlier backfill) is never run twice, and a backfill repeated is a
no-op. The range is capped (`SCHEDULER_MAX_BACKFILL_SLOTS`), and an optional spread spaces the launches out
(`not_before`) instead of sending a herd at the target."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from executions import selectors
from executions.models import ExecutionOrigin
from executions.services.fire import TINY, Fire, execution_fire_batch
from schedules import services as trigger_services
from schedules import timing, validation
from schedules.models import Trigger, TriggerStatus
from toolkit import clock

#: What became of one slot of the range.
RECORDED = "recorded"  # it already had an execution: left alone
WOULD_RUN = "would_run"  # dry run: it has none, a backfill would record it
CREATED = "created"  # this backfill recorded it (running, waiting, or skipped by the overlap policy)
REFUSED = "refused"  # the trigger may not run it any more (paused, completed or max_runs reached meanwhile)


@dataclasses.dataclass(frozen=True)
class BackfillSlot:
    slot: datetime
    outcome: str
    execution_id: uuid.UUID | None = None
    status: str = ""
    skip_reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "slot": _iso(self.slot),
            "outcome": self.outcome,
            "execution": str(self.execution_id) if self.execution_id else None,
            "status": self.status or None,
            "skip_reason": self.skip_reason or None,
        }


@dataclasses.dataclass
class BackfillReport:
    trigger_id: uuid.UUID
    start: datetime
    end: datetime
    dry_run: bool
    spread_seconds: int
    slots: list[BackfillSlot]

    def count(self, outcome: str) -> int:
        return sum(s.outcome == outcome for s in self.slots)

    def as_json(self) -> dict[str, Any]:
        return {
            "trigger": str(self.trigger_id),
            "start": _iso(self.start),
            "end": _iso(self.end),
            "dry_run": self.dry_run,
            "spread_seconds": self.spread_seconds,
            "counts": {
                "slots": len(self.slots),
                **{o: self.count(o) for o in (RECORDED, WOULD_RUN, CREATED, REFUSED)},
            },
            "slots": [s.as_json() for s in self.slots],
        }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _instant(value: Any, field: str) -> datetime:
    if value is None or value == "":
        raise ValidationError({field: ["this field is required"]})
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValidationError({field: ["must be a date-time with a time zone offset"]})
    return value


def _spread(value: Any) -> int:
    limit = settings.SCHEDULER_MAX_BACKFILL_SPREAD_SECONDS
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ValidationError({"spread_seconds": [f"must be an integer between 0 and {limit}"]})
    return value


def backfill_slots(*, trigger: Trigger, start: Any, end: Any) -> list[datetime]:
    """The slots of `trigger`'s schedule in [start, end], oldest first, after checking the request: a
    range in the past (slots from now on are the beat's), of a trigger that can still run, holding no more
    than SCHEDULER_MAX_BACKFILL_SLOTS slots. `max_runs` is left to the fire path, which counts runs as it
    records them; the trigger's own start_at/end_at bound the walk."""
    start, end = _instant(start, "start"), _instant(end, "end")
    if end < start:
        raise ValidationError({"end": ["must not be before start"]})
    now = clock.now()
    if end > now:
        raise ValidationError({"end": ["must not be in the future: slots from now on are the beat's to run"]})
    if trigger.deleted_at is not None:
        raise ValidationError({"trigger": ["a deleted trigger cannot be backfilled"]})
    if trigger.status == TriggerStatus.PAUSED:
        raise ValidationError({"status": ["a paused trigger cannot be backfilled; resume it first"]})
    if trigger.status == TriggerStatus.COMPLETED:
        raise ValidationError({"status": ["a completed trigger records nothing more; change its schedule"]})
    cap = settings.SCHEDULER_MAX_BACKFILL_SLOTS
    spec = dataclasses.replace(validation.spec_of(trigger), max_runs=None)
    try:
        slots = timing.slots_between(spec, start - TINY, end, limit=cap + 1)
    except timing.TimingError as exc:
        raise ValidationError({"trigger": [f"its schedule cannot be evaluated: {exc}"]}) from None
    if len(slots) > cap:
        raise ValidationError(
            {"end": [f"the range holds more than {cap} slots; backfill at most {cap} at a time"]}
        )
    return slots


def execution_backfill(
    *,
    trigger: Trigger,
    start: Any,
    end: Any,
    dry_run: bool = False,
    spread_seconds: Any = 0,
    launched_by: str = "backfill",
    progress: Callable[[int, int], None] | None = None,
) -> BackfillReport:
    """Run the slots of [start, end] that have no execution yet; a dry run only says which those are.

    The fires go in batches of SCHEDULER_FIRE_BATCH_SIZE, each one transaction of the fire path (so a
    long backfill never holds the trigger locked from its first slot to its last, and `progress(done,
    total)` can report between them). With `spread_seconds`, the i-th of n new runs launches no earlier
    than now + i·spread/n. The overlap policy is judged as each slot is recorded, as for catch-up: under
    `skip` the slots recorded while an earlier one still runs are skipped (`overlap`), under `queue` they
    wait and run one after another in slot order, under `allow` they all run."""
    spread = _spread(spread_seconds)
    slots = backfill_slots(trigger=trigger, start=start, end=end)
    before = selectors.executions_at_slots(trigger, slots)
    report = BackfillReport(trigger.pk, start, end, dry_run, spread, [])
    if dry_run:
        report.slots = [
            _slot_of(slot, before.get(slot), RECORDED if slot in before else WOULD_RUN) for slot in slots
        ]
        return report
    missing = [slot for slot in slots if slot not in before]
    now = clock.now()
    fires = [
        Fire(
            trigger.pk,
            slot,
            ExecutionOrigin.BACKFILL,
            launched_by[:100],
            not_before=now + timedelta(seconds=spread * i / len(missing)) if spread else None,
        )
        for i, slot in enumerate(missing)
    ]
    size = max(1, settings.SCHEDULER_FIRE_BATCH_SIZE)
    created: set[uuid.UUID] = set()
    for offset in range(0, len(fires), size):
        created.update(row.pk for row in execution_fire_batch(fires=fires[offset : offset + size]))
        if progress is not None:
            progress(min(offset + size, len(fires)), len(fires))
    after = selectors.executions_at_slots(trigger, missing)
    for slot in slots:
        if slot in before:
            report.slots.append(_slot_of(slot, before[slot], RECORDED))
        elif slot in after:
            # Recorded by this backfill, or meanwhile by another fire of the same slot (the key let one in).
            report.slots.append(
                _slot_of(slot, after[slot], CREATED if after[slot].pk in created else RECORDED)
            )
        else:
            report.slots.append(BackfillSlot(slot, REFUSED))
    if created:
        trigger_services.trigger_record_action(
            trigger=Trigger.objects.get(pk=trigger.pk),
            action=f"Backfill: {len(created)} runs, slots {min(missing):%Y-%m-%d %H:%M} to "
            f"{max(missing):%Y-%m-%d %H:%M} UTC ({launched_by})",
        )
    return report


def _slot_of(slot: datetime, row: selectors.SlotRow | None, outcome: str) -> BackfillSlot:
    if row is None:
        return BackfillSlot(slot, outcome)
    return BackfillSlot(slot, outcome, row.pk, row.status, row.skip_reason)
