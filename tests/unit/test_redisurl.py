"""Sentinel URLs (kombu's form) turned into what RedBeat and redis-py want."""

from __future__ import annotations

import pytest

from toolkit import redisurl


def test_every_part_names_a_sentinel_and_the_first_gives_password_and_db() -> None:
    parsed = redisurl.SentinelURL.parse("sentinel://:s%40cret@10.0.0.1:26380/2;sentinel://10.0.0.2")
    assert parsed == redisurl.SentinelURL([("10.0.0.1", 26380), ("10.0.0.2", 26379)], "s@cret", 2)


@pytest.mark.parametrize("url", ["", "sentinel://", "redis://h:1;sentinel://h:2"])
def test_malformed_sentinel_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="sentinel"):
        redisurl.SentinelURL.parse(url)


def test_redbeat_gets_its_own_sentinel_configuration() -> None:
    url, options = redisurl.redbeat_config(
        "sentinel://h1:26379/3;sentinel://h2:26379", master="main", options={"socket_timeout": 10}
    )
    assert url == "redis-sentinel://"
    assert options == {
        "socket_timeout": 10,
        "sentinels": [("h1", 26379), ("h2", 26379)],
        "service_name": "main",
        "db": 3,
        "password": None,
        "sentinel_kwargs": {"socket_timeout": 10},
    }
    assert redisurl.redbeat_config("redis://h:6379/0", master="main", options={}) == ("redis://h:6379/0", {})
