"""Reading what the real broker holds (kombu's Redis layout: one list per queue and priority step)."""

from __future__ import annotations

import json
from typing import Any

import redis


def launch_messages(client: redis.Redis) -> list[dict[str, Any]]:
    """The headers of every message waiting in the launch queue's lists (task name, task id, reprs)."""
    found = []
    for queue in client.keys("launch*"):
        if client.type(queue) != b"list":
            continue
        for raw in client.lrange(queue, 0, -1):
            found.append(json.loads(raw)["headers"])
    return found
