"""`python manage.py prune_executions --older-than 90d [--dry-run]`: execution history retention."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions import policies, services
from toolkit import cli


class Command(BaseCommand):
    help = (
        "Delete finished executions (and their attempts) that ended longer ago than --older-than "
        "(90d, 12h, 30m, 1d12h ...), then the runs beyond each trigger's history limits (keep_succeeded, "
        "keep_failed). Runs still going are never deleted; trigger counters are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help="age such as 90d, 12h or 30m")
        parser.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
        cli.add_progress_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            age = policies.parse_age(options["older_than"])
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}") from None
        dry_run, force = options["dry_run"], options["progress"]
        with cli.progress(self.stderr, "prune by age", None, force=force) as update:
            count = services.execution_prune(older_than=age, dry_run=dry_run, progress=update)
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"{verb} {count} execution(s) finished more than {options['older_than']} ago")
        with cli.progress(self.stderr, "prune beyond history limits", None, force=force) as update:
            beyond = services.execution_prune_history(dry_run=dry_run, progress=update)
        if beyond:
            self.stdout.write(f"{verb} {beyond} execution(s) beyond their trigger's history limits")
