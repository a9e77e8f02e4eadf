"""Graceful shutdown with real processes. SIGTERM goes to the main process only, as `docker stop` and
Kubernetes send it (see operations/shutdown.py for why not to the whole group).

* a worker SIGTERMed mid-launch finishes the launch within its grace and exits, nothing requeued;
* a launch that outlives the grace is cancelled, its message goes back to the queue at once, and another
  worker completes the run — same execution, same idempotency key;
* a leader beat SIGTERMed releases the lock, so the standby holds it within about one loop interval
  instead of after the lock timeout."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis
from django.conf import settings

from executions import services
from executions.models import Attempt, Execution, ExecutionStatus
from scheduler_project.celery import app
from tests.e2e import test_beat_fleet as beat_fleet
from tests.e2e import test_executions_recovery as recovery
from tests.e2e.test_beat_fleet import start_beat
from tests.e2e.test_executions_launch import assert_signed_with_one_key, new_trigger, start_worker, wait_end
from tests.integration.test_launch_stub import Reply
from tests.support.procs import Fleet, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

stub = recovery.stub  # the fixture: an HTTP target on 127.0.0.1, the only target of the workers
broker_idle, worker_env = recovery.broker_idle, recovery.worker_env
fresh_logs = beat_fleet.fresh_logs  # autouse: empty logs first, since waits and checks read them


def terminate(processes: Fleet, name: str) -> float:
    """SIGTERM the main process; return the monotonic time it was sent."""
    os.kill(processes.procs[name].pid, signal.SIGTERM)
    return time.monotonic()


def exit_after(processes: Fleet, name: str, sent: float, *, timeout: float) -> tuple[int, float]:
    returncode = processes.procs[name].wait(timeout=timeout)
    return returncode, time.monotonic() - sent


def test_sigterm_lets_a_running_launch_finish_within_the_grace(processes, redis_client, stub, user):
    grace = 10.0
    stub.script("e2e-slow-ok", [Reply(200, {"runId": "run-slow"}, delay=2)])
    start_worker(processes, "worker", WORKER_SHUTDOWN_GRACE_SECONDS=str(grace), **worker_env(stub))
    execution = services.execution_run_now(trigger=new_trigger(user, "e2e-slow-ok", timeout_seconds=10))
    wait_for(lambda: stub.seen("e2e-slow-ok"), timeout=30, what="the launch to reach the target")

    sent = terminate(processes, "worker")
    returncode, took = exit_after(processes, "worker", sent, timeout=grace + 10)
    print(f"\nworker exited {took:.2f}s after SIGTERM (launch took 2 s, grace {grace:g} s)")

    assert returncode == 0, processes.log("worker")
    assert took < grace, "it exits once its launch is done, not at the end of the grace"
    execution = Execution.objects.get(pk=execution.pk)
    assert (execution.status, execution.run_id) == (ExecutionStatus.SUCCEEDED, "run-slow")
    assert [a.outcome for a in Attempt.objects.filter(execution=execution)] == ["succeeded"]
    assert len(stub.seen("e2e-slow-ok")) == 1
    assert broker_idle(redis_client), "nothing requeued"


def test_a_launch_past_the_grace_is_requeued_and_completed_by_another_worker(
    processes, redis_client, stub, user
):
    grace, call_timeout = 1.5, 5
    held = threading.Event()
    stub.script("e2e-overrun", [Reply(hold=held), Reply(200, {"runId": "run-rescued"})])
    start_worker(processes, "doomed", WORKER_SHUTDOWN_GRACE_SECONDS=str(grace), **worker_env(stub))
    trigger = new_trigger(user, "e2e-overrun", timeout_seconds=call_timeout)
    execution = services.execution_run_now(trigger=trigger)
    wait_for(lambda: stub.seen("e2e-overrun"), timeout=30, what="the launch to reach the target")

    sent = terminate(processes, "doomed")
    _, took = exit_after(processes, "doomed", sent, timeout=30)
    held.set()
    print(f"\nworker exited {took:.2f}s after SIGTERM (grace {grace:g} s, call timeout {call_timeout} s)")
    assert grace <= took < call_timeout, "the grace ended the launch, not the call's own timeout"
    assert "shutdown grace of 1.5s is over" in processes.log("doomed")
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.RUNNING, "cut off mid-call"
    assert not broker_idle(redis_client), "its message is back in the queue at once"

    start_worker(processes, "rescuer", **worker_env(stub))
    # The rescuer finds the attempt in flight and waits for its deadline (call timeout + grace) before
    # retiring it as lost: the cut-off call may still have reached the target.
    execution = wait_end(execution, timeout=40)
    wait_for(lambda: broker_idle(redis_client), timeout=30, what="the broker to be idle")

    assert (execution.status, execution.run_id) == (ExecutionStatus.SUCCEEDED, "run-rescued")
    lost, retried = Attempt.objects.filter(execution=execution).order_by("number")
    assert (lost.outcome, lost.exception) == ("retryable", "WorkerLost")
    assert retried.outcome == "succeeded"
    assert retried.worker != lost.worker
    assert_signed_with_one_key(stub.seen("e2e-overrun"), execution)
    assert len(stub.seen("e2e-overrun")) == 2


def test_sigterm_on_the_leader_hands_the_lock_to_the_standby_at_once(processes, redis_client: redis.Redis):
    lock = app.conf.redbeat_lock_key
    start_beat(processes, "beat-a")
    start_beat(processes, "beat-b", leader=False)
    token = redis_client.get(lock)
    assert token

    sent = terminate(processes, "beat-a")
    wait_for(
        lambda: redis_client.get(lock) not in (None, token),
        timeout=settings.REDBEAT_LOCK_TIMEOUT + 5,
        interval=0.05,
        what="the standby to take the lock",
    )
    handover = time.monotonic() - sent
    loop = settings.BEAT_MAX_LOOP_INTERVAL
    print(f"\nstandby holds the lock {handover:.2f}s after SIGTERM (loop {loop:g} s, lock timeout 6 s)")
    assert handover < 2 * loop + 0.5, "the released lock is taken at the standby's next try"
    assert processes.procs["beat-a"].wait(timeout=10) == 0
    assert "beat: Releasing lock" in processes.log("beat-a")
