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
the steady changed-since pass, one audit slice, and from them the leader's steady repair cost per minute.

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
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import math
import os
import platform
import statistics
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
    peer.write(size, due=None)
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
        # Far enough ahead for the writes (and a warm-up tick) to finish before the herd falls due.
        due = (datetime.now(UTC) + timedelta(seconds=3 + size / 10_000)).replace(microsecond=0)
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


def measure_reconcile(bench: Bench, size: int) -> dict[str, Any]:
    """Database rows -> empty Redis (and what that costs in memory), then what the leader pays at rest."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from schedules.models import Trigger

    bench.flush()
    Trigger.objects.all().delete()
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
    parser.add_argument("--fire-log", action="store_true", help="our largest herd again with the fire log on")
    args = parser.parse_args(argv)
    load_start = load_average()
    with environment() as (urls, _workdir):
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        logging.getLogger().setLevel(logging.WARNING)  # no per-fire INFO line: it is measured apart below
        bench = Bench(urls)
        result: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "schedulers": {}}
        for peer in (Stock(bench), Ours(bench)):
            rows = []
            for size in args.sizes:
                print(f"{peer.name}: {size:,} entries …", flush=True)
                rows.append(measure_size(bench, peer, size, herd=size in args.herds))
                print(f"  {rows[-1]}", flush=True)
            result["schedulers"][peer.name] = rows
        logged = _herd_with_fire_log(bench, max(args.herds, default=0) if args.fire_log else 0)
        result["reconcile"] = []
        for size in args.reconcile:
            print(f"reconcile: {size:,} rows …", flush=True)
            result["reconcile"].append(measure_reconcile(bench, size))
            print(f"  {result['reconcile'][-1]}", flush=True)
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
        f"Herd figures are without the per-fire INFO log line; with it (to /dev/null) ours took {logged}.",
        "Reconcile rows are real Trigger rows in a throwaway PostgreSQL database (loaded server-side), five "
        "cron shapes in three zones; the herd, idle and takeover figures use entries only, written in each "
        "scheduler's format. Steady repair per minute = the changed-since pass once per "
        "SCHEDULER_RECONCILE_SECONDS plus the audit at its budget (BENCH_AUDIT_BUDGET, default 0.02).",
        "Takeover is in-process: scheduler object, lock, first tick (ours: the repair of what changed since "
        "the watermark); a real `celery beat` adds its interpreter and Django start-up.",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"beat-{datetime.now(UTC):%Y-%m-%d}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"written: {stem.with_suffix('.json')} and .md")
    return 0


def _herd_with_fire_log(bench: Bench, size: int) -> str:
    """Our herd once more with the per-fire INFO line on (to /dev/null), to show what the log costs."""
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
