"""Environment for the test run, loaded as a pytest plugin (`-p tests.envdefaults`) so it is in place
before pytest-django imports the settings.

The suite shares the machine's Redis but keeps to its own database number, and uses short beat timings so
end-to-end tests of failover and reconcile finish in seconds (production defaults: 30 s / 1 s / 60 s /
3600 s for lock timeout / loop interval / reconcile period / visibility timeout).
"""

from __future__ import annotations

import os
from urllib.parse import urlparse, urlunparse

TEST_REDIS_DB = os.environ.get("REDIS_TEST_DB", "9")


def _with_db(url: str, db: str) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path=f"/{db}"))


# One SQLite test database file per run, so two runs in one checkout never share (and destroy) one file.
_VAR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "var")
os.environ.setdefault("SQLITE_TEST_NAME", os.path.join(_VAR, f"test_{os.getpid()}.sqlite3"))
os.environ["REDIS_URL"] = _with_db(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), TEST_REDIS_DB)
os.environ.pop("CELERY_BROKER_URL", None)
for name, value in {
    "DJANGO_SETTINGS_MODULE": "scheduler_project.settings",
    "SECRET_KEY": "test-secret-key-not-for-production",
    "DEBUG": "0",
    "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
    "REDBEAT_LOCK_TIMEOUT": "6",
    "BEAT_MAX_LOOP_INTERVAL": "1",
    "SCHEDULER_RECONCILE_SECONDS": "3",
    "CELERY_VISIBILITY_TIMEOUT": "10",
    "INTERNAL_API_SECRET": "test-internal-secret-0123456789",
    "CRON_SECRET": "test-cron-secret-0123456789",
    "INSECURE_FAST_PASSWORD_HASHING": "1",
    "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci"),
}.items():
    os.environ.setdefault(name, value)
