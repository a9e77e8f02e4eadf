"""Secrets never leave: with a real web process (gunicorn), beat and worker all logging at DEBUG in JSON (and
Django's DEBUG on, so every SQL statement is logged with its parameters), a scheduled fire and a manual run
launch through an HTTP target that fails and echoes the bearer secret back, API calls authenticate with a
token (and with a wrong one, and the cron secret), and then every log file, every broker message (bodies
decoded) and every task-result and execution row is searched for the internal secret, the cron secret, the
secret key and the API token."""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django_celery_results.models import TaskResult
from rest_framework.authtoken.models import Token

from executions.models import Attempt, Execution, ExecutionStatus
from scheduler_project.celery import app
from schedules import services
from tests.e2e import test_beat_fleet as beat_fleet
from tests.integration.test_launch_stub import SECRET, Reply, StubTarget
from tests.support.procs import BIN, Fleet, celery_cmd, free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
fresh_logs = beat_fleet.fresh_logs  # autouse: empty logs first, since waits and checks read them

WORKFLOW = "e2e-leaky"


def http(method: str, url: str, authorization: str | None = None) -> int:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    request.add_header("Content-Type", "application/json")
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def redis_texts(client: redis.Redis) -> Iterator[bytes]:
    """Every value in this Redis database, with the base64 bodies of kombu messages decoded."""
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            values = [client.get(key)]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"hash":
            values = [b"%s=%s" % item for item in client.hgetall(key).items()]
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = list(client.zrange(key, 0, -1))
        else:
            values = []
        for value in values:
            yield key + b" " + (value or b"")
            yield from _message_bodies(value or b"")


def _message_bodies(value: bytes) -> Iterator[bytes]:
    try:
        document: Any = json.loads(value)
    except ValueError:
        return
    if isinstance(document, list) and document and isinstance(document[0], dict):
        document = document[0]  # the unacked hash: [message, exchange, routing_key]
    if isinstance(document, dict) and isinstance(document.get("body"), str):
        try:
            yield base64.b64decode(document["body"])
        except ValueError:
            yield document["body"].encode()


def assert_clean(texts: list[str] | list[bytes], forbidden: dict[str, str], where: str) -> None:
    for name, secret in forbidden.items():
        needle: Any = secret.encode() if texts and isinstance(texts[0], bytes) else secret
        leaks = [text for text in texts if needle in text]
        assert not leaks, f"{name} found in {where}: {leaks[0][:300]!r}"


@pytest.fixture
def stub() -> Iterator[StubTarget]:
    with StubTarget(hold_limit=10) as target:
        # A target that rejects every call and echoes the credential it was sent, as some error pages do.
        echo = Reply(500, {"error": f"rejected Authorization: Bearer {SECRET}"})
        target.script(WORKFLOW, [echo] * 8)
        yield target


def test_no_secret_in_logs_messages_or_rows(processes: Fleet, redis_client, stub, user, settings) -> None:
    targets = {"leaky": stub.target("sync")}
    settings.SCHEDULER_TARGETS = targets
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    env = {
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "DEBUG": "1",
        "SCHEDULER_TARGETS": json.dumps(targets),
    }
    token = Token.objects.create(user=user).key
    trigger = services.trigger_register(
        owner=user,
        name="leaky",
        workflow_id=WORKFLOW,
        target="leaky",
        cron_expression="*/2 * * * * *",
        max_runs=1,
        max_attempts=2,
        backoff_seconds=1,
        timeout_seconds=5,
    )
    forbidden = {
        "INTERNAL_API_SECRET": settings.INTERNAL_API_SECRET,
        "CRON_SECRET": settings.CRON_SECRET,
        "SECRET_KEY": settings.SECRET_KEY,
        "the API token": token,
    }

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = [str(BIN / "gunicorn"), "scheduler_project.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    processes.start("web", [*web, "--workers", "1", "--access-logfile", "-", "--log-level", "debug"], **env)
    processes.start(
        "beat", celery_cmd("beat", "-S", "schedules.beat.scheduler:TriggerScheduler", "-l", "DEBUG"), **env
    )
    wait_for(lambda: http("GET", f"{base}/readyz") == 200, timeout=60, what="the web process")
    wait_for(lambda: redis_client.exists(app.conf.redbeat_lock_key), timeout=60, what="the beat to lead")

    assert http("GET", f"{base}/api/v1/triggers/", f"Bearer {token}") == 200
    assert http("POST", f"{base}/api/v1/triggers/{trigger.pk}/run/", f"Token {token}") == 201
    assert http("GET", f"{base}/api/v1/triggers/", f"Token {secrets.token_hex(20)}") == 401
    assert http("POST", f"{base}/api/v1/tick", f"Bearer {settings.CRON_SECRET}") in (
        200,
        404,
    )  # 404: not wired

    # Before any worker runs: the fire (from the beat) and the launch (from the API) wait in the broker.
    wait_for(
        lambda: (
            sum(
                redis_client.llen(k)
                for queue in ("fire", "launch")
                for k in redis_client.scan_iter(f"{queue}*")
                if redis_client.type(k) == b"list"
            )
            >= 2
        ),
        timeout=20,
        what="the fire and the launch messages in the broker",
    )
    assert_clean(list(redis_texts(redis_client)), forbidden, "the broker before delivery")

    worker = celery_cmd(
        "worker", "-l", "DEBUG", "--concurrency=1", "--without-gossip", "--without-mingle",
        "--without-heartbeat", "-n", f"leaky-{processes.marker[:8]}@%h",
    )  # fmt: skip
    processes.start("worker", worker, **env)
    # Slots fired after max_runs (before the completed trigger's entry is gone) are recorded skipped.
    runs = Execution.objects.filter(trigger=trigger).exclude(status=ExecutionStatus.SKIPPED)
    wait_for(
        lambda: runs.count() == 2 and not runs.exclude(status=ExecutionStatus.FAILED).exists(),
        timeout=60,
        what="the scheduled and the manual run to fail",
    )
    assert sorted(runs.values_list("origin", flat=True)) == ["manual", "schedule"]
    assert len(stub.seen(WORKFLOW)) == 4, "two attempts each, every one carrying the bearer secret"
    for name in ("worker", "beat", "web"):
        processes.stop(name)

    logs = {name: processes.log(name) for name in ("web", "beat", "worker")}
    for name, text in logs.items():
        assert_clean(text.splitlines(), forbidden, f"the {name} log")
    rows = [
        json.dumps([r.task_args, r.task_kwargs, r.result, r.traceback, r.meta, r.worker])
        for r in TaskResult.objects.all()
    ]
    rows += [f"{e.error} {json.dumps(e.result)} {e.run_id}" for e in runs]
    rows += [f"{a.error} {a.exception}" for a in Attempt.objects.filter(execution__in=runs)]
    assert_clean(rows, forbidden, "task results, executions and attempts")
    assert_clean(list(redis_texts(redis_client)), forbidden, "Redis after the runs")

    # The search was not vacuous: the secret-bearing answers were recorded (scrubbed), the processes logged
    # JSON lines about these very runs, and the redacting filter had something to do.
    assert all("Bearer ***" in a.error for a in Attempt.objects.filter(execution__in=runs))
    worker_lines = [json.loads(line) for line in logs["worker"].splitlines() if line.startswith("{")]
    assert {str(r.pk) for r in runs} <= {line.get("execution_id") for line in worker_lines}
    assert str(trigger.pk) in {line.get("trigger_id") for line in worker_lines}
    assert any(line["level"] == "DEBUG" for line in worker_lines)
    assert "***" in logs["web"], "the token lookup's SQL, logged at DEBUG, had its key redacted"
