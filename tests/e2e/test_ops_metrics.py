"""`/metrics` after real fires: a real beat publishes `executions.fire` for an every-second trigger, a real
worker records and launches the runs, and the web process's scrape shows what those two other processes
counted — each figure equal to what the beat's log and the database say happened."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from executions.models import Attempt, Execution, ExecutionStatus
from schedules import services
from tests.e2e import test_beat_fleet as beat_fleet
from tests.e2e.test_beat_fleet import published, start_beat
from tests.e2e.test_executions_launch import start_worker
from tests.support.procs import Fleet, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.integration.urls_ops"),
]
fresh_logs = beat_fleet.fresh_logs  # autouse: empty logs first, since waits and checks read them


def scrape(client) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Samples by name, then by sorted labels."""
    response = client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_a_real_fire_is_counted_across_processes(processes: Fleet, redis_client, client, user) -> None:
    start_worker(processes, "worker", concurrency=2)
    trigger = services.trigger_register(
        owner=user, name="hello", workflow_id="hello", cron_expression="* * * * * *", overlap_policy="allow"
    )
    start_beat(processes, "beat")
    wait_for(lambda: len(published(processes, "beat")) >= 3, timeout=30, what="three fires")
    processes.stop("beat")
    wait_for(
        lambda: (
            not Execution.objects.exclude(status__in=[ExecutionStatus.SUCCEEDED, ExecutionStatus.SKIPPED])
            .filter(trigger=trigger)
            .exists()
        ),
        timeout=30,
        what="every recorded run to end",
    )
    runs = Execution.objects.filter(trigger=trigger)

    samples = scrape(client)

    def one(name: str, **labels: str) -> float:
        return samples[name][tuple(sorted(labels.items()))]

    fires = published(processes, "beat")
    assert one("scheduler_schedules_due_total") == len(fires) >= 3, "counted by the beat"
    assert one("scheduler_runs_emitted_total") == runs.exclude(status=ExecutionStatus.SKIPPED).count()
    assert one("scheduler_run_attempts_total", outcome="succeeded") == Attempt.objects.count()
    assert one("scheduler_runs_failed_launch_total") == 0
    scheduled = runs.filter(origin="schedule").count()
    assert one("scheduler_fire_lateness_seconds_count") == scheduled, "every fire is a lateness sample"
    assert one("scheduler_fire_lateness_seconds_bucket", le="5.0") == scheduled, "none later than 5 s"
    assert one("scheduler_run_duration_seconds_count") == runs.filter(duration_ms__isnull=False).count()
    assert one("scheduler_triggers", status="active") == 1
    assert one("scheduler_queue_depth", queue="celery") == 0
    assert one("scheduler_beat_is_leader") == 0, "the stopped beat released the lock"
    assert 0 < one("scheduler_beat_tick_seconds") < 1
    assert set(samples["scheduler_runs_skipped_total"]) >= {(("reason", "overlap"),)}
    lateness = one("scheduler_fire_lateness_seconds_sum") / scheduled
    print(f"\n{len(fires)} fires, {scheduled} scheduled runs, mean lateness {lateness * 1000:.0f} ms")
