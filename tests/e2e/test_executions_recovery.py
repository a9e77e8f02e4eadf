"""Real workers under stress: a worker killed with `kill -9` in the middle of a launch (the run completes
once, with one idempotency key, after the broker's visibility timeout hands the message to a new worker), and
broker priorities (an urgent launch overtakes a backlog of low ones on a single-slot worker)."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
import redis

from executions import services
from executions.models import Attempt, Execution, ExecutionStatus
from tests.e2e.test_executions_launch import assert_signed_with_one_key, new_trigger, start_worker, wait_end
from tests.integration.test_launch_stub import Reply, StubTarget
from tests.support.procs import Fleet, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stub(settings) -> StubTarget:
    with StubTarget(hold_limit=30) as target:
        settings.SCHEDULER_TARGETS = {"sync": target.target("sync")}
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
        yield target


def worker_env(stub: StubTarget) -> dict[str, str]:
    return {"SCHEDULER_TARGETS": json.dumps({"sync": stub.target("sync")})}


def broker_idle(client: redis.Redis) -> bool:
    """Nothing waiting in any priority list of the work queues and nothing reserved (unacked)."""
    lists = [key for q in ("fire", "launch", "celery") for key in client.scan_iter(f"{q}*")]
    queued = sum(client.llen(key) for key in lists if client.type(key) == b"list")
    return queued == 0 and client.zcard("unacked_index") == 0


def test_kill_9_mid_launch_completes_exactly_once(
    redis_client: redis.Redis, processes: Fleet, stub, user, settings
):
    held = threading.Event()
    stub.script("e2e-kill", [Reply(hold=held), Reply(200, {"runId": "run-after-kill"})])
    start_worker(processes, "doomed", **worker_env(stub))
    trigger = new_trigger(user, "e2e-kill", timeout_seconds=3)
    execution = services.execution_run_now(trigger=trigger)
    wait_for(lambda: stub.seen("e2e-kill"), timeout=30, what="the launch to reach the target")

    processes.send("doomed", signal.SIGKILL)  # the whole process group: main process and pool child
    processes.procs["doomed"].wait(timeout=10)
    held.set()
    running = Execution.objects.get(pk=execution.pk)
    assert running.status == ExecutionStatus.RUNNING, "the attempt was in flight when the worker died"

    # The message is unacked in Redis; kombu hands it out again once it is older than the visibility
    # timeout (10 s in tests), when a worker scans for it: at start-up, so start the new worker then.
    visibility = settings.BROKER_VISIBILITY_TIMEOUT
    wait_for(
        lambda: (
            (entries := redis_client.zrange("unacked_index", 0, 0, withscores=True))
            and entries[0][1] + visibility < time.time()
        ),
        timeout=visibility + 10,
        what="the dead worker's message to pass the visibility timeout",
    )
    start_worker(processes, "rescuer", **worker_env(stub))
    execution = wait_end(execution, timeout=60)
    wait_for(lambda: broker_idle(redis_client), timeout=30, what="the broker to be idle")

    assert (execution.status, execution.run_id) == (ExecutionStatus.SUCCEEDED, "run-after-kill")
    lost, retried = Attempt.objects.filter(execution=execution).order_by("number")
    assert (lost.outcome, lost.exception) == ("retryable", "WorkerLost")
    assert retried.outcome == "succeeded"
    requests = stub.seen("e2e-kill")
    assert len(requests) == 2, "the lost call and its one replacement"
    assert_signed_with_one_key(requests, execution)
    assert Execution.objects.filter(trigger=trigger).count() == 1


def test_an_urgent_launch_overtakes_a_backlog(redis_client: redis.Redis, processes: Fleet, stub, user):
    stub.script("e2e-low", [Reply(delay=0.4) for _ in range(6)])
    start_worker(processes, "single", **worker_env(stub))
    low = new_trigger(user, "e2e-low", priority="low")
    urgent = new_trigger(user, "e2e-urgent", priority="urgent")
    backlog = [services.execution_run_now(trigger=low) for _ in range(6)]
    wait_for(lambda: stub.seen("e2e-low"), timeout=30, what="the first low launch to start")
    services.execution_run_now(trigger=urgent)
    for execution in backlog:
        wait_end(execution)
    order = [r.workflow_id for r in stub.seen()]
    assert len(order) == 7
    assert order.index("e2e-urgent") <= 2, f"urgent ran before the backlog drained: {order}"
    assert order[-1] == "e2e-low"
