"""Publishing many task messages at broker speed.

Why not `app.send_task` in a loop: it costs ~0.4-0.9 ms a message here (config lookups through Django
settings, reprs, routing, a second publish for the `task-sent` event), so a herd of 10,000 fires or launches
spends seconds just sending. Here Celery builds one message (`create_task_message`) and routes it once per
call; each message is that template with its own id, arguments, reprs and ETA, sent by Celery's own
`send_task_message` inside one kombu publish batch (one Redis pipeline per `batch_size` messages). Workers
receive exactly what `send_task` would have sent; what is left out is the `task-sent` event, which would
double the cost of every message (Flower still sees each task through the worker's `task-received`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis
from celery import Celery
from celery.utils.saferepr import saferepr

#: Messages per kombu publish batch (one Redis pipeline each).
BATCH_SIZE = 500


@dataclass(frozen=True)
class TaskMessage:
    """One task call: positional and keyword arguments are ids and ISO instants, never objects or secrets."""

    args: tuple[Any, ...] | list[Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    task_id: str = ""
    priority: int | None = None
    countdown: float = 0.0
    #: What monitoring (Flower, the worker's log) shows in place of the keyword arguments: a label that names
    #: the run in words (trigger, workflow, slot) where the arguments are only ids. Display only; never sent
    #: to the task. Empty: the repr of the real keyword arguments.
    kwargsrepr: str = ""


def publish_batch(
    app: Celery,
    task_name: str,
    messages: Sequence[TaskMessage],
    *,
    producer: Any = None,
    batch_size: int = BATCH_SIZE,
    retry: bool = False,
) -> list[str]:
    """Send `messages` as calls of `task_name`, in order, and return their task ids. With `retry=False`
    (inside a batch a publish only buffers) a failed flush raises; the caller decides what is lost (the
    beat's reconcile, the sweeper's resend)."""
    if not messages:
        return []
    amqp = app.amqp
    # args=None as Celery's own send_task passes it (routers see None); celery-types wants a tuple.
    route = amqp.router.route({}, task_name, None, None)  # type: ignore[arg-type]
    # As send_task builds it: replies to this thread's oid, ignore_result left to the task's own setting.
    template = amqp.create_task_message(
        "", task_name, [], {}, reply_to=app.thread_oid, create_sent_event=False, ignore_result=None
    )
    reprs = _Reprs(amqp.argsrepr_maxsize, amqp.kwargsrepr_maxsize, app.conf.task_repr_maxlevels)
    ids: list[str] = []
    with app.producer_or_acquire(producer) as active:
        if route.get("queue") is not None:
            active.maybe_declare(route["queue"])  # once per call, not once per message
        with active.batch(max_size=batch_size):
            for message in messages:
                task_id = message.task_id or str(uuid.uuid4())
                amqp.send_task_message(
                    active,
                    task_name,
                    _cut(template, message, task_id, reprs),
                    priority=message.priority,
                    declare=[],
                    retry=retry,
                    **route,
                )
                ids.append(task_id)
    return ids


@dataclass(frozen=True)
class _Reprs:
    """Celery's bounds on the argument reprs in a message's headers (what monitoring shows)."""

    args_size: int
    kwargs_size: int
    levels: int

    def of(self, value: Any, size: int) -> str:
        return saferepr(value, size, maxlevels=self.levels)


def _cut(template: Any, message: TaskMessage, task_id: str, reprs: _Reprs) -> Any:
    args, kwargs = list(message.args), dict(message.kwargs)
    headers = {**template.headers, "id": task_id, "root_id": task_id}
    headers.update(
        argsrepr=reprs.of(args, reprs.args_size),
        kwargsrepr=message.kwargsrepr or reprs.of(kwargs, reprs.kwargs_size),
    )
    if message.countdown > 0:
        headers["eta"] = (datetime.now(UTC) + timedelta(seconds=message.countdown)).isoformat()
    return template._replace(
        headers=headers,
        properties={**template.properties, "correlation_id": task_id},
        body=(args, kwargs, template.body[2]),
    )


#: A key the sweeper keeps in the broker's Redis database. Messages and this key live and die together, so
#: finding it gone means the broker lost its messages (a restart without data, a FLUSHDB, a failover to a
#: replica that never had them).
MARKER_KEY = "scheduler:broker-marker"


def broker_lost_messages(url: str) -> bool:
    """True when the broker's contents were lost since the last look (or this is the first look ever, which
    the caller cannot tell apart and need not: resending a run whose message survived is fenced by its
    task id). Sets the marker again in the same command, so one loss is reported once. Raises the Redis
    error when the broker is unreachable: nothing can be known then."""
    from django.conf import settings

    from toolkit import redisurl

    master = settings.REDIS_SENTINEL_MASTER
    client = redisurl.connect(url, master=master, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.set(MARKER_KEY, str(uuid.uuid4()), nx=True))
    finally:
        client.close()


# --- The unsent ledger ----------------------------------------------------------------------------------

#: Messages a sender has made current (their rows are queued under their task ids) but has not yet seen
#: published: a sorted set in the broker's database, one member per publish (the JSON list of its
#: [row id, task id] pairs), scored by when it was noted.
UNSENT_KEY = "scheduler:unsent"


@functools.cache
def _client(url: str, master: str, timeout: float) -> redis.Redis:
    from toolkit import redisurl

    return redisurl.connect(url, master=master, socket_connect_timeout=timeout, socket_timeout=timeout)


def broker_client(*, timeout: float) -> redis.Redis:
    """A client for the broker's Redis (Sentinel URLs included), one per process and timeout."""
    from django.conf import settings

    return _client(settings.CELERY_BROKER_URL, settings.REDIS_SENTINEL_MASTER, timeout)


