"""`/metrics` against the real Redis and database: what the writers add is what a scrape reads, from any
process; histograms are cumulative; scrape-time gauges (triggers, queue depth, leader, last tick) follow the
database and Redis; the optional bearer token; and a Redis outage costs data points, never a fire."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from scheduler_project.celery import app
from schedules import services
from tests.support.procs import ROOT, free_port
from toolkit import clock, metrics

pytestmark = [pytest.mark.integration, pytest.mark.django_db, pytest.mark.urls("tests.integration.urls_ops")]


def scrape(client: Client, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (sample name, sorted labels)."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def run(status: str = "pending", origin: str = "schedule", late: float = 0.0, **fields) -> SimpleNamespace:
    """An execution as the writers see it (they only read these attributes)."""
    created = clock.now()
    values = {"skip_reason": "", "fire_at": created - timedelta(seconds=late), "created_at": created}
    return SimpleNamespace(status=status, origin=origin, **{**values, **fields})


def ended(**fields) -> SimpleNamespace:
    """A run's end as `runs_finished` reads it: its duration and the usage it reported."""
    values = {
        "duration_ms": None,
        "credits_used": None,
        "input_tokens": None,
        "output_tokens": None,
        "cost": None,
    }
    return SimpleNamespace(**{**values, **fields})


def test_every_metric_is_exposed_with_its_labels_before_anything_happened(client, redis_client) -> None:
    samples = scrape(client)
    names = {name for name, _labels in samples}
    assert {
        "scheduler_triggers",
        "scheduler_schedules_due_total",
        "scheduler_runs_emitted_total",
        "scheduler_runs_skipped_total",
        "scheduler_runs_failed_launch_total",
        "scheduler_run_attempts_total",
        "scheduler_fire_lateness_seconds_bucket",
        "scheduler_fire_lateness_seconds_count",
        "scheduler_fire_lateness_seconds_sum",
        "scheduler_run_duration_seconds_bucket",
        "scheduler_queue_depth",
        "scheduler_beat_is_leader",
        "scheduler_redis_up",
        "scheduler_usage_credits_total",
        "scheduler_usage_tokens_total",
        "scheduler_usage_cost_total",
    } <= names
    assert samples[("scheduler_runs_skipped_total", (("reason", "overlap"),))] == 0
    assert samples[("scheduler_run_attempts_total", (("outcome", "retryable"),))] == 0
    assert samples[("scheduler_queue_depth", (("queue", "celery"),))] == 0
    assert samples[("scheduler_beat_is_leader", ())] == 0


def test_writers_add_up_and_a_scrape_reads_them(
    client, redis_client, django_capture_on_commit_callbacks
) -> None:
    metrics.record_due(3)
    with django_capture_on_commit_callbacks(execute=True):
        metrics.runs_recorded(
            [
                run(late=0.003),
                run(late=0.2, origin="tick"),
                run(status="skipped", skip_reason="overlap", late=7),
                run(origin="catchup", late=3000),  # late by design: not a lateness sample
                run(origin="manual", fire_at=None),
            ]
        )
        metrics.attempts_recorded(["retryable", "retryable", "succeeded"])
        metrics.attempts_recorded(["failed", "timed_out"])
        metrics.runs_finished([ended(duration_ms=1500)])
        metrics.runs_finished([ended(duration_ms=None)])  # cancelled before it ran: no duration
        metrics.runs_finished(
            [
                ended(
                    credits_used=Decimal("2.5"), input_tokens=1200, output_tokens=300, cost=Decimal("0.0081")
                ),
                ended(credits_used=Decimal("1"), input_tokens=800),
            ]
        )
        metrics.runs_skipped(["credits_exhausted"])
        assert scrape(client)[("scheduler_run_duration_seconds_count", ())] == 0, (
            "an end counts once committed"
        )

    samples = scrape(client)
    assert samples[("scheduler_schedules_due_total", ())] == 3
    assert samples[("scheduler_runs_emitted_total", ())] == 4
    assert samples[("scheduler_runs_skipped_total", (("reason", "overlap"),))] == 1
    assert samples[("scheduler_run_attempts_total", (("outcome", "retryable"),))] == 2
    assert samples[("scheduler_run_attempts_total", (("outcome", "succeeded"),))] == 1
    assert samples[("scheduler_runs_failed_launch_total", ())] == 2, "failed and timed_out attempts are final"

    def bucket(name: str, le: str) -> float:
        return samples[(f"{name}_bucket", (("le", le),))]

    lateness = "scheduler_fire_lateness_seconds"
    assert samples[(f"{lateness}_count", ())] == 3
    assert samples[(f"{lateness}_sum", ())] == pytest.approx(7.203, abs=0.01)
    assert [bucket(lateness, le) for le in ("0.005", "0.1", "0.25", "5.0", "10.0", "+Inf")] == [
        1,
        1,
        2,
        2,
        3,
        3,
    ]
    duration = "scheduler_run_duration_seconds"
    assert samples[(f"{duration}_count", ())] == 1
    assert (bucket(duration, "1.0"), bucket(duration, "2.5"), bucket(duration, "+Inf")) == (0, 1, 1)
    assert samples[("scheduler_runs_with_usage_total", ())] == 2
    assert samples[("scheduler_usage_credits_total", ())] == pytest.approx(3.5)
    assert samples[("scheduler_usage_cost_total", ())] == pytest.approx(0.0081)
    assert samples[("scheduler_usage_tokens_total", (("kind", "input"),))] == 2000
    assert samples[("scheduler_usage_tokens_total", (("kind", "output"),))] == 300
    assert samples[("scheduler_runs_skipped_total", (("reason", "credits_exhausted"),))] == 1


