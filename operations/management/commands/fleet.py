"""`manage.py fleet status [--json] [--timeout S]`: the snapshot of `GET /api/v1/status/` in a terminal —
queues, workers, the beat leader and what is due in the next minute — as readable tables, or as the API's
JSON document with `--json`. Exits 1 when Redis or the workers could not be read, so scripts can tell."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from operations import status as fleet


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Columns padded to their widest cell; numbers right-aligned, text left-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        padded = (
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        )
        return "  ".join(padded).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(row) for row in cells)]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def render(snapshot: fleet.FleetStatus) -> list[str]:
    lines = [f"Fleet status at {_cell(snapshot.generated_at)}", ""]
    lines.append("Queues  (waiting by priority; completed/failed: runs ended in the last 24 h)")
    lines += table(
        ["QUEUE", "WAITING", "BY PRIORITY", "ACTIVE", "SCHEDULED", "UNACKED", "COMPLETED", "FAILED"],
        [
            [
                q.name,
                q.waiting,
                " ".join(f"{p}:{n}" for p, n in sorted(q.waiting_by_priority.items()) if n) or "-",
                q.active,
                q.scheduled,
                q.unacked,
                q.completed,
                q.failed,
            ]
            for q in snapshot.queues
        ],
    )
    lines += ["", f"Workers  ({len(snapshot.workers)} answering)"]
    lines += table(
        ["WORKER", "PID", "CONCURRENCY", "ACTIVE", "RUNNING"],
        [
            [
                w.name,
                w.pid,
                w.concurrency,
                len(w.active),
                ", ".join(f"{t.name}[{t.id[:8]}] {_seconds(t.running_seconds)}" for t in w.active) or "-",
            ]
            for w in snapshot.workers
        ],
    )
    beat = snapshot.beat
    lines += ["", "Beat"]
    if beat.leader:
        lines.append(
            f"  leader {beat.holder or '(unknown: no heartbeat yet)'}; lock expires in "
            f"{_seconds(beat.lock_ttl_seconds)} unless extended"
        )
    else:
        lines.append("  NO LEADER: no beat holds the lock")
    if beat.last_tick_at is not None:
        took = f"{beat.tick_seconds * 1000:.1f} ms" if beat.tick_seconds is not None else "?"
        lines.append(
            f"  last tick {_seconds(beat.age_seconds)} ago, at {_cell(beat.last_tick_at)} (took {took})"
        )
    lines += ["", f"Due in the next minute: {snapshot.due_next_minute}"]
    if snapshot.due_soon:
        lines += table(["FIRE AT", "TRIGGER", "NAME"], [[d.fire_at, d.id, d.name] for d in snapshot.due_soon])
    for source, error in snapshot.errors.items():
        lines.append(f"! could not read {source}: {error}")
    return lines


class Command(BaseCommand):
    help = "Show the fleet: queues, workers, the beat leader, triggers due in the next minute."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["status"], help="What to show (only `status` for now).")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print the JSON of GET /api/v1/status/."
        )
        parser.add_argument(
            "--timeout", type=float, default=None, help="Seconds to wait for workers' replies (default 1)."
        )

    def handle(self, *args: Any, action: str, as_json: bool, timeout: float | None, **_: Any) -> None:
        snapshot = fleet.fleet_status(inspect_timeout=timeout)
        if as_json:
            self.stdout.write(json.dumps(snapshot.as_json(), indent=2))
        else:
            for line in render(snapshot):
                self.stdout.write(line)
        if snapshot.errors:
            raise CommandError(f"incomplete: {', '.join(snapshot.errors)} could not be read", returncode=1)
