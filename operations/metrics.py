"""`GET /metrics`: the Prometheus exposition of the events `toolkit.metrics` writes, plus what is better read
at scrape time (trigger counts from the database, queue depths and the leader lock from Redis).

The writers live in the toolkit because beats and workers write them from inside the apps; this module reads
the apps, so it sits above them."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator, Mapping

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from toolkit.broker import BrokerLayout, queue_lengths
from toolkit.metrics import (
    ATTEMPTS,
    COUNTERS,
    HISTOGRAMS,
    SKIPPED,
    USAGE_TOKENS,
    Heartbeat,
    HistogramDef,
    as_text,
    beat_key,
    bucket_field,
    counters_key,
    histogram_key,
    lock_key,
    read_client,
)

logger = logging.getLogger(__name__)


def queue_bindings(client: redis.Redis) -> dict[tuple[str, str], str]:
    """(exchange, routing key) -> queue, for every queue a producer or consumer declared on a direct
    exchange: kombu keeps bindings in `_kombu.binding.<exchange>` sets of `routing_key<sep>pattern<sep>queue`.
    Celery's own fanout exchanges (remote control, events) are not work queues."""
    sep = BrokerLayout.of_app().sep
    found: dict[tuple[str, str], str] = {}
    for key in client.scan_iter(match="_kombu.binding.*", count=500):
        exchange = as_text(key).removeprefix("_kombu.binding.")
        if "pidbox" in exchange or exchange.startswith("celeryev"):
            continue
        for member in client.smembers(key):
            parts = as_text(member).split(sep, 2)
            if len(parts) == 3 and parts[2]:
                found[(exchange, parts[0])] = parts[2]
    return found


def known_queues(client: redis.Redis, bindings: Mapping[tuple[str, str], str] | None = None) -> list[str]:
    """The configured queues plus every queue declared on the broker."""
    from celery import current_app as app

    declared = queue_bindings(client) if bindings is None else bindings
    return sorted(set(app.amqp.queues) | set(declared.values()))


# --- The collector and the view ---------------------------------------------------------------------------


def _counter_families(raw: Mapping[str, str]) -> Iterator[Metric]:
    from executions.models import AttemptOutcome, SkipReason

    ended = [outcome for outcome in AttemptOutcome.values if outcome != AttemptOutcome.STARTED]
    known = {SKIPPED.name: SkipReason.values, ATTEMPTS.name: ended, USAGE_TOKENS.name: ["input", "output"]}
    for counter in COUNTERS:
        labels = [counter.label] if counter.label else []
        family = CounterMetricFamily(counter.name, counter.doc, labels=labels)
        if counter.label is None:
            family.add_metric([], float(raw.get(counter.name, 0)))
        else:
            head = f"{counter.name}|{counter.label}="
            values = {field[len(head) :]: float(n) for field, n in raw.items() if field.startswith(head)}
            for value in known.get(counter.name, ()):  # zeros too: a rate needs the series to exist first
                values.setdefault(value, 0.0)
            for value, count in sorted(values.items()):
                family.add_metric([value], count)
        yield family


def _histogram_family(histogram: HistogramDef, raw: Mapping[str, str]) -> Metric:
    cumulative, buckets = 0.0, []
    for bound in histogram.buckets:
        cumulative += float(raw.get(bucket_field(bound), 0))
        buckets.append((floatToGoString(bound), cumulative))
    return HistogramMetricFamily(
        histogram.name, histogram.doc, buckets=buckets, sum_value=float(raw.get("sum", 0))
    )


class SchedulerCollector:
    """Builds every family at scrape time: from the database (trigger counts) and from Redis (the shared
    counters and histograms, queue depths, the leader lock, the heartbeat). If Redis does not answer, the
    database figures are still served and `scheduler_redis_up` says why the rest is missing."""

    def collect(self) -> Iterator[Metric]:
        yield self._triggers()
        client = read_client()
        try:
            queues = known_queues(client)
            depths = queue_lengths(client, queues)
            with client.pipeline(transaction=False) as pipe:
                pipe.hgetall(counters_key())
                for histogram in HISTOGRAMS:
                    pipe.hgetall(histogram_key(histogram))
                pipe.exists(lock_key())
                pipe.hgetall(beat_key())
                counters, *hists, leader, beat = pipe.execute()
        except redis.RedisError as exc:
            logger.warning("metrics: Redis unavailable at scrape (%s: %s)", type(exc).__name__, exc)
            yield GaugeMetricFamily("scheduler_redis_up", "Whether Redis answered this scrape.", value=0)
            return
        yield GaugeMetricFamily("scheduler_redis_up", "Whether Redis answered this scrape.", value=1)
        yield from _counter_families({as_text(k): as_text(v) for k, v in counters.items()})
        for histogram, raw in zip(HISTOGRAMS, hists, strict=True):
            yield _histogram_family(histogram, {as_text(k): as_text(v) for k, v in raw.items()})
        depth = GaugeMetricFamily(
            "scheduler_queue_depth", "Messages waiting in a Celery queue (all priorities).", labels=["queue"]
        )
        for queue, per_priority in depths.items():
            depth.add_metric([queue], sum(per_priority.values()))
        yield depth
        yield GaugeMetricFamily(
            "scheduler_beat_is_leader", "1 while a beat holds the RedBeat leader lock.", value=int(leader)
        )
        heartbeat = Heartbeat.parse(beat)
        if heartbeat is not None:
            yield GaugeMetricFamily(
                "scheduler_beat_tick_seconds",
                "Duration of the leader's last tick.",
                value=heartbeat.tick_seconds,
            )
            yield GaugeMetricFamily(
                "scheduler_beat_heartbeat_age_seconds",
                "Seconds since the leader's last tick ended.",
                value=heartbeat.age(),
            )

    @staticmethod
    def _triggers() -> Metric:
        from django.db.models import Count

        from schedules.models import Trigger, TriggerStatus

        counted = dict(
            Trigger.objects.live()
            .order_by()
            .values_list("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        family = GaugeMetricFamily(
            "scheduler_triggers", "Triggers (not deleted), by status.", labels=["status"]
        )
        for status in TriggerStatus.values:
            family.add_metric([status], counted.get(status, 0))
        return family


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(SchedulerCollector())


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """`GET /metrics`, outside the API's authentication: Prometheus sends a static bearer token
    (`METRICS_TOKEN`, optional), not a user's."""
    if not _authorized(request):
        return HttpResponse(
            "metrics need Authorization: Bearer <METRICS_TOKEN>\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
