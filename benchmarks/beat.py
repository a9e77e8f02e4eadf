"""Beat benchmark (`make bench`): stock RedBeat with plain Celery schedules next to our TriggerScheduler, in
one run against the same Redis.

For each size (default 1k, 10k and 100k entries; `--sizes 100000,1000000` for the issue's scale) it measures
  * idle tick: wall time of one `scheduler.tick()` when nothing is due (lock held, all entries due later);
  * memory per entry: the growth of Redis `used_memory` (INFO memory) divided by the entries written;
  * takeover: a new scheduler object (the lock free) to the end of its first tick: lock taken, for ours the
    repair a new leader runs (changed since the watermark), due entries fired;
  * herd (`--herds`): time for the ticks to publish N entries due in the same second, and how many messages
    actually reached the broker (counted in a throwaway broker database), bounded at 120 s;
and, for ours, reconcile over real Trigger rows (`--reconcile`): rebuilding every entry into an empty Redis
(and the memory per trigger that leaves, shared definitions included), a full pass that finds nothing to do,
the steady changed-since pass, one audit slice, and from them the leader's steady repair cost per minute;
the memory per trigger of a fleet half one-offs (`--one-offs`); and with real spawned `celery beat`
processes, as the Procfile starts them (`--spawned`, both schedulers): spawn to the end of a new leader's
first tick, and `kill -9` of a leader to the end of its standby's first tick, beside the lock's TTL left at
the kill (ours over as many Trigger rows, a canary among them due every second, the production audit on).

Both run against one Redis: a private redis-server started for the run (BENCH_REDIS_URL names an existing
one instead), on two database numbers (BENCH_REDIS_DB, default 14, for entries; BENCH_BROKER_DB, default 15,
for messages), and only those two are ever flushed. Database rows go to a throwaway PostgreSQL database
`bench_beat` on the server BENCH_DATABASE_URL names (default postgres://postgres@127.0.0.1:5432/postgres),
loaded server-side (`INSERT … SELECT … generate_series`, as benchmarks/api.py), so a million rows take
seconds. Entries are
written in pipelines in each scheduler's own format (RedBeat's encoder for stock, our write script for ours)
rather than one `save()` round trip each, so 100k entries load in seconds. Figures are printed and written to
benchmarks/results/beat-<date>.json and .md. Wall times on a shared 2-core machine are noisy: the load average
at start and end is recorded next to them.

    python benchmarks/beat.py [--sizes 1000,10000,100000] [--herds 1000,10000] [--reconcile 1000,10000,100000]
        [--one-offs 100000] [--spawned 10000] [--stock-herd-limit 100000] [--fire-log 10000]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from api import seed_table  # noqa: E402 - beside this script
from fire_path import fresh_database  # noqa: E402
from harness import devstack, with_db  # noqa: E402

#: Reconcile rows: varied per row (g = 1..n), every other column the model's default. Five cron shapes in
#: three zones, as a fleet of many triggers on few schedules.
TRIGGER_COLUMNS = {
    "id": "md5('t' || g)::uuid",
    "owner_id": "%(owner)s",
    "name": "'b' || g",
    "workflow_id": "'wf'",
    "cron_expression": "(ARRAY['*/5 * * * *', '0 * * * *', '30 9 * * 1-5', '*/15 * * * * *', '0 0 1 * *'])"
    "[1 + g % 5]",
    "timezone": "(ARRAY['UTC', 'Europe/Paris', 'America/Los_Angeles'])[1 + g % 3]",
    "schedule_changed_at": "%(now)s",
    "created_at": "%(now)s",
    "updated_at": "%(now)s - interval '1 hour'",
}


def configure(redis_url: str, workdir: Path) -> dict[str, str]:
    """Environment for Django and Celery, set before either is imported. The audit is off in the schedulers
    measured (entries without rows would all look orphaned to it); it is measured on its own."""
    entries = with_db(redis_url, int(os.environ.get("BENCH_REDIS_DB", "14")))
    broker = with_db(redis_url, int(os.environ.get("BENCH_BROKER_DB", "15")))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="scheduler_project.settings",
        DEBUG="1",
        REDIS_URL=entries,
        CELERY_BROKER_URL=broker,
        DATABASE_URL=fresh_database(
            os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"), "bench_beat"
        ),
        REDBEAT_LOCK_TIMEOUT="30",
        SCHEDULER_AUDIT_BUDGET="0",
        LOG_LEVEL="WARNING",
    )
    return {"entries": entries, "broker": broker}


# --- Measurements -----------------------------------------------------------------------------------------


class Bench:
    """Everything both schedulers share: the app, the two Redis databases, the lock, the clocks."""

    def __init__(self, urls: dict[str, str]) -> None:
        import redis

        from scheduler_project.celery import app
        from schedules.beat import entries, reconcile, scheduler, sync

        self.app = app
        self.entries, self.sync, self.repair, self.scheduler = entries, sync, reconcile, scheduler
        self.keys = entries.Keys.of(app)
        self.redis = redis.Redis.from_url(urls["entries"])
        self.broker = redis.Redis.from_url(urls["broker"])

    def flush(self) -> None:
        self.redis.flushdb()
        self.broker.flushdb()
        self._seen: dict[bytes, tuple[int, int]] = {}

    def used_memory(self) -> int:
        return int(self.redis.info("memory")["used_memory"])

    def published(self) -> int:
        """Fires waiting in the broker database, in every priority list of every queue: one per
        `executions.fire` message (stock RedBeat), the batch's length per `executions.fire_batch` (ours).
        kombu LPUSHes, so the messages not yet counted are the first `len - seen` of each list."""
        seen = self._seen
        total = 0
        for key in self.broker.scan_iter("*"):
            if key.startswith(b"_kombu") or self.broker.type(key) != b"list":
                continue
            messages, fires = seen.get(key, (0, 0))
            fresh = self.broker.llen(key) - messages
            for raw in self.broker.lrange(key, 0, fresh - 1) if fresh > 0 else ():
                message = json.loads(raw)
                task = message["headers"]["task"]
                if task == "executions.fire_batch":
                    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
                    fires += len(args[0])
                elif task == "executions.fire":
                    fires += 1  # anything else (the housekeeping tasks a leader sends) is not a fire
            seen[key] = (messages + max(fresh, 0), fires)
            total += fires
        return total

    def locked(self, scheduler: Any) -> Any:
        """Take the lock the way RedBeat's beat_init handler does, and hand it to the scheduler."""
        client = self.entries.redis_client(self.app)
        lock = client.lock(scheduler.lock_key, timeout=scheduler.lock_timeout, sleep=0.1)
        lock.acquire()
        scheduler.lock = lock
        return scheduler

    def takeover(self, peer: Any) -> dict[str, float]:
        """A leader starting with the lock free: scheduler object, lock, first tick (its lock taken the way
        each does it), timed together."""
        self.redis.delete(self.keys.lock)
        started = time.perf_counter()
        scheduler = peer.starting()
        elapsed = time.perf_counter() - started
        scheduler.close()
        self.redis.delete(self.keys.lock)
        return {"takeover_s": round(elapsed, 4)}

    def idle_ticks(self, scheduler: Any, rounds: int = 300) -> dict[str, float]:
        scheduler.tick()  # warm: connections, scripts
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            scheduler.tick()
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        return {
            "idle_tick_ms_p50": round(statistics.median(samples), 4),
            "idle_tick_ms_p99": round(samples[int(len(samples) * 0.99) - 1], 4),
        }

    def herd(self, scheduler: Any, size: int, due: datetime) -> dict[str, float]:
        """Wait for the due second, then tick until `size` messages are in the broker (or 120 s pass). The
        scheduler ticks idle once first and opens its producer, as a beat that has been running has. Timed
        from the due instant, by the wall clock: a warm-up tick that is still loading entries when they fall
        due (stock RedBeat at 100k) fires part of the herd before the loop starts."""
        scheduler.tick()
        assert scheduler.producer.connection.connected
        time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.005)
        deadline = due + timedelta(seconds=120)
        while self.published() < size and datetime.now(UTC) < deadline:
            scheduler.tick()
        elapsed = (datetime.now(UTC) - due).total_seconds()
        return {
            "herd_seconds": round(elapsed, 3),
            "herd_published": self.published(),
            "herd_fires_per_s": round(min(size, self.published()) / elapsed),
        }


