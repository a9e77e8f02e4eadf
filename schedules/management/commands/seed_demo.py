"""`python manage.py seed_demo --owner admin`: a handful of triggers on the built-in demo target, so a fresh
`make run` shows runs, successes, failures and retries within a minute. Idempotent: an owner who already
has triggers gets none added. Goes through the services like any other writer."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from schedules import services
from schedules.models import Trigger

DEMO_TRIGGERS: tuple[dict[str, Any], ...] = (
    {"name": "Agent check-in", "workflow_id": "agent", "cron_expression": "*/30 * * * * *"},
    {"name": "Hello every minute", "workflow_id": "hello", "cron_expression": "* * * * *"},
    {
        "name": "Flaky API sync",
        "workflow_id": "flaky",
        "cron_expression": "*/2 * * * *",
        "overlap_policy": "queue",
    },
    {
        "name": "Nightly ETL",
        "workflow_id": "etl",
        "cron_expression": "30 2 * * *",
        "timezone": "America/New_York",
    },
    {
        "name": "Weekday standup report",
        "workflow_id": "default",
        "cron_expression": "0 9 * * 1-5",
        "timezone": "America/Los_Angeles",
    },
)


class Command(BaseCommand):
    help = "Create demo triggers on the demo target for one user (only if they have none)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", default="admin", help="username of the owner (default: admin)")

    def handle(self, *args: Any, owner: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=owner).first()
        if user is None:
            raise CommandError(f"no user named {owner!r}")
        target = next((n for n, t in settings.SCHEDULER_TARGETS.items() if t.get("kind") == "demo"), None)
        if target is None:
            self.stdout.write("no demo target configured (SCHEDULER_TARGETS); nothing seeded")
            return
        if Trigger.objects.live().filter(owner=user).exists():
            self.stdout.write(f"{owner} already has triggers; nothing seeded")
            return
        for fields in DEMO_TRIGGERS:
            services.trigger_register(owner=user, target=target, **fields)
        self.stdout.write(f"seeded {len(DEMO_TRIGGERS)} demo triggers for {owner} on target {target!r}")
