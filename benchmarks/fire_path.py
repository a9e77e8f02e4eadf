"""Fire-path benchmark: n triggers due in the same second, through the fleet's real roles as Procfile.dev
starts them (beat, the prefork `worker` that records fires, the threaded `launcher`), on PostgreSQL.

For each size it measures, from the slot:
  * rows recorded: the last `Execution` row of the herd committed (its `created_at`);
  * launched: the last run's `started_at` (the launcher claimed its attempt);
  * finished: the last run's `finished_at` (the demo target at speed 0 answers at once);
  * duplicates (fires published beyond one per trigger, from the beat's own counters) and missing rows;
and, in the same run and the same worker configuration, the empty-task ceiling: N no-op tasks
(`celery.accumulate`, Celery's built-in identity task, results ignored) pushed through the fire queue and
through the launch queue, timed until both queues are drained and nothing is left unacknowledged. The
end-to-end cost per slot (finished / n) is then printed beside the ceiling's cost per task.

Redis: REDIS_URL if it answers, else a private redis-server (scripts/devstack.py), on BENCH_REDIS_DB
(default 13), the only database flushed. PostgreSQL: a throwaway database `bench_fire_path`, dropped and
created on the server BENCH_DATABASE_URL names (default postgres://postgres@127.0.0.1:5432/postgres).
Figures are printed and appended to benchmarks/results/fire-path-<date>.md and .json.

    python benchmarks/fire_path.py [--sizes 2000,10000] [--ceiling 10000] [--timeout 600]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ROLES = ("worker", "launcher", "beat")
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from harness import devstack, with_db  # noqa: E402 - beside this script


def fresh_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(urlparse(admin_url)._replace(path=f"/{name}"))


def configure(redis_url: str, database_url: str) -> dict[str, str]:
    """Environment for this process and the fleet, set before Django or Celery is imported."""
    env = {
        "DJANGO_SETTINGS_MODULE": "scheduler_project.settings",
        "DEBUG": "0",
        "SECRET_KEY": "benchmark-only-secret-key",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        # `bench-retry` fails every attempt in a retryable way: its retries measure item 4's promise (a retry
        # lands on time whatever the backlog of fresh launches).
        "SCHEDULER_TARGETS": json.dumps(
            {
                "demo": {
                    "kind": "demo",
                    "speed": 0,
                    "workflows": {"bench-retry": {"steps": ["x"], "seconds": 0, "failure_rate": 1.0}},
                }
            }
        ),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
        "SCHEDULER_MAX_TRIGGERS_PER_OWNER": "10000000",
        "INTERNAL_API_SECRET": "benchmark-internal-secret-0123456789",
    }
    os.environ.update(env)
    return env


def procfile_commands() -> dict[str, str]:
    commands = {}
    for line in (ROOT / "Procfile.dev").read_text().splitlines():
        if line and not line.startswith("#") and ":" in line:
            role, command = line.split(":", 1)
            commands[role.strip()] = command.strip()
    return commands


@contextlib.contextmanager
def fleet(env: dict[str, str], log_dir: Path) -> Iterator[dict[str, subprocess.Popen]]:
    """The roles, each in its own session (so its children go with it), killed at the end."""
    commands = procfile_commands()
    log_dir.mkdir(parents=True, exist_ok=True)
    started: dict[str, subprocess.Popen] = {}
    child_env = {**os.environ, **env, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    try:
        for role in ROLES:
            log = (log_dir / f"{role}.log").open("w")
            started[role] = subprocess.Popen(
                ["bash", "-c", commands[role]],
                cwd=ROOT,
                env=child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        yield started
    finally:
        for proc in started.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in started.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


def wait_workers(app: Any, names: tuple[str, ...], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        seen = {name for reply in replies for name in reply}
        if all(any(s.startswith(f"{n}@") for s in seen) for n in names):
            return
        time.sleep(0.5)
    raise SystemExit(f"workers {names} did not answer a ping within {timeout:.0f}s")


def seed(n: int, slot: datetime, *, retrying: int = 0) -> list[uuid.UUID]:
    """n one-off triggers due at `slot` on the demo target, written in bulk, with their beat entries; plus
    `retrying` more whose every attempt fails and is retried (`bench-retry`), due in the same second."""
    from django.contrib.auth import get_user_model

    from schedules.beat.reconcile import reconcile
    from schedules.models import Trigger

    owner, _ = get_user_model().objects.get_or_create(username="bench")
    now = datetime.now(UTC)

    def one_off(name: str, workflow_id: str, **extra: Any) -> Trigger:
        return Trigger(
            owner=owner,
            name=name,
            workflow_id=workflow_id,
            target="demo",
            kind="once",
            run_at=slot,
            timezone="UTC",
            next_run_at=slot,
            schedule_changed_at=now,
            **extra,
        )

    rows = [one_off(f"herd-{i}", "hello") for i in range(n)]
    rows += [one_off(f"retry-{i}", "bench-retry", max_attempts=3, backoff_seconds=1) for i in range(retrying)]
    Trigger.objects.bulk_create(rows, batch_size=2000)
    from celery import current_app

    reconcile(app=current_app)
    return [row.pk for row in rows]


def herd(app: Any, n: int, *, lead: float, timeout: float, retrying: int = 0) -> dict[str, Any]:
    from django.db import connection
    from django.db.models import Count, Max

    from executions.models import Execution
    from schedules.models import Trigger

    Execution.objects.all().delete()
    Trigger.objects.all().delete()
    slot = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
    seeded_at = time.monotonic()
    seed(n, slot, retrying=retrying)
    seed_seconds = time.monotonic() - seeded_at
    if datetime.now(UTC) >= slot - timedelta(seconds=2):
        raise SystemExit(f"seeding {n} triggers took {seed_seconds:.1f}s; raise --lead")
    stats_before = _beat_stats(app)
    while datetime.now(UTC) < slot:
        time.sleep(0.05)
    deadline = time.monotonic() + timeout
    counts = {"recorded": 0, "launched": 0, "finished": 0}
    # The table holds only this herd (emptied above): one scan counts all three, so the watcher adds little
    # load to the database it measures (it used to run three counts filtered on n ids every 0.25 s).
    while time.monotonic() < deadline:
        counts = Execution.objects.aggregate(
            recorded=Count("pk"), launched=Count("started_at"), finished=Count("finished_at")
        )
        if counts["finished"] >= n + retrying:
            break
        time.sleep(0.5 if n <= 20000 else 2.0)  # counting a big herd's rows is itself load
    connection.close()
    agg = Execution.objects.aggregate(
        recorded=Max("created_at"), launched=Max("started_at"), finished=Max("finished_at")
    )
    stats_after = _beat_stats(app)
    late = retry_lateness()
    fired = sum(v for k, v in stats_after.items() if k.startswith("fired_")) - sum(
        v for k, v in stats_before.items() if k.startswith("fired_")
    )
    since = {k: (v - slot).total_seconds() if v else None for k, v in agg.items()}
    return {
        "n": n,
        "slot": slot.isoformat(),
        "seed_seconds": round(seed_seconds, 2),
        "rows": counts["recorded"],
        "missing": n + retrying - counts["recorded"],
        "fires_published": fired,
        "duplicate_fires": max(0, fired - n - retrying),
        "finished": counts["finished"],
        "recorded_s": _round(since["recorded"]),
        "launched_s": _round(since["launched"]),
        "finished_s": _round(since["finished"]),
        "per_slot_ms": _round(1000 * since["finished"] / n) if since["finished"] else None,
        "retries": len(late),
        "retry_late_p50_s": _round(late[len(late) // 2]) if late else None,
        "retry_late_max_s": _round(late[-1]) if late else None,
    }


def retry_lateness() -> list[float]:
    """For every retry made: its start minus its planned time (the failed attempt's end plus the delay it
    planned), sorted. Item 4's promise: within 2 s, whatever the herd queued before it."""
    from executions.models import Attempt

    attempts: dict[Any, list[Any]] = {}
    for attempt in Attempt.objects.filter(execution__trigger__workflow_id="bench-retry").order_by(
        "execution_id", "number"
    ):
        attempts.setdefault(attempt.execution_id, []).append(attempt)
    late = []
    for tries in attempts.values():
        for before, after in itertools.pairwise(tries):
            if before.finished_at and before.retry_delay_seconds is not None:
                planned = before.finished_at + timedelta(seconds=before.retry_delay_seconds)
                late.append((after.started_at - planned).total_seconds())
    return sorted(late)