class Stock:
    """RedBeat 2.4.2 as shipped: RedBeatSchedulerEntry + a Celery schedule, RedBeatScheduler's tick."""

    name = "stock RedBeat"

    def __init__(self, bench: Bench) -> None:
        from celery.schedules import crontab, schedule
        from redbeat.decoder import RedBeatJSONEncoder  # noqa: TID251 - the peer being measured
        from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry  # noqa: TID251

        self.bench, self.crontab, self.schedule = bench, crontab, schedule
        self.encoder, self.entry_cls, self.scheduler_cls = (
            RedBeatJSONEncoder,
            RedBeatSchedulerEntry,
            RedBeatScheduler,
        )

    def write(self, size: int, *, due: datetime | None) -> None:
        """What `RedBeatSchedulerEntry.save()` writes (definition, meta, ZADD), pipelined. A herd entry is an
        hourly interval last run an hour before `due`; an idle one is a yearly crontab run just now (none
        falls due while a million entries are written and measured)."""
        app, now = self.bench.app, datetime.now(UTC)
        with self.bench.entries.redis_client(app).pipeline(transaction=False) as pipe:
            for i in range(size):
                if due is None:
                    entry = self.entry_cls(
                        f"stock-{i}",
                        "executions.fire",
                        self.crontab(minute=0, hour=0, day_of_month=1, month_of_year=1),
                        args=[str(uuid.uuid4()), ""],
                        app=app,
                    )
                    entry.last_run_at = now
                else:
                    entry = self.entry_cls(
                        f"stock-{i}",
                        "executions.fire",
                        self.schedule(3600),
                        args=[str(uuid.uuid4()), ""],
                        app=app,
                    )
                    entry.last_run_at = due - timedelta(hours=1)
                fields = ("name", "task", "args", "kwargs", "options", "schedule", "enabled")
                definition = {name: getattr(entry, name) for name in fields}
                pipe.hset(entry.key, "definition", json.dumps(definition, cls=self.encoder))
                pipe.hset(entry.key, "meta", json.dumps({"last_run_at": entry.last_run_at}, cls=self.encoder))
                pipe.zadd(app.redbeat_conf.schedule_key, {entry.key: entry.score})
                if i % 5000 == 4999:
                    pipe.execute()
            pipe.execute()

    def scheduler(self) -> Any:
        return self.bench.locked(self.scheduler_cls(app=self.bench.app, lazy=True))

    def starting(self) -> Any:
        """As `celery beat` starts it: setup_schedule, the lock (RedBeat's beat_init handler), a tick."""
        scheduler = self.bench.locked(self.scheduler_cls(app=self.bench.app))
        scheduler.tick()
        return scheduler


