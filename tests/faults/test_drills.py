"""Fault drills: the fleet as Procfile.dev starts it (gunicorn, worker, launcher, beat) on a private Redis and
a gated PostgreSQL, with parts taken away for real while triggers fire every two seconds. Each drill asserts
what the scheduler promises — every due slot recorded once (none lost, none doubled), every run launched at
the target under one idempotency key, only 2xx/4xx/503 answers — and prints its figures (`make drill`)."""

from __future__ import annotations

import random
import signal
import string
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from executions.models import ACTIVE_STATUSES, Execution, ExecutionStatus
from tests.faults.drills import DrillFleet, drill_fleet, kill_group, procfile_dev, report, seconds_since
from tests.integration.test_launch_stub import Reply, StubTarget
from tests.support.procs import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

EVERY = 2  # seconds between the slots of each drill trigger


@pytest.fixture
def stub() -> Any:
    with StubTarget(hold_limit=60) as target:
        yield target


@pytest.fixture
def fleet(processes, stub, tmp_path) -> Any:
    with drill_fleet(processes, tmp_path, {"sync": stub.target("sync")}) as running:
        yield running


@pytest.fixture
def token(django_user_model) -> str:
    user = django_user_model.objects.create_user(username=f"drill-{random.randrange(10**9)}")
    return Token.objects.create(user=user).key


def create_triggers(fleet: DrillFleet, token: str, count: int, **fields: Any) -> list[str]:
    ids = []
    for n in range(count):
        status, _, body = fleet.http(
            "POST",
            "/api/v1/triggers/",
            {
                "name": f"drill-{n}", "workflow_id": f"wf-{n}", "target": "sync",
                "cron_expression": f"*/{EVERY} * * * * *", "catchup_policy": "fire_immediately", **fields,
            },
            token=token,
        )  # fmt: skip
        assert status == 201, body
        ids.append(body["id"])
    return ids


def firing(fleet: DrillFleet, token: str, count: int, **fields: Any) -> list[str]:
    """`count` triggers firing every EVERY seconds, each with two runs recorded already."""
    triggers = create_triggers(fleet, token, count, **fields)
    wait_for(
        lambda: Execution.objects.filter(trigger_id__in=triggers).count() >= 2 * count,
        timeout=30,
        what="runs",
    )
    return triggers


def stop_firing(fleet: DrillFleet, trigger_ids: list[str], token: str) -> None:
    for pk in trigger_ids:
        status, _, body = fleet.http("POST", f"/api/v1/triggers/{pk}/pause/", {}, token=token)
        assert status == 200, body


def all_ended(trigger_ids: list[str]) -> bool:
    rows = Execution.objects.filter(trigger_id__in=trigger_ids)
    return rows.exists() and not rows.filter(status__in=[*ACTIVE_STATUSES, ExecutionStatus.WAITING]).exists()


