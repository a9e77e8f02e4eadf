"""Flower, linked from the dashboard, is behind basic auth outside dev: the production Procfile's own flower
command, given `FLOWER_BASIC_AUTH`, turns away a request without those credentials (Flower reads the variable
itself: every `FLOWER_<OPTION>` in its environment sets that option)."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

import pytest

from tests.support.procs import ROOT, Fleet, free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def procfile_command(role: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == role:
            return command.strip()
    raise AssertionError(f"no {role!r} role in the Procfile")


def status_of(url: str, credentials: str | None = None) -> int:
    request = urllib.request.Request(url)
    if credentials is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_flower_demands_the_basic_auth_credentials_from_the_environment(
    processes: Fleet, redis_client
) -> None:
    port = free_port()
    processes.start(
        "flower",
        ["sh", "-c", procfile_command("flower")],
        FLOWER_ADDRESS="127.0.0.1",
        FLOWER_PORT=str(port),
        FLOWER_BASIC_AUTH="ops:correct-horse,auditor:battery-staple",
    )
    url = f"http://127.0.0.1:{port}/"
    wait_for(lambda: status_of(url) in (200, 401), timeout=60, what="Flower answering")
    assert status_of(url) == 401
    assert status_of(url, "ops:wrong") == 401
    assert status_of(url, "ops:correct-horse") == 200
    assert status_of(url, "auditor:battery-staple") == 200, "several user:password pairs, comma-separated"