class Ours:
    """schedules.beat: TriggerEntry + TriggerScheduler (batched, compare-and-set)."""

    name = "ours"

    def __init__(self, bench: Bench) -> None:
        from schedules import timing

        self.bench, self.timing = bench, timing

    def write(self, size: int, *, due: datetime | None) -> None:
        """What sync/reconcile write (a compact entry referring to a shared definition, ZADD), through the
        same script."""
        entries, sync, app = self.bench.entries, self.bench.sync, self.bench.app
        spec = self.timing.ScheduleSpec(
            kind="cron", cron_expression="0 0 1 1 *" if due is None else "* * * * * *"
        )
        slot = due or datetime(datetime.now(UTC).year + 1, 1, 1, tzinfo=UTC)
        client = entries.redis_client(app)
        script = entries.registered_script(client, sync.WRITE_SCRIPT)
        with client.pipeline(transaction=False) as pipe:
            for i in range(size):
                desired = sync.Desired(entries.EntryDefinition(str(uuid.uuid4()), spec, 0, 6), slot)
                keys = sync.write_keys(self.bench.keys, self.bench.keys.entry(desired.definition.trigger_id))
                script(keys=keys, args=["", "", "", *desired.put_args()], client=pipe)
                if i % 5000 == 4999:
                    pipe.execute()
            pipe.execute()
        # As a completed build leaves it, so a starting leader repairs what changed (nothing) only.
        built = entries.iso(datetime.now(UTC))
        marks = {
            self.bench.keys.built: built,
            self.bench.keys.watermark: built,
            self.bench.keys.layout: entries.LAYOUT,
        }
        client.mset(marks)

    def starting(self) -> Any:
        """As `celery beat` starts it: the first tick takes the lock and runs a new leader's repair."""
        scheduler = self.bench.scheduler.TriggerScheduler(app=self.bench.app)
        scheduler.tick()
        assert scheduler.lock is not None, "the lock was free"
        return scheduler

    def scheduler(self) -> Any:
        scheduler = self.bench.scheduler.TriggerScheduler(app=self.bench.app, lazy=True)
        scheduler._reconcile_now, scheduler._reconciled_at = False, time.monotonic() + 3600  # measured apart
        return self.bench.locked(scheduler)


