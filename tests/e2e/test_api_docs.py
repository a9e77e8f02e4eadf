"""The API docs as an operator serves them: gunicorn, whitenoise serving collected static files, no internet.
Swagger UI's page, its JavaScript and CSS (drf-spectacular-sidecar, never a CDN) and the OpenAPI schema all
come from our own server; a token obtained over HTTP works as `Bearer`; and headless Chromium, which runs
the JavaScript, renders every operation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.procs import BIN, ROOT, Fleet, free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def http(
    url: str, *, data: dict | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """(status, content type, body) without raising on 4xx/5xx."""
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={**(headers or {})})
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (
                response.status,
                response.headers.get("Content-Type", ""),
                response.read().decode("utf-8", "replace"),
            )
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def static_settings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Static files collected once into a private STATIC_ROOT (the project's may be in use by a running
    devstack or another test), through a settings module that changes only that."""
    base = tmp_path_factory.mktemp("api-docs")
    # The settings file is run, not imported: importing it would import the `scheduler_project` package,
    # whose Celery app reads the settings being defined.
    (base / "api_docs_settings.py").write_text(
        "import runpy\n"
        f"_base = runpy.run_path({str(ROOT / 'scheduler_project' / 'settings.py')!r})\n"
        "globals().update({k: v for k, v in _base.items() if k.isupper()})\n"
        f"STATIC_ROOT = {str(base / 'static')!r}\n"
    )
    env = {"DJANGO_SETTINGS_MODULE": "api_docs_settings", "PYTHONPATH": f"{base}:{ROOT}"}
    subprocess.run(
        [str(BIN / "python"), "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT, env={**os.environ, **env}, check=True, timeout=120,
    )  # fmt: skip
    return env


@pytest.fixture
def web(processes: Fleet, static_settings: dict[str, str]) -> str:
    port = free_port()
    processes.start(
        "web",
        [str(BIN / "gunicorn"), "scheduler_project.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--access-logfile", "-"],
        **static_settings,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: http(f"{base}/readyz")[0] == 200, timeout=60, what="gunicorn answering /readyz")
    return base


def test_swagger_ui_its_assets_and_the_schema_are_served_by_gunicorn(web: str, django_user_model) -> None:
    status, content_type, page = http(f"{web}/api/docs/")
    assert status == 200
    assert content_type.startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', page)
    assert any("swagger-ui-bundle" in a for a in assets), assets
    assert any("swagger-ui-standalone-preset" in a for a in assets), assets
    assert any(a.endswith(".css") for a in assets), assets
    for asset in assets:
        assert not urlsplit(asset).netloc, f"{asset} would need the internet"
        status, content_type, body = http(web + asset)
        assert status == 200, asset
        if asset.endswith(".js"):
            assert "javascript" in content_type, (asset, content_type)
            assert len(body) > 10_000, f"{asset} is the real bundle, not a stub"
    assert "/api/schema/" in page, "the page points Swagger UI at our schema"

    status, content_type, schema_text = http(f"{web}/api/schema/")
    assert status == 200
    schema = yaml.safe_load(schema_text)
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/triggers/" in schema["paths"]
    assert "/api/scheduler/register/" in schema["paths"]

    django_user_model.objects.create_user(username="docs", password="pw-docs-123")
    status, _, body = http(f"{web}/api/v1/auth/token/", data={"username": "docs", "password": "pw-docs-123"})
    assert status == 200, body
    token = json.loads(body)["token"]
    status, _, body = http(f"{web}/api/v1/triggers", headers={"Authorization": f"Bearer {token}"})
    assert (status, json.loads(body)["count"]) == (200, 0)
    status, _, body = http(f"{web}/api/v1/triggers/")
    assert (status, json.loads(body)) == (401, {"detail": "Authentication credentials were not provided."})


def test_swagger_ui_renders_every_operation_in_headless_chromium(
    web: str, tmp_path: Path, chromium: Path
) -> None:
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path}",
         "--virtual-time-budget=15000", "--dump-dom", f"{web}/api/docs/"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    rendered = set(re.findall(r'data-path="([^"]+)"', dom))
    assert "/api/v1/triggers/" in rendered, dom[-3000:]
    assert "/api/v1/cron/preview/" in rendered
    assert "/api/scheduler/history/" in rendered
    assert len(rendered) >= 19, sorted(rendered)
