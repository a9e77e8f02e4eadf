"""The fire path's notifications hook: skipped and missed slots, as `toolkit.events` events.

Called once per fire batch with the rows it recorded. Nobody subscribed (the listener's cached answer):
nothing is built and nothing is queried. Otherwise one event per (trigger, kind, skip reason) of the batch,
with the number of slots it stands for, leaves after commit."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

from executions.models import Execution, ExecutionStatus
from executions.policies import SkipReason
from schedules.models import Trigger
from toolkit import clock, events
from toolkit.events import Event, EventKind

#: Skip reasons of slots that were missed (the fleet was down, or the slot started too late), not declined.
MISSED_REASONS = frozenset(
    {
        SkipReason.CATCHUP_NONE,
        SkipReason.CATCHUP_SUPERSEDED,
        SkipReason.CATCHUP_WINDOW,
        SkipReason.CATCHUP_CAP,
        SkipReason.MISFIRE,
    }
)
_OURS = frozenset({EventKind.SKIPPED, EventKind.MISSED})


def announce_recorded(rows: Sequence[Execution]) -> None:
    kinds = events.wanted() & _OURS if rows else frozenset()
    if not kinds:
        return
    counts: Counter[tuple[str, uuid.UUID, str]] = Counter()
    triggers: dict[uuid.UUID, Trigger] = {}
    for row in rows:
        if row.status != ExecutionStatus.SKIPPED:
            continue
        triggers[row.trigger_id] = row.trigger
        if EventKind.SKIPPED in kinds:
            counts[(EventKind.SKIPPED, row.trigger_id, row.skip_reason)] += 1
        if EventKind.MISSED in kinds and row.skip_reason in MISSED_REASONS:
            counts[(EventKind.MISSED, row.trigger_id, "")] += 1
    now = clock.now()
    events.emit_after_commit(
        [
            Event.of(kind, trigger=triggers[pk], at=now, reason=reason, count=n)
            for (kind, pk, reason), n in counts.items()
        ]
    )