def assert_exactly_once(trigger_ids: list[str], stub: StubTarget) -> dict[str, Any]:
    """Every slot of every trigger from its first to its last recorded one is there once, and each run that
    ran reached the target under its own single key; returns the figures."""
    slots = 0
    for pk in trigger_ids:
        recorded = sorted(
            Execution.objects.filter(trigger_id=pk, slot__isnull=False).values_list("slot", flat=True)
        )
        assert recorded, f"trigger {pk} recorded nothing"
        first, last = recorded[0], recorded[-1]
        expected = [
            first + timedelta(seconds=EVERY * i)
            for i in range(int((last - first).total_seconds()) // EVERY + 1)
        ]
        assert recorded == expected, f"trigger {pk}: lost or doubled slots between {first} and {last}"
        slots += len(recorded)
    ran = set(
        str(pk)
        for pk in Execution.objects.filter(
            trigger_id__in=trigger_ids, status=ExecutionStatus.SUCCEEDED
        ).values_list("pk", flat=True)
    )
    keys = Counter(r.idempotency_key for r in stub.seen() if r.workflow_id.startswith("wf-"))
    assert ran <= set(keys), "every succeeded run reached the target"
    assert set(keys) <= {
        str(pk) for pk in Execution.objects.filter(trigger_id__in=trigger_ids).values_list("pk", flat=True)
    }, "the target saw no key that is not a run"
    statuses = Counter(
        f"{status}:{reason}" if reason else status
        for status, reason in Execution.objects.filter(trigger_id__in=trigger_ids).values_list(
            "status", "skip_reason"
        )
    )
    return {
        "slots": slots,
        "runs_at_target": len(keys),
        "repeat_deliveries": sum(keys.values()) - len(keys),
        "statuses": dict(statuses),
    }


def caught_up(trigger_ids: list[str], lag: float = 4.0) -> bool:
    """Every slot of every trigger from its first one until `lag` seconds ago is recorded: what the fleet
    could not record during an outage has been recorded since (nothing lost)."""
    until = datetime.now(UTC) - timedelta(seconds=lag)
    for pk in trigger_ids:
        recorded = set(
            Execution.objects.filter(trigger_id=pk, slot__isnull=False).values_list("slot", flat=True)
        )
        if not recorded:
            return False
        slot = min(recorded)
        while slot <= until:
            if slot not in recorded:
                return False
            slot += timedelta(seconds=EVERY)
    return True


def finish(fleet: DrillFleet, trigger_ids: list[str], token: str, *, timeout: float = 90) -> float:
    """Wait until every slot due so far is recorded (returns how long that took), then stop the triggers
    and wait for every run to end."""
    started = time.monotonic()
    wait_for(lambda: caught_up(trigger_ids), timeout=timeout, interval=0.5, what="every due slot recorded")
    catch_up = seconds_since(started)
    stop_firing(fleet, trigger_ids, token)
    wait_for(lambda: all_ended(trigger_ids), timeout=timeout, interval=0.5, what="every run to end")
    return catch_up


def test_redis_down_then_back_then_restarted_empty(fleet: DrillFleet, stub: StubTarget, token: str) -> None:
    fleet.start()
    triggers = firing(fleet, token, 4)

    # Redis down 10 s, then back with its data.
    fleet.redis.kill()
    down = time.monotonic()
    answers = Counter()
    status, _, body = fleet.http("GET", "/api/v1/triggers/", token=token)
    answers[status] += 1
    assert status == 200, "the API reads the database while Redis is down"
    status, _, body = fleet.http("POST", f"/api/v1/triggers/{triggers[0]}/run/", {}, token=token)
    answers[status] += 1
    assert status in (201, 202, 503), body
    manual = body.get("id") if isinstance(body, dict) and status in (201, 202) else None
    status, _, ready = fleet.http("GET", "/readyz")
    assert status == 200
    assert ready["status"] == "degraded"
    status, headers, body = fleet.http("GET", "/healthz")
    assert status == 503
    assert headers.get("Content-Type", "").startswith("application/json")
    while time.monotonic() - down < 10:
        status, _, _ = fleet.http("GET", f"/api/v1/triggers/{triggers[1]}/", token=token)
        answers[status] += 1
        time.sleep(0.5)
    fleet.redis.start()
    back = time.monotonic()
    before = Execution.objects.filter(trigger_id__in=triggers).count()
    wait_for(
        lambda: Execution.objects.filter(trigger_id__in=triggers).count() >= before + 4,
        timeout=30, what="firing again after Redis came back",
    )  # fmt: skip
    firing_again = seconds_since(back)
    assert fleet.processes.procs["beat"].poll() is None
    assert "beat exited" not in fleet.processes.log("beat"), "the beat rode out the outage, no restart"

    # Redis killed and restarted empty, with runs waiting in the broker.
    held = threading.Event()
    stub.script("wf-3", [Reply(hold=held)])  # one launch in flight holds a launcher thread
    wait_for(lambda: stub.seen("wf-3"), timeout=20, what="a launch in flight")
    fleet.redis.kill()
    fleet.redis.wipe()
    fleet.redis.start()
    emptied = time.monotonic()
    held.set()
    if manual:
        wait_for(
            lambda: Execution.objects.get(pk=manual).status == ExecutionStatus.SUCCEEDED,
            timeout=60, what="the run-now made during the outage",
        )  # fmt: skip
    wait_for(
        lambda: not Execution.objects.filter(
            trigger_id__in=triggers, status__in=[ExecutionStatus.QUEUED, ExecutionStatus.PENDING],
            created_at__lt=datetime.now(UTC) - timedelta(seconds=5),
        ).exists(),
        timeout=60, what="nothing older than 5 s left queued after the empty restart",
    )  # fmt: skip
    resent_within = seconds_since(emptied)
    finish(fleet, triggers, token)
    figures = assert_exactly_once(triggers, stub)
    assert set(answers) <= {200, 201, 202, 503}, answers
    report(
        "redis", firing_again_s=firing_again, queued_resent_within_s=resent_within, answers=dict(answers),
        **figures,
    )  # fmt: skip
    assert resent_within <= 60


def test_database_refusing_connections(fleet: DrillFleet, stub: StubTarget, token: str) -> None:
    fleet.start()
    triggers = firing(fleet, token, 3)

    fleet.gate.close()
    cut = time.monotonic()
    answers = Counter()
    while time.monotonic() - cut < 10:
        one = f"/api/v1/triggers/{triggers[0]}/"
        for method, path in (
            ("GET", "/api/v1/triggers/"),
            ("GET", one),
            ("POST", f"{one}run/"),
        ):
            status, headers, body = fleet.http(method, path, {} if method == "POST" else None, token=token)
            answers[status] += 1
            assert status == 503, (method, path, status, body)
            assert int(headers["Retry-After"]) > 0
            assert body["unavailable"] == "database"
        status, _, _ = fleet.http("GET", "/admin/")  # the login page needs no database; the rest 503s
        answers[status] += 1
        assert status in (200, 302, 503)
        time.sleep(0.5)
    fleet.gate.open()
    reopened = time.monotonic()
    wait_for(
        lambda: fleet.http("GET", "/api/v1/triggers/", token=token)[0] == 200, timeout=20, what="API back"
    )
    api_back = seconds_since(reopened)
    caught = finish(fleet, triggers, token)
    figures = assert_exactly_once(triggers, stub)
    report("database", api_back_s=api_back, slots_caught_up_s=caught, answers=dict(answers), **figures)


def test_kill_9_of_the_launcher_and_the_worker_mid_launch(
    fleet: DrillFleet, stub: StubTarget, token: str
) -> None:
    fleet.start()
    triggers = create_triggers(fleet, token, 3, timeout_seconds=5)
    held = threading.Event()
    for n in range(3):
        stub.script(f"wf-{n}", [Reply(hold=held)])
    wait_for(lambda: len({r.workflow_id for r in stub.seen()}) >= 3, timeout=30, what="launches in flight")
    kill_group(fleet.processes, "launcher")
    kill_group(fleet.processes, "worker")
    killed = time.monotonic()
    held.set()
    in_flight = list(
        Execution.objects.filter(trigger_id__in=triggers, status=ExecutionStatus.RUNNING).values_list(
            "pk", flat=True
        )
    )
    fleet.start("worker", "launcher")
    wait_for(
        lambda: not Execution.objects.filter(pk__in=in_flight, status=ExecutionStatus.RUNNING).exists(),
        timeout=60, what="the killed attempts to be retried and end",
    )  # fmt: skip
    recovered = seconds_since(killed)
    finish(fleet, triggers, token)
    figures = assert_exactly_once(triggers, stub)
    report("kill -9", killed_in_flight=len(in_flight), recovered_s=recovered, **figures)
    # The attempt deadline is the call timeout (5 s) plus the grace (5 s): retried within it + 15 s.
    assert recovered <= 5 + 5 + 15 + 10, "10 s of it is the worker starting"


def test_a_beat_frozen_past_its_lock(fleet: DrillFleet, stub: StubTarget, token: str) -> None:
    fleet.start()
    fleet.processes.start("beat-2", ["bash", "-c", procfile_dev()["beat"]], **fleet.env)
    triggers = firing(fleet, token, 3)
    fleet.processes.send("beat", signal.SIGSTOP)
    time.sleep(6 + 4)  # past the lock timeout (6 s in tests): the standby takes over
    fleet.processes.send("beat", signal.SIGCONT)
    time.sleep(6)
    assert fleet.processes.procs["beat"].poll() is None, "the old leader stands by"
    finish(fleet, triggers, token)
    figures = assert_exactly_once(triggers, stub)
    report("beat frozen", **figures)


def hostile_bodies(rng: random.Random) -> Any:
    def text(n: int) -> str:
        return "".join(rng.choice(string.printable + "\x00\u202e\ud7ff€😀") for _ in range(n))

    nested: Any = {}
    for _ in range(rng.randrange(0, 80)):
        nested = {"a": nested} if rng.random() < 0.5 else [nested]
    choices = [
        {"name": text(rng.randrange(0, 300)), "workflow_id": text(8), "cron_expression": text(12)},
        {"name": "n", "workflow_id": "w", "cron_expression": "* * * * *", "input": nested},
        {
            "name": "n",
            "workflow_id": "w",
            "kind": "once",
            "run_at": rng.choice(["9999-12-31T23:59:59Z", "0000-01-01", "NaN", 1e308]),
        },
        {"name": "n", "workflow_id": "w", "cron_expression": "0 0 31 2 *", "timezone": text(20)},
        {"name": "n", "workflow_id": "w", "interval_seconds": rng.choice([-1, 0, 2**70, "1e9", None, []])},
        [1, 2, 3],
        text(rng.randrange(0, 2000)).encode("utf-8", "surrogatepass"),
        b"\xff\xfe" + bytes(rng.randrange(256) for _ in range(200)),
        {"name": "n", "metadata": {"k" * 300: "v" * 100_000}},
        {"max_runs": "many", "jitter_seconds": -5, "priority": {"x": 1}, "overlap_policy": 7},
    ]
    return rng.choice(choices)


def test_hostile_input_gets_only_4xx(fleet: DrillFleet, token: str) -> None:
    fleet.start("web")
    rng = random.Random(20261203)
    answers = Counter()
    paths = ["/api/v1/triggers/", "/api/v1/cron/preview/", "/api/scheduler/register", "/api/v1/auth/token/"]
    detail = create_triggers(fleet, token, 1)[0]
    for n in range(1200):
        path = rng.choice([*paths, f"/api/v1/triggers/{detail}/", f"/api/v1/triggers/{detail}/run/"])
        method = "PATCH" if path.endswith(f"{detail}/") else "POST"
        status, _, body = fleet.http(method, path, hostile_bodies(rng), token=token if n % 7 else "")
        answers[status] += 1
        assert status < 500, (path, status, body)
    report("hostile input", requests=sum(answers.values()), answers=dict(sorted(answers.items())))
    assert sum(answers.values()) >= 1000
