"""`manage.py sync_schedules [--dry-run | --check] [--json]`: rebuild RedBeat entries from the database, on
demand.

The leading beat runs the same reconcile when it takes the lock and every SCHEDULER_RECONCILE_SECONDS; this
command is for an operator who wants it now (after restoring Redis, say) or wants to see the drift first.
Every write is a compare-and-set, so it is safe beside a running beat. `--check` is the dry run a monitor
or a deploy step can act on: it exits 1 when anything would change (an entry missing, orphaned or drifted,
a missed slot owed, a schedule that cannot be evaluated), 0 when Redis matches the database."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from schedules.beat.entries import CHUNK_SIZE, iso
from schedules.beat.reconcile import ReconcileReport, reconcile
from schedules.models import Trigger
from toolkit import cli

#: The report's lists, in the order the drift table shows them.
DRIFT_KINDS = ("added", "removed", "corrected", "catchup", "failed")


class Command(BaseCommand):
    help = (
        "Compare RedBeat entries with the database and repair them; print what was added, removed, corrected."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Report the differences without writing or sending anything.",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="A dry run that exits 1 when it finds drift between the database and Redis (0 when none).",
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        cli.add_progress_argument(parser)

    def handle(
        self,
        *args: Any,
        dry_run: bool = False,
        check: bool = False,
        json: bool = False,
        progress: bool = False,
        verbosity: int = 1,
        **options: Any,
    ) -> None:
        total = Trigger.objects.active().count()
        with cli.progress(self.stderr, "reconcile", total, force=progress) as update:
            pages = 0

            def pause() -> None:
                # Called before each page of active triggers (then for each page of orphans).
                nonlocal pages
                update(min(total, pages * CHUNK_SIZE), total)
                pages += 1

            report = reconcile(dry_run=dry_run or check, pause=pause)
            update(total, total)
        drift = _drift(report)
        if json:
            items = [{"kind": kind, "trigger": ref, "name": name} for kind, ref, name in drift]
            self.stdout.write(cli.dumps({**report.as_json(), "drift": bool(drift), "items": items}))
        else:
            self.stdout.write(report.lines(limit=0)[0])
            shown = drift if verbosity >= 2 else drift[:50]
            if shown:
                self.stdout.write(cli.table(("drift", "trigger", "name"), shown))
            if len(shown) < len(drift):
                self.stdout.write(f"… and {len(drift) - len(shown)} more (-v 2 lists them all)")
        if check and drift:
            raise CommandError(f"drift found: {len(drift)} difference(s) between the database and Redis")


def _drift(report: ReconcileReport) -> list[tuple[str, str, str]]:
    """One (kind, trigger id or key, trigger name) per difference, names read in one query."""
    items: list[tuple[str, str]] = []
    for kind in DRIFT_KINDS:
        if kind == "catchup":
            items.extend((kind, f"{f.trigger_id}@{iso(f.slot)}") for f in report.catchup)
        else:
            items.extend((kind, ref) for ref in getattr(report, kind))
    ids = {ref.split("@")[0] for _, ref in items}
    valid = [ref for ref in ids if _is_uuid(ref)]
    rows = Trigger.objects.filter(pk__in=valid).values_list("pk", "name") if valid else []
    names = {str(pk): name for pk, name in rows}
    return [(kind, ref, names.get(ref.split("@")[0], "")) for kind, ref in items]


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
