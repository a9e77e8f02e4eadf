"""Browser fixtures: Debian's Chromium driven headless by Playwright, and the app served by gunicorn on
127.0.0.1 against this run's test database, as in production (whitenoise serving collected static files).

Chromium is never downloaded by Playwright (that fails here and proves nothing about the machine): the
system's `/usr/bin/chromium` is used, installed with apt when it is missing. These tests never skip — a
missing browser is a setup failure, reported as one.
"""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS
from tests.support.procs import BIN, ROOT, Fleet, free_port, wait_for

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = ARTIFACTS / "screenshots"


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator:
    """One headless Chromium per test module. Playwright's sync API runs an event loop in this thread, and
    Django refuses ORM calls beside a running loop; the tests' own ORM calls (setup, assertions) are plain
    blocking calls, so that guard is lifted while the browser is up, and only then."""
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
            yield launched
            launched.close()


@pytest.fixture
def page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="en-GB")
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture(scope="session")
def collected_static() -> None:
    """The manifest whitenoise serves from, as `make run` and the release build produce it."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        [str(BIN / "python"), "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT, env=env, check=True, timeout=300,
    )  # fmt: skip


@dataclass(frozen=True)
class App:
    base: str

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def app(processes: Fleet, collected_static: None, redis_client) -> App:
    """gunicorn serving the admin against the live test database (the test's writes are committed, so the
    server sees them) and this run's Redis database."""
    port = free_port()
    processes.start(
        "web",
        [str(BIN / "gunicorn"), "scheduler_project.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--access-logfile", "-", "--graceful-timeout", "2"],
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ready(f"{base}/readyz"), timeout=30, what="gunicorn answering /readyz")
    return App(base)


def screenshot(page, name: str) -> Path:
    """A full-page PNG under test-artifacts/screenshots/, for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
