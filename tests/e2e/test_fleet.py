"""The fleet as `make run` starts it: scripts/devstack.py (migrate, collectstatic, then every Procfile.dev
role: web under gunicorn, worker, launcher, beat, flower), checked from outside like an operator would,
then stopped with Ctrl-C while a launch is in flight: the launch finishes, no traceback is printed, and no
process is left behind."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.request

import pytest
import redis

from executions import services
from executions.models import Execution, ExecutionStatus
from schedules import services as trigger_services
from tests.support.procs import BIN, Fleet, celery_cmd, free_port, marked_pids, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def http_get(url: str, timeout: float = 3) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_make_run_brings_up_the_whole_fleet_and_ctrl_c_stops_it(
    processes: Fleet, redis_client: redis.Redis, django_user_model, settings
) -> None:
    settings.SCHEDULER_TARGETS = {"demo": {"kind": "demo", "speed": 0.15}}  # "slow": 20 s -> 3 s
    web_port, flower_port = free_port(), free_port()
    base = f"http://127.0.0.1:{web_port}"
    devstack = processes.start(
        "devstack", [str(BIN / "python"), "scripts/devstack.py", "run"],
        PORT=str(web_port), FLOWER_PORT=str(flower_port), WORKER_CONCURRENCY="1", DEBUG="1",
        SCHEDULER_TARGETS=json.dumps(settings.SCHEDULER_TARGETS),
    )  # fmt: skip

    status, body = wait_for(
        lambda: (r := http_get(f"{base}/healthz"))[0] == 200 and r, timeout=90, what="/healthz 200"
    )
    checks = json.loads(body)["checks"]
    assert (checks["database"], checks["redis"]) == ("ok", "ok")
    assert (checks["beat"]["status"], checks["workers"]["status"]) == ("ok", "ok")

    # The admin is styled: its stylesheet is served by whitenoise from collectstatic's manifest.
    status, login = http_get(f"{base}/admin/login/")
    assert status == 200
    css = re.search(r'href="(/static/admin/css/base[^"]*\.css)"', login)
    assert css, "admin login page links its stylesheet"
    status, stylesheet = http_get(base + css.group(1))
    assert status == 200
    assert "body" in stylesheet

    def worker_pings() -> bool:
        result = subprocess.run(
            celery_cmd("inspect", "ping", "--timeout", "2"),
            env=processes.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return result.returncode == 0 and "worker@" in result.stdout and "launcher@" in result.stdout

    wait_for(worker_pings, timeout=60, interval=1, what="a worker answering celery inspect ping")
    wait_for(lambda: http_get(f"http://127.0.0.1:{flower_port}/")[0] == 200, timeout=60, what="Flower's page")
    lock_key = f"{settings.REDBEAT_KEY_PREFIX}::lock"
    token = wait_for(lambda: redis_client.get(lock_key), timeout=60, what="a beat holding the RedBeat lock")
    assert redis_client.pttl(lock_key) > 0, "the lock expires if its holder dies"
    assert token

    assert marked_pids(processes.marker), "the fleet's processes carry the marker"
    owner = django_user_model.objects.create_user(username="ctrl-c")
    slow = trigger_services.trigger_register(
        owner=owner, name="slow", workflow_id="slow", target="demo", cron_expression="0 0 1 1 *"
    )
    run = services.execution_run_now(trigger=slow)
    wait_for(
        lambda: Execution.objects.get(pk=run.pk).status == ExecutionStatus.RUNNING,
        timeout=30,
        what="the slow run to be in flight",
    )
    processes.send("devstack", signal.SIGINT)  # what Ctrl-C in the terminal sends
    devstack.wait(timeout=40)
    wait_for(lambda: not marked_pids(processes.marker), timeout=30, what="every fleet process to exit")
    output = processes.log("devstack")
    assert Execution.objects.get(pk=run.pk).status == ExecutionStatus.SUCCEEDED, (
        "the launch in flight finished during the warm shutdown"
    )
    assert "Traceback" not in output
    assert "WorkerLostError" not in output
    assert f"http://127.0.0.1:{web_port}/admin/" in output
    assert "Flower" in output
    login = re.search(r"login\s+admin / (\S+)", output)
    assert login, "dev mode prints the demo superuser's password"
    assert "seeded 5 demo triggers for admin" in output
    admin = django_user_model.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(login.group(1))
