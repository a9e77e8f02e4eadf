"""`make run`'s demo triggers: created through the services on the demo target, once."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from schedules.models import Trigger

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_seed_demo_creates_active_triggers_once(user, settings) -> None:
    settings.SCHEDULER_TARGETS = {"default": {"kind": "demo"}}
    out = StringIO()
    call_command("seed_demo", "--owner", user.username, stdout=out)
    triggers = Trigger.objects.filter(owner=user)
    assert triggers.count() == 5
    assert all(t.status == "active" and t.next_run_at is not None and t.target == "default" for t in triggers)
    call_command("seed_demo", "--owner", user.username, stdout=out)
    assert Trigger.objects.filter(owner=user).count() == 5, "a second make run adds nothing"
    assert "already has triggers" in out.getvalue()


def test_seed_demo_needs_a_demo_target_and_a_user(user, settings) -> None:
    settings.SCHEDULER_TARGETS = {"agents": {"kind": "http", "url": "http://127.0.0.1:9/{workflow_id}"}}
    out = StringIO()
    call_command("seed_demo", "--owner", user.username, stdout=out)
    assert not Trigger.objects.exists()
    with pytest.raises(CommandError):
        call_command("seed_demo", "--owner", "nobody")
