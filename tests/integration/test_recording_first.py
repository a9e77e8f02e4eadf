"""Recording first: a fresh launch batch waits while the fire queue (on the real Redis broker) is being
drained, and not at all once it is empty, stalled, or the wait is switched off; the wait's rule itself is
checked on a scripted clock."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from celery.worker import state as worker_state
from django.conf import settings

from executions import policies, services
from executions.services import dispatch, launch
from toolkit import broker

pytestmark = [pytest.mark.integration]


@pytest.fixture(autouse=True)
def _fresh_reading():
    """Parked threads share one broker reading for 50 ms (launch._SharedReading); each test's queues are
    its own, so none may see the reading an earlier test left."""
    launch._QUEUE_READING.forget()
    yield
    launch._QUEUE_READING.forget()


class Script:
    """A clock and a queue depth that move only when the waiter sleeps."""

    def __init__(self, depths: list[int]) -> None:
        self.depths, self.now, self.slept = list(depths), 0.0, 0

    def depth(self) -> int:
        return self.depths[0] if len(self.depths) == 1 else self.depths.pop(0)

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += 1


def wait(script: Script, *, limit: float = 5.0, stall: float = 1.0) -> str:
    return broker.wait_while_draining(
        script.depth, limit=limit, stall=stall, poll=0.25, sleep=script.sleep, monotonic=lambda: script.now
    )


#: A herd still being published: up by a publish, down by a consumed message, again and again.
FILLING_WHILE_CONSUMED = [10 + 10 * (k // 2) + (k % 2) * 11 for k in range(60)]


@pytest.mark.parametrize(
    ("depths", "limit", "expected", "sleeps"),
    [
        pytest.param([0], 5.0, "clear", 0, id="empty-at-once"),
        pytest.param([30, 20, 10, 0], 5.0, "clear", 3, id="draining-then-clear"),
        pytest.param([30], 5.0, "stalled", 4, id="never-drains"),
        pytest.param([30, 30, 30, 29, 29], 5.0, "stalled", 7, id="drains-once-then-stalls"),
        pytest.param(list(range(1000, 0, -1)), 2.0, "limit", 8, id="long-herd-hits-limit"),
        pytest.param(FILLING_WHILE_CONSUMED, 2.0, "limit", 8, id="still-filling-but-consumed"),
        pytest.param([10, 20, 30, 40, 50, 60, 70], 5.0, "stalled", 4, id="filling-never-consumed"),
    ],
)
def test_the_wait_follows_the_queue(depths, limit, expected, sleeps):
    script = Script(depths)
    assert wait(script, limit=limit) == expected
    assert script.slept == sleeps


def test_an_unreadable_queue_does_not_hold_the_launch():
    def broken() -> int:
        raise broker.redis.ConnectionError("down")

    assert broker.wait_while_draining(broken, limit=5, stall=1, sleep=lambda s: None) == "unknown"


def _fire_lists(redis_client) -> list[str]:
    layout = broker.BrokerLayout.of_app()
    return [layout.list_key(settings.SCHEDULER_FIRE_QUEUE, p) for p in layout.priority_steps]


def test_a_launch_batch_waits_for_queued_fires_on_the_real_broker(redis_client, settings):
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.SCHEDULER_LAUNCH_YIELD_SECONDS = 30
    keys = _fire_lists(redis_client)
    redis_client.rpush(keys[0], *[f"fire-{n}" for n in range(20)])
    redis_client.rpush(keys[6], *[f"fire-urgent-{n}" for n in range(5)])
    drained = threading.Event()

    def consume() -> None:  # a fire worker taking one message every 20 ms
        while any(redis_client.llen(key) for key in keys):
            for key in keys:
                if redis_client.lpop(key):
                    break
            threading.Event().wait(0.02)
        drained.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    try:
        assert services.yield_to_recording() == "clear"
        assert drained.is_set() or not any(redis_client.llen(key) for key in keys)
    finally:
        consumer.join(timeout=10)


def test_a_stuck_fire_queue_holds_launches_only_briefly(redis_client, settings):
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.SCHEDULER_LAUNCH_YIELD_SECONDS = 30
    redis_client.rpush(_fire_lists(redis_client)[0], "nobody-consumes-this")
    assert services.yield_to_recording() == "stalled"


def test_the_wait_can_be_switched_off(redis_client, settings):
    settings.SCHEDULER_LAUNCH_YIELD_SECONDS = 0
    redis_client.rpush(_fire_lists(redis_client)[0], "queued")
    assert services.yield_to_recording() == "off"


def test_a_queued_retry_ends_the_wait_at_once(redis_client, settings):
    """A retry or resend (`urgent`) waiting in the launch queue must not sit behind launcher threads parked
    for a herd's recording: the batch goes now, so a thread frees for it."""
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.SCHEDULER_LAUNCH_YIELD_SECONDS = 30
    redis_client.rpush(_fire_lists(redis_client)[0], "nobody-consumes-this")
    layout = broker.BrokerLayout.of_app()
    urgent = policies.priority_value(dispatch.FOLLOW_UP_PRIORITY)
    redis_client.rpush(layout.list_key("launch", layout.priority_steps[-1]), "a-fresh-launch")
    assert services.yield_to_recording() == "stalled"  # fresh launches queued do not end the wait
    redis_client.rpush(layout.list_key("launch", urgent), "a-retry")
    assert services.yield_to_recording() == "clear"


class _Request:
    """What Celery's worker keeps of a message it holds: a name and, for a countdown, an ETA."""

    def __init__(self, name: str, eta: datetime | None = None) -> None:
        self.name, self.eta, self.id = name, eta, str(uuid.uuid4())


@pytest.mark.parametrize(
    ("where", "eta_in", "expected"),
    [
        pytest.param("reserved", None, "clear", id="retry-waiting-for-a-thread"),
        pytest.param("scheduled", 1.0, "clear", id="retry-due-within-the-horizon"),
        pytest.param("scheduled", 60.0, "stalled", id="retry-due-much-later"),
    ],
)
def test_a_retry_this_worker_holds_ends_the_wait(redis_client, settings, where, eta_in, expected):
    """A retry's message has an ETA: the worker takes it off the broker at once and holds it, so only the
    worker's own bookkeeping shows that a thread must free for it."""
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.SCHEDULER_LAUNCH_YIELD_SECONDS = 30
    redis_client.rpush(_fire_lists(redis_client)[0], "nobody-consumes-this")
    eta = None if eta_in is None else datetime.now(UTC) + timedelta(seconds=eta_in)
    held = _Request(dispatch.LAUNCH_TASK, eta)
    other = _Request("executions.launch_batch")
    bookkeeping = getattr(worker_state, f"{where}_requests")
    bookkeeping.add(held)
    bookkeeping.add(other)
    try:
        assert services.yield_to_recording() == expected
    finally:
        bookkeeping.discard(held)
        bookkeeping.discard(other)


def test_one_parked_batch_goes_per_waiting_retry(redis_client, settings):
    """The other parked batches keep yielding to the herd: one thread is enough for one retry."""
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.SCHEDULER_LAUNCH_YIELD_SECONDS = 30
    redis_client.rpush(_fire_lists(redis_client)[0], "nobody-consumes-this")
    held = [_Request(dispatch.LAUNCH_TASK), _Request(dispatch.LAUNCH_TASK)]
    for request in held:
        worker_state.reserved_requests.add(request)
    try:
        assert [services.yield_to_recording() for _ in range(3)] == ["clear", "clear", "stalled"]
    finally:
        for request in held:
            worker_state.reserved_requests.discard(request)