def _beat_stats(app: Any) -> dict[str, int]:
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    raw = client.hgetall(f"{settings.REDBEAT_KEY_PREFIX}::stats")
    return {k.decode(): int(v) for k, v in raw.items()}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def ceiling(app: Any, n: int, queue: str, timeout: float) -> dict[str, Any]:
    """N no-op tasks through one queue of the running fleet: time until drained and acknowledged."""
    import redis
    from django.conf import settings

    from toolkit import broker

    client = redis.Redis.from_url(settings.REDIS_URL)
    messages = [broker.TaskMessage(args=[]) for _ in range(n)]
    started = time.monotonic()
    sent = 0
    for start in range(0, n, 1000):
        chunk = messages[start : start + 1000]
        _publish_to(app, chunk, queue)
        sent += len(chunk)
    publish_s = time.monotonic() - started
    deadline = started + timeout
    while time.monotonic() < deadline:
        waiting = sum(int(client.llen(key)) for key in client.scan_iter(match=f"{queue}*"))
        unacked = int(client.hlen("unacked"))
        if waiting == 0 and unacked == 0:
            break
        time.sleep(0.05)
    total = time.monotonic() - started
    return {
        "queue": queue,
        "n": n,
        "publish_s": round(publish_s, 3),
        "drained_s": round(total, 3),
        "tasks_per_s": round(n / total, 1),
        "per_task_ms": round(1000 * total / n, 3),
    }


