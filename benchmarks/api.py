"""API and admin benchmark at size (`make bench-api`): p50/p95 of every list, filter, search, deep page,
detail and create, over gunicorn as the production Procfile starts it, on PostgreSQL, with one owner holding
most of `--triggers` triggers and `--executions` executions.

Seeding is server-side (`INSERT … SELECT … FROM generate_series`, every column from the model's own
defaults except the few varied per row), with the secondary indexes dropped during the load and rebuilt
after it, then VACUUM ANALYZE: a million triggers and ten million runs load in minutes. Each endpoint is
warmed up, then requested `--requests` times one after another over a keep-alive connection; the figure
beside them is the ceiling measured in the same run: an authenticated API request that reads no table
(`/api/v1/presets/`), i.e. what the stack itself costs. Throttles are off, as they would only measure Redis.

PostgreSQL: a throwaway database `bench_api` on the server BENCH_DATABASE_URL names (default
postgres://postgres@127.0.0.1:5432/postgres), dropped and created for the run; `--keep` reuses a seeded one
(same sizes) to measure again without reseeding. Redis: REDIS_URL if it answers, else a private
redis-server, on BENCH_REDIS_DB (default 13). Figures are printed and written to
benchmarks/results/api-<date>.md and .json.

    python benchmarks/api.py [--triggers 1000000] [--executions 10000000] [--requests 40] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from fire_path import configure, fresh_database  # noqa: E402 - beside this script
from harness import devstack, with_db  # noqa: E402

DATABASE = "bench_api"
TARGET_MS = 50.0
ADMIN_TARGET_MS = 300.0
#: Varied per row (g = 1..n); every other column takes the model's default. Triggers get deterministic ids
#: so runs can point at them without a join during the load.
TRIGGER_COLUMNS = {
    "id": "md5('t' || g)::uuid",
    "owner_id": "CASE WHEN g % 10 = 0 THEN %(other)s ELSE %(owner)s END",
    "name": "CASE WHEN g % 100 = 0 THEN 'nightly-' ELSE 'job-' END || g",
    "workflow_id": "'wf-' || (g % 1000)",
    "cron_expression": "'0 9 * * *'",
    "status": "CASE WHEN g % 40 = 7 THEN 'paused' ELSE 'active' END",
    "next_run_at": "CASE WHEN g % 40 = 7 THEN NULL ELSE %(now)s + (g % 86400) * interval '1 second' END",
    "last_run_at": "CASE WHEN g % 3 = 0 THEN NULL ELSE %(now)s - (g % 5000) * interval '1 second' END",
    "run_count": "g % 1000",
    "created_at": "%(now)s - g * interval '1 second'",
    "updated_at": "%(now)s - g * interval '1 second'",
}
EXECUTION_COLUMNS = {
    "id": "md5('e' || g)::uuid",
    "trigger_id": "md5('t' || (1 + g % %(spread)s))::uuid",
    "origin": "CASE WHEN g % 97 = 0 THEN 'manual' ELSE 'schedule' END",
    "slot": "CASE WHEN g % 97 = 0 THEN NULL ELSE %(now)s - g * interval '1 second' END",
    "status": "CASE WHEN g % 31 = 0 THEN 'failed' ELSE 'succeeded' END",
    "run_id": "'run-' || g",
    "created_at": "%(now)s - g * interval '1 second'",
    "updated_at": "%(now)s - g * interval '1 second'",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed_table(cursor: Any, model: Any, varied: dict[str, str], n: int, params: dict[str, Any]) -> float:
    """Load n rows into the model's table server-side; returns seconds (rebuilding indexes included)."""
    from django.db import connection

    started = time.monotonic()
    table = model._meta.db_table
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)",
        [table, table],
    )
    indexes = cursor.fetchall()
    for name, _definition in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    prototype = model()
    columns, expressions, values = [], [], dict(params)
    for field in model._meta.concrete_fields:
        columns.append(f'"{field.column}"')
        if field.column in varied:
            expressions.append(varied[field.column].replace(" % ", " %% "))
            continue
        value = field.get_db_prep_save(getattr(prototype, field.attname), connection)
        if field.get_internal_type() == "JSONField":
            value = json.dumps(getattr(prototype, field.attname))
        key = f"d_{field.column}"
        values[key] = value
        cast = "::jsonb" if field.get_internal_type() == "JSONField" else ""
        expressions.append(f"%({key})s{cast}")
    cursor.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(expressions)} "  # noqa: S608
        f"FROM generate_series(1, {int(n)}) AS g",
        values,
    )
    for _name, definition in indexes:
        cursor.execute(definition)
    return time.monotonic() - started


