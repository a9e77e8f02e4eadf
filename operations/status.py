"""What the fleet is doing right now, for operators: `GET /api/v1/status/` (staff only) and
`python manage.py fleet status` show the same snapshot.

* **Queues** — per Celery queue: `waiting` (in the broker's priority lists, by priority), `unacked`
  (delivered to a worker and not yet acknowledged: running, prefetched, or held for an ETA — the Redis
  transport's `unacked` hash), `scheduled` (the unacked ones carrying an ETA or countdown: retries with
  backoff, catch-up spread), `active` (executing now, as the workers report), and `completed` / `failed`:
  **runs** (executions) that ended in the last 24 h — succeeded, respectively failed or timed out — shown on
  the queue the launch task is routed to and null on the others. Executions rather than
  `django_celery_results.TaskResult`, because the launch task ignores its result (the execution row is the
  record of a run) and a task row says nothing about the run it launched.
* **Workers** — every worker answering within `STATUS_INSPECT_TIMEOUT`, its pool size and active tasks.
* **Beat** — whether a beat holds the leader lock (and for how long still), which one (its heartbeat names
  host and pid), its last tick and how long that took.
* **Due next minute** — entries of the beat's schedule due within 60 s (overdue ones included).

Every probe is bounded: Redis with socket timeouts, the workers' inspect with its reply window (and only when
Redis answered — the broker is Redis too). What could not be read is named under `errors`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from operations import metrics
from toolkit import clock

RUNS_WINDOW = timedelta(hours=24)
DUE_HORIZON = timedelta(minutes=1)
DUE_LISTED = 20


@dataclass
class QueueStatus:
    name: str
    waiting: int = 0
    waiting_by_priority: dict[int, int] = field(default_factory=dict)
    unacked: int = 0
    scheduled: int = 0
    active: int = 0
    completed: int | None = None
    failed: int | None = None


@dataclass
class ActiveTask:
    id: str
    name: str
    queue: str
    args: str
    running_seconds: float | None


@dataclass
class WorkerStatus:
    name: str
    concurrency: int | None
    pid: int | None
    active: list[ActiveTask] = field(default_factory=list)


@dataclass
class BeatStatus:
    leader: bool = False
    lock_ttl_seconds: float | None = None
    holder: str | None = None
    last_tick_at: datetime | None = None
    age_seconds: float | None = None
    tick_seconds: float | None = None


@dataclass
class DueTrigger:
    id: str
    name: str
    fire_at: datetime


@dataclass
class FleetStatus:
    generated_at: datetime
    queues: list[QueueStatus] = field(default_factory=list)
    workers: list[WorkerStatus] = field(default_factory=list)
    beat: BeatStatus = field(default_factory=BeatStatus)
    due_next_minute: int = 0
    due_soon: list[DueTrigger] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Plain JSON types (instants as ISO 8601, priorities as string keys)."""
        return json.loads(json.dumps(asdict(self), default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


# --- Probes -----------------------------------------------------------------------------------------------


def beat_status(client: redis.Redis) -> BeatStatus:
    """The leader lock and the heartbeat. The heartbeat names the holder only while the lock is held: after
    a failover it may still be the old leader's for up to one tick."""
    with client.pipeline(transaction=False) as pipe:
        pipe.pttl(metrics.lock_key())
        pipe.hgetall(metrics.beat_key())
        pttl, raw = pipe.execute()
    heartbeat = metrics.Heartbeat.parse(raw)
    leader = pttl is not None and pttl != -2
    status = BeatStatus(leader=leader, lock_ttl_seconds=pttl / 1000 if leader and pttl >= 0 else None)
    if heartbeat is not None:
        status.holder = heartbeat.identity if leader else None
        status.last_tick_at = datetime.fromtimestamp(heartbeat.tick_at, UTC)
        status.age_seconds = round(heartbeat.age(), 3)
        status.tick_seconds = heartbeat.tick_seconds
    return status


def unacked_by_queue(
    client: redis.Redis, bindings: dict[tuple[str, str], str]
) -> tuple[Counter[str], Counter[str]]:
    """Unacknowledged messages per queue, and those of them with an ETA. kombu stores each as
    `[message, exchange, routing_key]` in the `unacked` hash (kombu.transport.redis QoS.append)."""
    unacked: Counter[str] = Counter()
    delayed: Counter[str] = Counter()
    for _tag, raw in client.hscan_iter("unacked", count=500):
        try:
            message, exchange, routing_key = json.loads(raw)
            eta = (message.get("headers") or {}).get("eta")
        except (ValueError, TypeError, AttributeError):
            continue
        queue = bindings.get((exchange, routing_key), routing_key)
        unacked[queue] += 1
        if eta:
            delayed[queue] += 1
    return unacked, delayed


def inspect_workers(timeout: float) -> list[WorkerStatus]:
    """`stats` (pool size, pid) and `active` (running tasks) of every worker answering within `timeout`,
    asked in parallel so the page costs one reply window, not two."""
    from celery import current_app as app

    inspector = app.control.inspect(timeout=timeout)
    with ThreadPoolExecutor(max_workers=2) as pool:
        stats_call, active_call = pool.submit(inspector.stats), pool.submit(inspector.active)
        stats, active = stats_call.result() or {}, active_call.result() or {}
    now = time.time()
    workers = []
    for name in sorted(set(stats) | set(active)):
        info: Mapping[str, Any] = stats.get(name) or {}
        tasks = [
            ActiveTask(
                id=str(task.get("id", "")),
                name=str(task.get("name") or task.get("type") or ""),
                queue=str((task.get("delivery_info") or {}).get("routing_key") or ""),
                args=str(task.get("args", ""))[:200],
                running_seconds=round(now - task["time_start"], 3) if task.get("time_start") else None,
            )
            for task in active.get(name) or []
        ]
        pool_info = info.get("pool") or {}
        workers.append(
            WorkerStatus(
                name=name, concurrency=pool_info.get("max-concurrency"), pid=info.get("pid"), active=tasks
            )
        )
    return workers


def launch_queue() -> str:
    from celery import current_app as app

    from executions.services import LAUNCH_TASK

    route = app.amqp.router.route({}, LAUNCH_TASK)
    return route["queue"].name


def run_counts(*, since: datetime) -> tuple[int, int]:
    """Runs that ended since `since`: (succeeded, failed or timed out)."""
    from django.db.models import Count, Q

    from executions.models import Execution, ExecutionStatus

    counts = Execution.objects.filter(finished_at__gte=since).aggregate(
        completed=Count("pk", filter=Q(status=ExecutionStatus.SUCCEEDED)),
        failed=Count("pk", filter=Q(status__in=[ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT])),
    )
    return counts["completed"], counts["failed"]


def due_soon(client: redis.Redis, *, now: datetime) -> tuple[int, list[DueTrigger]]:
    """Entries of the beat's schedule due by now + one minute, and the first few with their names."""
    from celery import current_app as app

    from schedules.beat.entries import Keys
    from schedules.models import Trigger

    keys = Keys.of(app)
    horizon = (now + DUE_HORIZON).timestamp()
    with client.pipeline(transaction=False) as pipe:
        pipe.zcount(keys.schedule, "-inf", horizon)
        pipe.zrangebyscore(keys.schedule, "-inf", horizon, start=0, num=DUE_LISTED, withscores=True)
        count, entries = pipe.execute()
    ids = {metrics.as_text(key): keys.trigger_id(metrics.as_text(key)) for key, _score in entries}
    named = Trigger.objects.filter(pk__in=[i for i in ids.values() if i]).values_list("pk", "name")
    names: dict[uuid.UUID | None, str] = dict(named)
    listed = [
        DueTrigger(
            id=str(ids[metrics.as_text(key)] or metrics.as_text(key)),
            name=names.get(ids[metrics.as_text(key)], ""),
            fire_at=datetime.fromtimestamp(score, UTC),
        )
        for key, score in entries
    ]
    return int(count), listed


def fleet_status(*, inspect_timeout: float | None = None) -> FleetStatus:
    """The whole snapshot. Database figures always; broker, beat and schedule figures when Redis answers;
    worker figures when Redis answered and workers reply."""
    now = clock.now()
    status = FleetStatus(generated_at=now)
    completed, failed = run_counts(since=now - RUNS_WINDOW)
    client = metrics.read_client()
    try:
        bindings = metrics.queue_bindings(client)
        names = metrics.known_queues(client, bindings)
        waiting = metrics.queue_lengths(client, names)
        unacked, delayed = unacked_by_queue(client, bindings)
        status.beat = beat_status(client)
        status.due_next_minute, status.due_soon = due_soon(client, now=now)
    except redis.RedisError as exc:
        status.errors["redis"] = f"{type(exc).__name__}: {exc}"
        names, waiting, unacked, delayed = [], {}, Counter(), Counter()
    else:
        timeout = settings.STATUS_INSPECT_TIMEOUT if inspect_timeout is None else inspect_timeout
        try:
            status.workers = inspect_workers(timeout)
        except Exception as exc:  # whatever the transport raises, the snapshot says so and carries on
            status.errors["workers"] = f"{type(exc).__name__}: {exc}"
    active = Counter(task.queue for worker in status.workers for task in worker.active)
    runs_queue = launch_queue()
    for name in sorted(set(names) | set(unacked) | set(active) | {runs_queue}):
        per_priority = waiting.get(name, {})
        queue = QueueStatus(
            name=name,
            waiting=sum(per_priority.values()),
            waiting_by_priority=per_priority,
            unacked=unacked[name],
            scheduled=delayed[name],
            active=active[name],
        )
        if name == runs_queue:
            queue.completed, queue.failed = completed, failed
        status.queues.append(queue)
    return status


# --- The API view -----------------------------------------------------------------------------------------


class StatusView(APIView):
    """`GET /api/v1/status/`: the fleet snapshot, for staff. Left out of the OpenAPI document: it is an
    operations endpoint like `/healthz` and `/metrics`, not part of the scheduling API."""

    permission_classes = [IsAdminUser]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return Response(fleet_status().as_json())