def _publish_to(app: Any, messages: list[Any], queue: str) -> None:
    from kombu import Queue

    with app.producer_or_acquire() as producer:
        template = app.amqp.create_task_message("", "celery.accumulate", [], {}, create_sent_event=False)
        target = Queue(queue)
        producer.maybe_declare(target)
        with producer.batch(max_size=1000):
            for _message in messages:
                task_id = str(uuid.uuid4())
                headers = {**template.headers, "id": task_id, "root_id": task_id, "ignore_result": True}
                msg = template._replace(
                    headers=headers, properties={**template.properties, "correlation_id": task_id}
                )
                app.amqp.send_task_message(
                    producer, "celery.accumulate", msg, queue=target, declare=[], retry=False
                )


def write(report: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"fire-path-{datetime.now(UTC):%Y-%m-%d}"
    with stem.with_suffix(".json").open("a") as out:
        out.write(json.dumps(report) + "\n")
    lines = [
        f"## {report['started']} — {report['machine']}",
        "",
        f"Fleet: {', '.join(f'{r}: `{c}`' for r, c in report['roles'].items())}",
        "",
        "| herd | rows recorded | launched | finished | cost per slot | published | duplicates | missing "
        "| retries late p50 / max |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for h in report["herds"]:
        lines.append(
            f"| {h['n']:,} | {h['recorded_s']} s | {h['launched_s']} s | {h['finished_s']} s | "
            f"{h['per_slot_ms']} ms | {h['fires_published']:,} | {h['duplicate_fires']} | {h['missing']} "
            f"| {h.get('retry_late_p50_s')} / {h.get('retry_late_max_s')} s ({h.get('retries', 0)}) |"
        )
    lines += ["", "| empty-task ceiling | tasks | drained | tasks/s | per task |", "|---|---|---|---|---|"]
    for c in report["ceilings"]:
        lines.append(
            f"| `{c['queue']}` queue | {c['n']:,} | {c['drained_s']} s | {c['tasks_per_s']} "
            f"| {c['per_task_ms']} ms |"
        )
    lines += ["", f"Load average at start / end: {report['load_start']} / {report['load_end']}", "", ""]
    with stem.with_suffix(".md").open("a") as out:
        out.write("\n".join(lines))
    return stem


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="2000,10000")
    parser.add_argument("--ceiling", type=int, default=10000)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--retrying", type=int, default=20, help="triggers in each herd whose every attempt fails and retries"
    )
    parser.add_argument(
        "--lead", type=float, default=0, help="seconds from seeding to the slot (default: by size)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    stack = devstack()
    admin_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    with stack.ensure_redis(os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL")) as redis_url:
        url = with_db(redis_url, int(os.environ.get("BENCH_REDIS_DB", "13")))
        database_url = fresh_database(admin_url, "bench_fire_path")
        env = configure(url, database_url)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v", "0"],
            cwd=ROOT,
            check=True,
            env={**os.environ, **env},
        )
        import django

        django.setup()
        import redis

        redis.Redis.from_url(url).flushdb()
        from celery import current_app as app

        report: dict[str, Any] = {
            "started": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "roles": {role: procfile_commands()[role] for role in ROLES},
            "load_start": os.getloadavg()[0],
            "herds": [],
            "ceilings": [],
        }
        log_dir = ROOT / "benchmarks" / "results" / "logs"
        with fleet(env, log_dir):
            wait_workers(app, ("worker", "launcher"))
            for n in sizes:
                lead = args.lead or max(15.0, n / 1000)  # seeding 100k rows and their entries takes ~50 s
                result = herd(app, n, lead=lead, timeout=args.timeout, retrying=args.retrying)
                report["herds"].append(result)
                print(json.dumps(result), flush=True)
            for queue in ("fire", "launch"):
                result = ceiling(app, args.ceiling, queue, args.timeout)
                report["ceilings"].append(result)
                print(json.dumps(result), flush=True)
        report["load_end"] = os.getloadavg()[0]
        stem = write(report)
        print(f"written to {stem}.md and .json")


if __name__ == "__main__":
    main()
