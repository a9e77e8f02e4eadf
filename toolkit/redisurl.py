"""Redis URLs as the fleet accepts them: plain `redis://` / `rediss://`, or Redis Sentinel in kombu's form,

    sentinel://[:password@]host:port[/db][;sentinel://[:password@]host:port[/db]]...

one address per Sentinel, the master's name in REDIS_SENTINEL_MASTER (kombu takes it from the broker's
`master_name` transport option, set from the same setting). The broker (kombu), RedBeat and our own clients
(metrics, health, the broker marker) each reach Redis through their own library; this module turns one URL
into what each of them wants, so a Sentinel deployment changes two environment variables and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SCHEME = "sentinel://"


def is_sentinel(url: str) -> bool:
    return url.startswith(SCHEME)


@dataclass(frozen=True)
class SentinelURL:
    sentinels: list[tuple[str, int]]
    password: str | None
    db: int

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        """Every part of a `;`-separated list names one Sentinel; password and db come from the first part
        that has them (kombu reads them the same way)."""
        sentinels, password, db = [], None, 0
        for part in url.split(";"):
            part = part.strip()
            if not part:
                continue
            if not is_sentinel(part):
                raise ValueError(f"not a sentinel:// address: {part!r}")
            split = urlsplit(part)
            if not split.hostname:
                raise ValueError(f"a sentinel:// address without a host: {part!r}")
            sentinels.append((split.hostname, split.port or 26379))
            if password is None and split.password:
                password = unquote(split.password)
            path = split.path.strip("/")
            if path and not db:
                db = int(path)
        if not sentinels:
            raise ValueError("no sentinel:// address")
        return cls(sentinels, password, db)


def connect(url: str, *, master: str, **options: Any) -> redis.Redis:
    """A client for `url`: through the Sentinels to the current master for a sentinel:// URL (it follows a
    failover on the next connection), else `redis.Redis.from_url`. Options are redis-py's (timeouts...)."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    parsed = SentinelURL.parse(url)
    timeouts = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=timeouts, **options)
    return sentinel.master_for(master, db=parsed.db, password=parsed.password)


def redbeat_config(url: str, *, master: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`redbeat_redis_url` and `redbeat_redis_options` for `url`. RedBeat's Sentinel support wants a
    `redis-sentinel://` URL and the Sentinels, master name, db and password as options."""
    if not is_sentinel(url):
        return url, dict(options)
    parsed = SentinelURL.parse(url)
    timeouts = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
    return "redis-sentinel://", {
        **options,
        "sentinels": parsed.sentinels,
        "service_name": master,
        "db": parsed.db,
        "password": parsed.password,
        "sentinel_kwargs": timeouts,
    }