def measure_size(bench: Bench, peer: Any, size: int, herd: bool) -> dict[str, Any]:
    bench.flush()
    before = bench.used_memory()
    started = time.perf_counter()
    peer.write(size, due=None)
    write_seconds = time.perf_counter() - started
    figures: dict[str, Any] = {
        "entries": size,
        "bytes_per_entry": round((bench.used_memory() - before) / size),
    }
    scheduler = peer.scheduler()
    figures.update(bench.idle_ticks(scheduler))
    scheduler.close()
    figures.update(bench.takeover(peer))
    if herd:
        bench.flush()
        # Far enough ahead for the writes (as long as the idle ones took, and then some) and a warm-up tick
        # to finish before the herd falls due.
        ahead = 3 + 1.3 * write_seconds
        due = (datetime.now(UTC) + timedelta(seconds=ahead)).replace(microsecond=0)
        peer.write(size, due=due)
        scheduler = peer.scheduler()
        if datetime.now(UTC) >= due - timedelta(seconds=1):
            raise RuntimeError(
                f"writing {size} entries overran the herd's due time; the figure would be wrong"
            )
        figures.update(bench.herd(scheduler, size, due))
        scheduler.close()
    bench.flush()
    return figures


def empty_triggers() -> None:
    """The throwaway database's triggers gone at once: TRUNCATE, not the ORM's delete, which collects a
    million rows' relations first (a quarter of an hour)."""
    from django.db import connection

    from schedules.models import Trigger

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Trigger._meta.db_table} CASCADE")


def measure_reconcile(bench: Bench, size: int) -> dict[str, Any]:
    """Database rows -> empty Redis (and what that costs in memory), then what the leader pays at rest."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from schedules.models import Trigger

    bench.flush()
    empty_triggers()
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    params = {"owner": owner.pk, "now": datetime.now(UTC)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # Django's FKs are deferred: check per statement
        load_seconds = seed_table(cursor, Trigger, TRIGGER_COLUMNS, size, params)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Trigger._meta.db_table}")
    before = bench.used_memory()
    started = time.perf_counter()
    report = bench.repair.reconcile(app=bench.app)
    rebuild = time.perf_counter() - started
    bytes_per_trigger = round((bench.used_memory() - before) / size)
    started = time.perf_counter()
    steady = bench.repair.reconcile(app=bench.app)
    steady_seconds = time.perf_counter() - started
    # What the leader pays every period at rest: the triggers changed since the watermark (none)…
    period = float(settings.SCHEDULER_RECONCILE_SECONDS)
    started = time.perf_counter()
    bench.repair.reconcile_changed(
        app=bench.app, since=datetime.now(UTC) - timedelta(seconds=2 * period + 30)
    )
    changed_seconds = time.perf_counter() - started
    # … and the audit, one slice at a time at its CPU budget (the production default, off in the schedulers).
    budget = float(os.environ.get("BENCH_AUDIT_BUDGET", "0.02"))
    audit = bench.repair.Audit(budget=budget)
    slices = []
    for _ in range(5):
        started = time.perf_counter()
        audit.step(app=bench.app)
        slices.append(time.perf_counter() - started)
    slice_seconds = statistics.median(slices)
    per_minute = changed_seconds * 60 / period + budget * 60
    definitions = bench.redis.hlen(bench.keys.definitions)
    bench.flush()
    return {
        "rows": size,
        "load_seconds": round(load_seconds, 1),
        "rebuild_seconds": round(rebuild, 3),
        "added": len(report.added),
        "bytes_per_trigger": bytes_per_trigger,
        "definitions": definitions,
        "steady_pass_seconds": round(steady_seconds, 3),
        "steady_pass_changes": int(steady.changed),
        "changed_pass_seconds": round(changed_seconds, 4),
        "audit_slice_seconds": round(slice_seconds, 4),
        "audit_round_minutes": round(math.ceil(size / audit.rows) * slice_seconds / budget / 60, 1),
        "repair_cpu_s_per_minute": round(per_minute, 3),
        "repair_core_percent": round(per_minute / 60 * 100, 2),
    }


#: One-off mix: every other row a one-off, each at its own run_at (from a day ahead, a second apart).
ONE_OFF_COLUMNS = {
    **TRIGGER_COLUMNS,
    "kind": "CASE WHEN g % 2 = 0 THEN 'once' ELSE 'cron' END",
    "cron_expression": "CASE WHEN g % 2 = 0 THEN '' ELSE (ARRAY['*/5 * * * *', '0 * * * *', '30 9 * * 1-5', "
    "'0 0 1 * *'])[1 + g % 4] END",
    "run_at": "CASE WHEN g % 2 = 0 THEN %(now)s + interval '1 day' + g * interval '1 second' END",
}


def measure_one_offs(bench: Bench, size: int) -> dict[str, Any]:
    """Memory per trigger of a fleet half one-offs (each its own run_at), rebuilt from rows into an empty
    Redis: a one-off's run_at is its entry's slot, so one-offs share definitions as cron triggers do."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from schedules.models import Trigger

    bench.flush()
    empty_triggers()
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    params = {"owner": owner.pk, "now": datetime.now(UTC)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        seed_table(cursor, Trigger, ONE_OFF_COLUMNS, size, params)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Trigger._meta.db_table}")  # else each keyset page may scan the table
    before = bench.used_memory()
    started = time.perf_counter()
    report = bench.repair.reconcile(app=bench.app)
    figures = {
        "rows": size,
        "one_offs": size // 2,
        "rebuild_seconds": round(time.perf_counter() - started, 3),
        "added": len(report.added),
        "bytes_per_trigger": round((bench.used_memory() - before) / size),
        "definitions": bench.redis.hlen(bench.keys.definitions),
    }
    bench.flush()
    return figures


