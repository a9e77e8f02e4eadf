"""Shared fixtures: the real Redis (this run's own database number), child-process environments, and a
hypothesis profile for CI."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from tests.support.procs import Fleet, fleet, live_database_url
from tests.support.receiver import receiver  # noqa: F401 - a shared fixture

hypothesis_settings.register_profile(
    "ci", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.register_profile("dev", deadline=None, max_examples=50)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The system Chromium, installed from Debian's packages when missing (CI runs as root)."""
    if not CHROMIUM.exists():
        apt = shutil.which("apt-get")
        if apt is None:
            pytest.fail(f"{CHROMIUM} is missing and there is no apt-get to install it with")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "chromium"]):
            result = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900, check=False)
            if result.returncode != 0:
                pytest.fail(
                    f"installing Chromium failed at `{' '.join(step)}` (rc {result.returncode}); it needs "
                    f"root and Debian's package mirror:\n{result.stderr[-2000:]}"
                )
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get reported success but {CHROMIUM} is still missing")
    return CHROMIUM


@pytest.fixture(scope="session", autouse=True)
def _collected_static() -> None:
    """Pages link their assets through collectstatic's manifest (as in production), so build it once."""
    manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
    if not manifest.exists():
        from django.core.management import call_command

        call_command("collectstatic", "--noinput", verbosity=0)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The real Redis, this run's database only: flushed before and after (FLUSHDB, never FLUSHALL)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def child_env() -> dict[str, str]:
    """Environment for subprocesses: the same settings, pointed at the live test database."""
    env = dict(os.environ)
    env["DATABASE_URL"] = live_database_url()
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


@pytest.fixture
def processes(request: pytest.FixtureRequest, child_env: dict[str, str]) -> Iterator[Fleet]:
    log_dir = ARTIFACTS / "logs" / request.node.name.replace("/", "_")[:120]
    with fleet(log_dir, child_env) as group:
        yield group


class FrozenClock:
    """The one clock (`toolkit.clock.now`), held still and moved by hand."""

    def __init__(self, start):
        self.current = start

    def now(self):
        return self.current

    def set(self, value) -> None:
        self.current = value

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.current = self.current + timedelta(seconds=seconds)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    from datetime import UTC, datetime

    from toolkit import clock

    frozen = FrozenClock(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    monkeypatch.setattr(clock, "now", frozen.now)
    return frozen


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw-alice-123")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw-bob-123")