def test_counts_from_another_process_add_to_the_same_series(client, redis_client) -> None:
    """What `PROMETHEUS_MULTIPROC_DIR` cannot do across containers: the counters live in Redis."""
    metrics.record_due(2)
    code = "import django; django.setup(); from toolkit import metrics; metrics.record_due(5)"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "scheduler_project.settings"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert scrape(client)[("scheduler_schedules_due_total", ())] == 7


def test_scrape_time_gauges_follow_the_database_and_redis(client, redis_client, user) -> None:
    keep = services.trigger_register(owner=user, name="a", workflow_id="wf", cron_expression="0 9 * * *")
    services.trigger_register(owner=user, name="b", workflow_id="wf", cron_expression="0 9 * * *")
    paused = services.trigger_register(owner=user, name="c", workflow_id="wf", cron_expression="0 9 * * *")
    services.trigger_pause(trigger=paused)
    services.trigger_delete(trigger=keep)
    for priority, count in ((0, 2), (6, 3), (9, 1)):
        for _ in range(count):
            app.send_task("ops.noop", priority=priority)
    redis_client.set(app.conf.redbeat_lock_key, "token", px=5000)
    metrics.beat_heartbeat(0.0123)

    samples = scrape(client)
    assert samples[("scheduler_triggers", (("status", "active"),))] == 1, "deleted triggers are not counted"
    assert samples[("scheduler_triggers", (("status", "paused"),))] == 1
    assert samples[("scheduler_triggers", (("status", "completed"),))] == 0
    assert samples[("scheduler_queue_depth", (("queue", "celery"),))] == 6, "every priority list counts"
    assert samples[("scheduler_beat_is_leader", ())] == 1
    assert samples[("scheduler_beat_tick_seconds", ())] == pytest.approx(0.0123)
    assert 0 <= samples[("scheduler_beat_heartbeat_age_seconds", ())] < 5


def test_the_metrics_token_is_required_when_set(client, redis_client, settings) -> None:
    settings.METRICS_TOKEN = "scrape-token-123"
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401
    assert wrong["WWW-Authenticate"].startswith("Bearer")
    assert scrape(client, HTTP_AUTHORIZATION="Bearer scrape-token-123")


def test_redis_down_serves_the_database_figures_and_says_so(client, settings, user) -> None:
    services.trigger_register(owner=user, name="a", workflow_id="wf", cron_expression="0 9 * * *")
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    samples = scrape(client)
    assert samples[("scheduler_redis_up", ())] == 0
    assert samples[("scheduler_triggers", (("status", "active"),))] == 1
    assert ("scheduler_queue_depth", (("queue", "celery"),)) not in samples


def test_a_redis_outage_never_breaks_the_caller(settings) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    metrics.record_due(1)
    metrics.runs_recorded([run()])
    metrics.attempts_recorded(["succeeded"])
    metrics.beat_heartbeat(0.01)
    assert time.monotonic() - started < 3, "each write gives up within its sub-second timeout"