# --- Spawned beats: takeover and failover as the Procfile starts them ---------------------------------------

#: Spawned-beat rows: nothing falls due during a run but a canary (g = 1) due every second, so a new leader's
#: first tick is a takeover, not a herd, and its first fire is observable. Four yearly shapes in three zones.
SPAWNED_COLUMNS = {
    **TRIGGER_COLUMNS,
    "cron_expression": "CASE WHEN g = 1 THEN '* * * * * *' ELSE (ARRAY['0 0 1 1 *', '0 12 1 7 *', "
    "'30 6 15 3 *', '45 18 2 10 *'])[1 + g % 4] END",
}
#: Ours: the marker `TriggerScheduler` logs when a new leader's first tick ends (its wall time inside).
OUR_FIRST_TICK = re.compile(r"beat: first tick as leader done at ([\d.]+)")
#: Stock: Celery's DEBUG line after every tick, after RedBeat's "Acquired lock" (log time, milliseconds).
STOCK_ACQUIRED = re.compile(r"^\[([\d-]+ [\d:,]+): INFO/[\w-]+\] beat: Acquired lock", re.M)
STOCK_TICKED = re.compile(r"^\[([\d-]+ [\d:,]+): DEBUG/[\w-]+\] beat: Waking up", re.M)
IMPORTS = (
    "import django; django.setup(); import celery.bin.celery, celery.apps.beat; "
    "from scheduler_project.celery import app; import schedules.beat.scheduler, redbeat.schedulers"
)