def ledger() -> redis.Redis:
    """The unsent ledger's client: short timeouts, since the ledger is best effort and must never hold a
    fire batch up for long."""
    return broker_client(timeout=0.5)


def note_unsent(pairs: Sequence[tuple[str, str]], *, at: float) -> str | None:
    """Note, before the rows' transaction commits, the messages about to be published (pairs of row id and
    task id); returns the note to clear once they are out (`note_sent`). Why: a sender that dies between
    that commit and its publish leaves rows queued under messages nobody sent, and without a note the only
    sign is age — the sweeper waits out the broker's whole visibility timeout (an hour in production)
    before it resends. With one, it resends a note left standing for seconds (`unsent_since`).

    Best effort: a broker that cannot take the note cannot take the messages either (they go back to
    pending), and a note the transaction then rolls back names rows that are not there (nothing to do)."""
    member = json.dumps([[pk, task_id] for pk, task_id in pairs], separators=(",", ":"))
    try:
        ledger().zadd(UNSENT_KEY, {member: at})
    except redis.RedisError:
        return None
    return member


def note_sent(member: str | None) -> None:
    if member is None:
        return
    with contextlib.suppress(redis.RedisError):  # the sweeper finds every row still current under its id
        ledger().zrem(UNSENT_KEY, member)


def unsent_since(before: float, *, limit: int = 100) -> list[tuple[str, list[tuple[str, str]]]]:
    """Notes older than `before` (their sender died or stalled between commit and publish), oldest first,
    each with its pairs. Raises the Redis error when the broker is unreachable."""
    members = ledger().zrangebyscore(UNSENT_KEY, "-inf", before, start=0, num=limit)
    notes = []
    for raw in members:
        member = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            pairs = [(str(pk), str(task_id)) for pk, task_id in json.loads(member)]
        except (ValueError, TypeError):
            pairs = []  # not one of ours: dropped below with the rest
        notes.append((member, pairs))
    return notes


# --- Reading the queues (kombu's Redis layout) --------------------------------------------------------


