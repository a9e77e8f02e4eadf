"""Settings come from the environment. Each case imports the settings in a fresh interpreter, because they
are read once at import time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.procs import ROOT

PROBE = """
import json, scheduler_project.settings as s
print(json.dumps({
    "engine": s.DATABASES["default"]["ENGINE"], "name": str(s.DATABASES["default"]["NAME"]),
    "host": s.DATABASES["default"].get("HOST"), "options": s.DATABASES["default"].get("OPTIONS", {}),
    "redis": s.REDIS_URL, "broker": s.CELERY_BROKER_URL, "debug": s.DEBUG, "hosts": s.ALLOWED_HOSTS,
    "lock": s.REDBEAT_LOCK_TIMEOUT, "loop": s.BEAT_MAX_LOOP_INTERVAL,
    "reconcile": s.SCHEDULER_RECONCILE_SECONDS,
    "visibility": s.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"], "cron": s.CRON_SECRET,
    "acks_late": s.CELERY_TASK_ACKS_LATE, "prefetch": s.CELERY_WORKER_PREFETCH_MULTIPLIER,
}))
"""

CLEAR = (
    "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "REDBEAT_LOCK_TIMEOUT",
    "BEAT_MAX_LOOP_INTERVAL", "SCHEDULER_RECONCILE_SECONDS", "CELERY_VISIBILITY_TIMEOUT", "CRON_SECRET",
)  # fmt: skip


def load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in CLEAR}
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_from(**env: str) -> dict:
    result = load_settings(**env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_values_come_from_the_environment() -> None:
    got = settings_from(
        SECRET_KEY="s3cret",
        DATABASE_URL="postgres://app:pw@db.internal:5433/sched",
        REDIS_URL="redis://cache:6380/2",
        ALLOWED_HOSTS="sched.example.com, api.example.com",
        REDBEAT_LOCK_TIMEOUT="45",
        BEAT_MAX_LOOP_INTERVAL="0.5",
        SCHEDULER_RECONCILE_SECONDS="90",
        CELERY_VISIBILITY_TIMEOUT="7200",
        CRON_SECRET="tick-tock",
    )
    assert got["engine"] == "django.db.backends.postgresql"
    assert (got["host"], got["name"]) == ("db.internal", "sched")
    assert got["redis"] == got["broker"] == "redis://cache:6380/2"
    assert got["debug"] is False
    assert got["hosts"] == ["sched.example.com", "api.example.com"]
    assert (got["lock"], got["loop"], got["reconcile"], got["visibility"]) == (45, 0.5, 90, 7200)
    assert got["cron"] == "tick-tock"
    assert got["acks_late"] is True
    assert got["prefetch"] == 1


def test_laptop_defaults_are_sqlite_with_wal_and_immediate_transactions() -> None:
    got = settings_from(DEBUG="1")
    assert got["engine"] == "django.db.backends.sqlite3"
    assert got["name"].endswith("scheduler.sqlite3")
    assert got["options"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in got["options"]["init_command"]
    assert got["options"]["timeout"] >= 5
    assert got["redis"] == "redis://127.0.0.1:6379/0"
    assert (got["lock"], got["loop"], got["reconcile"], got["visibility"]) == (30, 1.0, 60, 3600)


def test_secret_key_is_required_outside_debug() -> None:
    result = load_settings(DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize("name", ["REDBEAT_LOCK_TIMEOUT", "SCHEDULER_RECONCILE_SECONDS"])
def test_a_malformed_number_names_the_variable(name: str) -> None:
    result = load_settings(DEBUG="1", **{name: "soon"})
    assert result.returncode != 0
    assert f"{name} must be an integer" in result.stderr