class Beat:
    """One `celery -A scheduler_project beat` process, started the way the Procfile starts it (its own
    session, output to a log file), and its log read back."""

    def __init__(self, workdir: Path, name: str, scheduler: str, level: str) -> None:
        self.log_path = workdir / f"{name}.log"
        celery = Path(sys.executable).with_name("celery")
        command = [str(celery), "-A", "scheduler_project", "beat", "-S", scheduler, f"--loglevel={level}"]
        env = {**os.environ, "LOG_LEVEL": level, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        env.pop("SCHEDULER_AUDIT_BUDGET", None)  # rows match entries here: the production audit runs
        with self.log_path.open("wb") as log:
            self.spawned = time.time()
            self.proc = subprocess.Popen(
                command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def _log_time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()  # noqa: DTZ007 - the log's local time


def first_tick_end(beat: Beat, stock: bool, after: float = 0.0) -> float | None:
    """Wall time at which `beat`'s first tick as leader (the first after `after`) ended, or None yet."""
    text = beat.log()
    if not stock:
        found = [float(t) for t in OUR_FIRST_TICK.findall(text)]
        return next((t for t in found if t > after), None)
    acquired = [_log_time(m.group(1)) for m in STOCK_ACQUIRED.finditer(text)]
    since = next((t for t in acquired if t > after - 0.001), None)
    if since is None:
        return None
    return next(
        (_log_time(m.group(1)) for m in STOCK_TICKED.finditer(text) if _log_time(m.group(1)) >= since), None
    )


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def import_seconds(rounds: int = 3) -> float:
    """What a beat pays before any scheduler code runs: a fresh interpreter importing Django (set up),
    Celery's command line and beat, the app and both schedulers; the median of a few, spawn to exit."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", IMPORTS], cwd=ROOT, env=env, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def seed_spawned(bench: Bench, size: int) -> float:
    """`size` Trigger rows (the canary first) and their entries built by the full reconcile, as a fleet that
    has been running: `built` and the watermark set. Returns the seconds the rebuild took."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from schedules.models import Trigger

    bench.flush()
    empty_triggers()
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    params = {"owner": owner.pk, "now": datetime.now(UTC)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        seed_table(cursor, Trigger, SPAWNED_COLUMNS, size, params)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Trigger._meta.db_table}")
    started = time.perf_counter()
    bench.repair.reconcile(app=bench.app)
    return time.perf_counter() - started


def measure_spawned(bench: Bench, peer: Any, size: int, workdir: Path) -> dict[str, Any]:
    """Real `celery beat` processes on `size` entries (ours: over as many rows, with the production audit).

    * takeover: one beat spawned with the lock free; spawn -> the end of its first tick as leader.
    * failover: a leader and a standby; `kill -9` of the leader once the standby runs; kill -> the end of
      the standby's first tick as leader (for ours: the canary's slot fired in it), beside the lock's
      remaining TTL at the kill, which no standby can beat."""
    stock = isinstance(peer, Stock)
    scheduler = "redbeat.RedBeatScheduler" if stock else "schedules.beat.scheduler:TriggerScheduler"
    level = "DEBUG" if stock else "INFO"
    figures: dict[str, Any] = {"entries": size}
    if stock:
        bench.flush()
        peer.write(size, due=None)
    else:
        figures["rebuild_s"] = round(seed_spawned(bench, size), 1)
    beats: list[Beat] = []
    try:
        leader = Beat(workdir, f"{'stock' if stock else 'ours'}-a", scheduler, level)
        beats.append(leader)
        ended = wait(lambda: first_tick_end(leader, stock), 120, "the first beat's first tick")
        figures["spawn_to_first_tick_s"] = round(ended - leader.spawned, 3)
        if not stock:
            found = re.search(r"first tick as leader done at [\d.]+: ([\d.]+) s after taking the lock, "
                              r"([\d.]+) s after the scheduler was created", leader.log())  # fmt: skip
            assert found is not None
            figures["lock_to_first_tick_s"] = float(found.group(1))
            figures["created_to_first_tick_s"] = float(found.group(2))
        standby = Beat(workdir, f"{'stock' if stock else 'ours'}-b", scheduler, level)
        beats.append(standby)
        wait(lambda: "beat: Starting" in standby.log(), 60, "the standby to start")
        time.sleep(3 + (time.time() % 7))  # the standby settled, and the kill at no particular point
        ttl = bench.redis.pttl(bench.keys.lock) / 1000
        killed = time.time()
        os.killpg(leader.proc.pid, signal.SIGKILL)
        leader.proc.wait(timeout=10)
        lock_timeout = float(os.environ["REDBEAT_LOCK_TIMEOUT"])
        took_over = wait(lambda: first_tick_end(standby, stock, after=killed), lock_timeout + 30, "failover")
        figures["failover_s"] = round(took_over - killed, 3)
        figures["failover_lock_ttl_s"] = round(ttl, 3)
        figures["failover_target_s"] = lock_timeout + 1
        if not stock:  # the canary's next slot moved past the takeover: the new leader fired its due slot
            canary = bench.keys.entry(uuid.UUID(hashlib.md5(b"t1").hexdigest()))  # noqa: S324 - as SQL's md5
            slot = int(bench.redis.hget(canary, bench.entries.NEXT_SLOT) or 0) / 1e6
            figures["failover_fired"] = slot > took_over - 1
    finally:
        for beat in beats:
            beat.stop()
    bench.flush()
    return figures


# --- Report -----------------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    host = result["host"]
    columns = ("entries", "idle_tick_ms_p50", "idle_tick_ms_p99", "bytes_per_entry", "takeover_s",
               "herd_seconds", "herd_published", "herd_fires_per_s")  # fmt: skip
    lines = [
        f"# Beat benchmark {result['date']}",
        "",
        f"Host: {host['cpus']} CPUs, load average {host['load_start']} at start, {host['load_end']} at end; "
        f"Redis {host['redis']}; Python {host['python']}.",
        "",
        "| scheduler | entries | idle tick p50 (ms) | idle tick p99 (ms) | bytes/entry | takeover (s) "
        "| herd (s) | published | fires/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for peer, sizes in result["schedulers"].items():
        for figures in sizes:
            cells = [f"{figures[c]:,}" if c in figures else "-" for c in columns]
            lines.append(f"| {peer} | {' | '.join(cells)} |")
    lines += [
        "",
        "| reconcile (ours) | rows | load (s) | rebuild into empty Redis (s) | bytes/trigger (definitions) "
        "| full pass, nothing to do (s) | changed-since pass (s) | audit slice (s) | audit round (min) "
        "| steady repair, CPU s/min (% of a core) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in result["reconcile"]:
        lines.append(
            f"| | {f['rows']:,} | {f['load_seconds']} | {f['rebuild_seconds']} "
            f"| {f['bytes_per_trigger']} ({f['definitions']}) | {f['steady_pass_seconds']} "
            f"| {f['changed_pass_seconds']} | {f['audit_slice_seconds']} | {f['audit_round_minutes']} "
            f"| {f['repair_cpu_s_per_minute']} ({f['repair_core_percent']}%) |"
        )
    if result.get("one_offs"):
        lines += [
            "",
            "| one-off mix (ours) | rows | of which one-offs | rebuild (s) | bytes/trigger (definitions) |",
            "|---|---:|---:|---:|---:|",
            *(
                f"| | {f['rows']:,} | {f['one_offs']:,} | {f['rebuild_seconds']} "
                f"| {f['bytes_per_trigger']} ({f['definitions']}) |"
                for f in result["one_offs"]
            ),
        ]
    spawned = result.get("spawned") or {"rows": []}
    if spawned["rows"]:
        lines += [
            "",
            "| spawned `celery beat` | entries | spawn → end of first tick (s) "
            "| of which lock → first tick end (s) | kill -9 → standby's first tick end (s) "
            "| lock TTL left at the kill (s) | target (lock timeout + 1 s) | standby fired |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for f in spawned["rows"]:
            fired = {True: "yes", False: "NO"}.get(f.get("failover_fired"), "-")  # type: ignore[call-overload]
            lines.append(
                f"| {f['scheduler']} | {f['entries']:,} | {f['spawn_to_first_tick_s']} "
                f"| {f.get('lock_to_first_tick_s', '-')} | {f['failover_s']} | {f['failover_lock_ttl_s']} "
                f"| {f['failover_target_s']} | {fired} |"
            )
        lines += [
            "",
            "Import alone (a fresh interpreter: Django set up, Celery beat, the app, both schedulers; spawn "
            "→ "
            f"exit, median of 3): {spawned['import_s']} s.",
        ]
    lines += ["", *[f"- {note}" for note in result["notes"]], ""]
    return "\n".join(lines)


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    return "n/a"


def sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


@contextlib.contextmanager
def environment() -> Iterator[tuple[dict[str, str], Path]]:
    """A private redis-server for the run (devstack starts and stops it), unless BENCH_REDIS_URL names one:
    on a shared Redis, other clients' commands (and their FLUSHDBs) end up in the figures."""
    stack = devstack()
    with (
        tempfile.TemporaryDirectory(prefix="bench-beat-") as tmp,
        stack.ensure_redis(os.environ.get("BENCH_REDIS_URL")) as redis_url,
    ):
        yield configure(redis_url, Path(tmp)), Path(tmp)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=sizes, default=[1000, 10_000, 100_000])
    parser.add_argument("--herds", type=sizes, default=[1000, 10_000])
    parser.add_argument("--reconcile", type=sizes, default=[1000, 10_000, 100_000])
    parser.add_argument("--one-offs", type=sizes, default=[100_000], help="memory of a half one-off fleet")
    parser.add_argument("--spawned", type=sizes, default=[10_000], help="takeover and failover, real beats")
    parser.add_argument(
        "--spawned-peers", type=lambda text: set(text.split(",")), default={"stock RedBeat", "ours"}
    )
    parser.add_argument("--stock-herd-limit", type=int, default=100_000, help="stock's largest herd")
    parser.add_argument("--fire-log", type=int, default=0, help="our herd of this size again, fire log on")
    args = parser.parse_args(argv)
    load_start = load_average()
    with environment() as (urls, workdir):
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        logging.getLogger().setLevel(logging.WARNING)  # no fire log: it is measured apart (--fire-log)
        bench = Bench(urls)
        result: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "schedulers": {}}
        for peer in (Stock(bench), Ours(bench)):
            rows = []
            for size in args.sizes:
                print(f"{peer.name}: {size:,} entries …", flush=True)
                herd = size in args.herds and (peer.name == "ours" or size <= args.stock_herd_limit)
                rows.append(measure_size(bench, peer, size, herd=herd))
                print(f"  {rows[-1]}", flush=True)
            result["schedulers"][peer.name] = rows
        logged = _herd_with_fire_log(bench, args.fire_log)
        result["reconcile"] = []
        for size in args.reconcile:
            print(f"reconcile: {size:,} rows …", flush=True)
            result["reconcile"].append(measure_reconcile(bench, size))
            print(f"  {result['reconcile'][-1]}", flush=True)
        result["one_offs"] = []
        for size in args.one_offs:
            print(f"one-off mix: {size:,} rows …", flush=True)
            result["one_offs"].append(measure_one_offs(bench, size))
            print(f"  {result['one_offs'][-1]}", flush=True)
        result["spawned"] = {"import_s": round(import_seconds(), 3) if args.spawned else None, "rows": []}
        for size in args.spawned:
            for peer in (Stock(bench), Ours(bench)):
                if peer.name not in args.spawned_peers:
                    continue
                print(f"spawned {peer.name}: {size:,} …", flush=True)
                figures = {"scheduler": peer.name, **measure_spawned(bench, peer, size, workdir)}
                result["spawned"]["rows"].append(figures)
                print(f"  {figures}", flush=True)
        redis_version = bench.redis.info("server")["redis_version"]
    result["host"] = {
        "cpus": os.cpu_count(),
        "load_start": load_start,
        "load_end": load_average(),
        "python": platform.python_version(),
        "redis": redis_version,
    }
    result["notes"] = [
        "Stock RedBeat extends its lock on every tick (one more round trip per idle tick); ours every "
        "lock_timeout/3.",
        "Stock publishes with send_task, one message and one task-sent event at a time (the project sets "
        "CELERY_TASK_SEND_SENT_EVENT); ours sends one Celery-built executions.fire_batch message per "
        "SCHEDULER_FIRE_BATCH_SIZE fires through one producer and no task-sent event; `published` counts "
        "fires either way.",
        "Herd figures are without the fire log; with its INFO line per published batch (to /dev/null) ours "
        f"took {logged}.",
        "Reconcile rows are real Trigger rows in a throwaway PostgreSQL database (loaded server-side), five "
        "cron shapes in three zones; the herd, idle and takeover figures use entries only, written in each "
        "scheduler's format. Steady repair per minute = the changed-since pass once per "
        "SCHEDULER_RECONCILE_SECONDS plus the audit at its budget (BENCH_AUDIT_BUDGET, default 0.02).",
        "Takeover (first table) is in-process: scheduler object, lock, first tick (ours: the repair of what "
        "changed since the watermark). The spawned table uses real `celery -A scheduler_project beat` "
        "processes, lock timeout REDBEAT_LOCK_TIMEOUT=30: the end of a first tick is ours's log marker "
        "`beat: first tick as leader done at <unix time>`, and for stock Celery's DEBUG `beat: Waking up` "
        "after RedBeat's `beat: Acquired lock` (millisecond log time). A kill -9 can never be followed "
        "sooner than the lock's TTL left at the kill; stock's standby polls the lock every loop interval (1 "
        "s) in beat_init, ours sleeps until the lock's expiry.",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"beat-{datetime.now(UTC):%Y-%m-%d}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"written: {stem.with_suffix('.json')} and .md")
    return 0


def _herd_with_fire_log(bench: Bench, size: int) -> str:
    """Our herd once more with the fire log at INFO (a line per published batch, to /dev/null), to show
    what the log costs."""
    if not size:
        return "n/a"
    fires = logging.getLogger("schedules.beat.fires")
    with open(os.devnull, "w") as sink:
        handler = logging.StreamHandler(sink)
        fires.addHandler(handler)
        fires.setLevel(logging.INFO)
        fires.propagate = False
        try:
            figures = measure_size(bench, Ours(bench), size, herd=True)
        finally:
            fires.removeHandler(handler)
            fires.setLevel(logging.NOTSET)
            fires.propagate = True
    return f"{figures['herd_seconds']} s for {size:,}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