def seed(n_triggers: int, n_executions: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from executions.models import Execution
    from schedules.models import Trigger

    users = get_user_model()
    owner = users.objects.create_user(username="bench", password=None)
    other = users.objects.create_user(username="other", password=None)
    users.objects.create_superuser(username="ops", password=None, email="ops@example.com")
    params = {
        "owner": owner.pk,
        "other": other.pk,
        "now": datetime.now(UTC),
        "spread": max(1, n_triggers // 10),
    }
    figures: dict[str, Any] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # Django's FKs are deferred: check per statement
        figures["triggers_s"] = round(seed_table(cursor, Trigger, TRIGGER_COLUMNS, n_triggers, params), 1)
        print(f"  {n_triggers:,} triggers in {figures['triggers_s']} s", flush=True)
        figures["executions_s"] = round(
            seed_table(cursor, Execution, EXECUTION_COLUMNS, n_executions, params), 1
        )
        print(f"  {n_executions:,} executions in {figures['executions_s']} s", flush=True)
    started = time.monotonic()
    with connection.cursor() as cursor:
        for model in (Trigger, Execution):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
    figures["analyze_s"] = round(time.monotonic() - started, 1)
    return figures


@contextlib.contextmanager
def web(env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen]:
    """gunicorn with the production Procfile's `web` command, bound to 127.0.0.1."""
    command = next(
        line.split(":", 1)[1].strip()
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("web:")
    )
    child_env = {**os.environ, **env, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    child_env.update({"WEB_BIND": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "2"})
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", command], cwd=ROOT, env=child_env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                time.sleep(0.2)
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


class Client:
    """One keep-alive connection; every request must answer `expect` (a slow 500 is not a fast page)."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port, self.headers = port, headers
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: Any = None, expect: int = 200) -> tuple[float, Any]:
        payload = json.dumps(body) if body is not None else None
        headers = {**self.headers, **({"Content-Type": "application/json"} if payload else {})}
        started = time.perf_counter()
        self.conn.request(method, path, body=payload, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != expect:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        return elapsed, json.loads(data) if is_json else None

    def measure(self, method: str, path: str, requests: int, body: Any = None, expect: int = 200) -> dict:
        for _ in range(3):
            self.request(method, path, body(0) if callable(body) else body, expect)
        samples = [
            self.request(method, path, body(i + 1) if callable(body) else body, expect)[0]
            for i in range(requests)
        ]
        ordered = sorted(samples)
        return {
            "p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1),
        }


def deep_cursor(order: list[tuple[str, bool]], queryset: Any, depth: int) -> str:
    """The cursor a client holds after paging `depth` rows in (found once with OFFSET, then reused)."""
    from toolkit.api import _sorted, encode_cursor  # the paginator's own ordering, NULLs placed alike

    row = _sorted(queryset, order)[depth]
    return encode_cursor(order, [getattr(row, name) for name, _ in order])


def endpoints(n_triggers: int) -> tuple[list[tuple[str, str, str, Any, int]], list[tuple[str, str]]]:
    from django.contrib.auth import get_user_model

    from executions.models import Execution
    from schedules.models import Trigger

    owner = get_user_model().objects.get(username="bench")
    mine = Trigger.objects.filter(owner=owner, deleted_at__isnull=True)
    trigger = mine.order_by("created_at").first()
    assert trigger is not None
    runs = Execution.objects.filter(trigger__owner=owner)
    depth = min(500_000, mine.count() // 2)
    deep_triggers = deep_cursor([("next_run_at", False), ("id", False)], mine, depth)
    deep_runs = deep_cursor([("created_at", True), ("id", True)], runs, min(5_000_000, runs.count() // 2))

    def create(i: int) -> dict[str, Any]:
        return {
            "name": f"bench-new-{time.time_ns()}-{i}",
            "workflow_id": "wf-new",
            "cron_expression": "0 9 * * *",
        }

    api = [
        ("trigger list", "GET", "/api/v1/triggers/", None, 200),
        ("trigger list, limit=1", "GET", "/api/v1/triggers/?limit=1", None, 200),
        ("trigger list, ordering=next_run_at", "GET", "/api/v1/triggers/?ordering=next_run_at", None, 200),
        ("trigger list, ordering=-name", "GET", "/api/v1/triggers/?ordering=-name", None, 200),
        ("trigger list, status=paused", "GET", "/api/v1/triggers/?status=paused", None, 200),
        ("trigger list, workflow_id=wf-7", "GET", "/api/v1/triggers/?workflow_id=wf-7", None, 200),
        ("trigger search", "GET", "/api/v1/triggers/?search=nightly-12", None, 200),
        (f"trigger deep page (cursor at row {depth:,})", "GET",
         f"/api/v1/triggers/?ordering=next_run_at&cursor={deep_triggers}", None, 200),
        ("trigger detail", "GET", f"/api/v1/triggers/{trigger.pk}/", None, 200),
        ("trigger stats", "GET", f"/api/v1/triggers/{trigger.pk}/stats/", None, 200),
        ("trigger create", "POST", "/api/v1/triggers/", create, 201),
        ("execution list", "GET", "/api/v1/executions/", None, 200),
        ("execution list, limit=1", "GET", "/api/v1/executions/?limit=1", None, 200),
        ("execution list, status=failed", "GET", "/api/v1/executions/?status=failed", None, 200),
        ("execution list, origin=manual", "GET", "/api/v1/executions/?origin=manual", None, 200),
        ("execution deep page (cursor)", "GET", f"/api/v1/executions/?cursor={deep_runs}", None, 200),
        ("a trigger's executions", "GET", f"/api/v1/triggers/{trigger.pk}/executions/", None, 200),
        ("legacy ?offset=50000", "GET", "/api/v1/triggers/?offset=50000", None, 200),
    ]  # fmt: skip
    admin = [
        ("admin trigger changelist", "/admin/schedules/trigger/"),
        ("admin trigger changelist, paused", "/admin/schedules/trigger/?status__exact=paused"),
        ("admin trigger search", "/admin/schedules/trigger/?q=nightly-12"),
        ("admin execution changelist", "/admin/executions/execution/"),
        ("admin execution changelist, failed", "/admin/executions/execution/?status__exact=failed"),
    ]
    return api, admin


def tokens() -> dict[str, str]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client as DjangoClient
    from rest_framework.authtoken.models import Token

    users = get_user_model()
    token, _ = Token.objects.get_or_create(user=users.objects.get(username="bench"))
    browser = DjangoClient()
    browser.force_login(users.objects.get(username="ops"))
    return {"token": token.key, "session": browser.cookies[settings.SESSION_COOKIE_NAME].value}


def write(report: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"api-{datetime.now(UTC):%Y-%m-%d}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    ceiling = report["ceiling"]
    lines = [
        f"# API benchmark {report['started']}",
        "",
        f"{report['triggers']:,} triggers and {report['executions']:,} executions on PostgreSQL (90% of "
        f"them one owner's, whose token makes every request), gunicorn from the Procfile (2 workers), "
        f"throttles off, "
        f"{report['requests']} sequential requests each after 3 warm-ups. Host: {report['host']}. Seeded in "
        f"{report['seed']}.",
        "",
        f"Ceiling, same run (an authenticated request reading no table, `/api/v1/presets/`): "
        f"p50 {ceiling['p50_ms']} ms, p95 {ceiling['p95_ms']} ms.",
        "",
        "| endpoint | p50 (ms) | p95 (ms) | target p95 | met |",
        "|---|---:|---:|---:|---|",
    ]
    for row in report["results"]:
        target = row["target_ms"]
        met = "—" if target is None else ("yes" if row["p95_ms"] < target else "**no**")
        lines.append(f"| {row['name']} | {row['p50_ms']} | {row['p95_ms']} | {target or 'legacy'} | {met} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--triggers", type=int, default=1_000_000)
    parser.add_argument("--executions", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="reuse the seeded database of an earlier run")
    args = parser.parse_args()
    stack = devstack()
    admin_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with stack.ensure_redis(os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL")) as redis_url:
        from urllib.parse import urlparse, urlunparse

        database_url = (
            urlunparse(urlparse(admin_url)._replace(path=f"/{DATABASE}"))
            if args.keep
            else fresh_database(admin_url, DATABASE)
        )
        env = configure(with_db(redis_url, int(os.environ.get("BENCH_REDIS_DB", "13"))), database_url)
        env.update(
            {"API_THROTTLE_USER": "", "API_THROTTLE_AUTH": "", "SCHEDULER_MAX_TRIGGERS_PER_OWNER": "0"}
        )
        os.environ.update(env)
        import django

        django.setup()
        seed_figures: dict[str, Any] = {"reused": True}
        if not args.keep:
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
            print(f"seeding {args.triggers:,} triggers and {args.executions:,} executions …", flush=True)
            seed_figures = seed(args.triggers, args.executions)
        api, admin = endpoints(args.triggers)
        credentials = tokens()
        port = free_port()
        results = []
        with web(env, port, Path(tempfile.gettempdir()) / "bench-api-web.log"):
            client = Client(port, {"Authorization": f"Token {credentials['token']}"})
            ceiling = client.measure("GET", "/api/v1/presets/", args.requests)
            print(f"ceiling: {ceiling}", flush=True)
            for name, method, path, body, expect in api:
                figures = client.measure(method, path, args.requests, body, expect)
                target = None if name.startswith("legacy") else TARGET_MS
                results.append({"name": name, "path": path[:120], **figures, "target_ms": target})
                print(f"{name}: {figures}", flush=True)
            browser = Client(port, {"Cookie": f"sessionid={credentials['session']}"})
            for name, path in admin:
                figures = browser.measure("GET", path, max(10, args.requests // 4))
                results.append({"name": name, "path": path, **figures, "target_ms": ADMIN_TARGET_MS})
                print(f"{name}: {figures}", flush=True)
    report = {
        "started": started,
        "triggers": args.triggers,
        "executions": args.executions,
        "requests": args.requests,
        "seed": ", ".join(f"{k} {v}" for k, v in seed_figures.items()),
        "host": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}",
        "ceiling": ceiling,
        "results": results,
    }
    stem = write(report)
    print(stem.with_suffix(".md").read_text())
    return 0 if all(r["target_ms"] is None or r["p95_ms"] < r["target_ms"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