@dataclass(frozen=True)
class BrokerLayout:
    """How kombu's Redis transport lays a queue out: priority N of queue `q` is the list `q` for the lowest
    step and `q<sep>N` otherwise (kombu.transport.redis `_q_for_pri`), so a queue's depth is the sum of its
    priority lists. Read from the broker transport options so this follows the settings."""

    sep: str
    priority_steps: tuple[int, ...]
    unacked: str = "unacked"
    #: Delivery tag -> when it was delivered (kombu writes both with every delivery it does not ack yet).
    unacked_index: str = "unacked_index"

    @classmethod
    def of_app(cls) -> BrokerLayout:
        from celery import current_app as app
        from kombu.transport.redis import PRIORITY_STEPS, Channel

        options = app.conf.broker_transport_options or {}
        return cls(
            sep=options.get("sep", Channel.sep),
            priority_steps=tuple(sorted(options.get("priority_steps", PRIORITY_STEPS))),
            unacked=options.get("unacked_key", Channel.unacked_key),
            unacked_index=options.get("unacked_index_key", Channel.unacked_index_key),
        )

    def list_key(self, queue: str, priority: int) -> str:
        return queue if priority == self.priority_steps[0] else f"{queue}{self.sep}{priority}"


def queue_lengths(client: redis.Redis, queues: Iterable[str]) -> dict[str, dict[int, int]]:
    """Messages waiting in each queue, per priority step: one pipeline of LLENs."""
    layout = BrokerLayout.of_app()
    pairs = [(queue, priority) for queue in queues for priority in layout.priority_steps]
    with client.pipeline(transaction=False) as pipe:
        for queue, priority in pairs:
            pipe.llen(layout.list_key(queue, priority))
        lengths = pipe.execute()
    result: dict[str, dict[int, int]] = {}
    for (queue, priority), length in zip(pairs, lengths, strict=True):
        result.setdefault(queue, {})[priority] = int(length)
    return result


def messages_in_flight(client: redis.Redis, queue: str, *, delivered_since: float | None = None) -> int:
    """Messages of `queue` not yet done with: waiting in its priority lists, or delivered to a worker and not
    acknowledged. With late acks (the project's setting) a message is acknowledged after its task returned,
    so a message of the fire queue in neither place has been recorded (or given up) already. The unacked
    hash holds every queue's deliveries, each as JSON [message, exchange, routing key]; only this queue's
    count. One pipeline, plus a read of the unacked deliveries when nothing is waiting (a worker holds at
    most a few messages: a prefetch of one per process).

    `delivered_since` (unix time) counts only deliveries made since then (kombu's unacked index): a
    delivery older than that belongs to a worker that died holding it (its message comes back only after
    the visibility timeout, an hour in production) or is stuck, and must not stand for "in flight" that
    long."""
    layout = BrokerLayout.of_app()
    with client.pipeline(transaction=False) as pipe:
        for priority in layout.priority_steps:
            pipe.llen(layout.list_key(queue, priority))
        waiting = sum(int(length) for length in pipe.execute())
    if waiting:
        return waiting
    if delivered_since is None:
        deliveries = client.hvals(layout.unacked)
    else:
        tags = cast("list[bytes]", client.zrangebyscore(layout.unacked_index, delivered_since, "+inf"))
        deliveries = [raw for raw in (client.hmget(layout.unacked, tags) if tags else []) if raw is not None]
    delivered = 0
    for raw in deliveries:
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, TypeError, IndexError, KeyError):
            delivered += 1  # unreadable: counted, so an unknown message never passes for a settled queue
            continue
        delivered += routing_key == queue
    return delivered


def wait_while_draining(
    depth: Callable[[], int],
    *,
    limit: float,
    stall: float,
    poll: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> str:
    """Wait while `depth()` (messages waiting in some queue) is above zero and being consumed, for at most
    `limit` seconds; give up as soon as it has not gone down between two looks for `stall` seconds (its
    consumers are down or busy elsewhere: waiting longer would only delay the caller for nothing). A queue
    that grows while it is consumed (a producer still publishing a herd) is being drained: any fall between
    two looks counts. Returns why it stopped: "clear", "stalled", "limit", or "unknown" when the depth
    cannot be read (the caller goes on)."""
    started = last_progress = monotonic()
    previous: int | None = None
    while True:
        try:
            current = depth()
        except redis.RedisError:
            return "unknown"
        now = monotonic()
        if current <= 0:
            return "clear"
        if previous is not None and current < previous:
            last_progress = now
        previous = current
        if now - last_progress >= stall:
            return "stalled"
        if now - started >= limit:
            return "limit"
        sleep(poll)
