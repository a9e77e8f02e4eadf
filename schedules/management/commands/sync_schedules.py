"""`manage.py sync_schedules [--dry-run]`: rebuild RedBeat entries from the database, on demand.

The leading beat runs the same reconcile when it takes the lock and every SCHEDULER_RECONCILE_SECONDS; this
command is for an operator who wants it now (after restoring Redis, say) or wants to see the drift first.
Every write is a compare-and-set, so it is safe beside a running beat."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from schedules import redbeat_sync


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

    def handle(self, *args: Any, dry_run: bool = False, verbosity: int = 1, **options: Any) -> None:
        report = redbeat_sync.reconcile(dry_run=dry_run)
        for line in report.lines(limit=None if verbosity >= 2 else 50):
            self.stdout.write(line)
