"""The Redis fallback chain: configured URL, then a local Redis, then an embedded server."""

from __future__ import annotations

import redis

from shared.embedded_redis import EmbeddedRedis, broker_url, redis_answers


def test_the_session_redis_answers_and_round_trips(redis_url: str) -> None:
    connection = redis.Redis.from_url(redis_url)
    connection.set("kpromote:test:ping", "pong", ex=10)
    assert connection.get("kpromote:test:ping") == b"pong"


def test_a_configured_url_is_used_as_given() -> None:
    with broker_url("redis://example.invalid:6390/3") as url:
        assert url == "redis://example.invalid:6390/3"


def test_embedded_redis_serves_and_restarts_on_the_same_port() -> None:
    with EmbeddedRedis() as embedded:
        client = redis.Redis.from_url(embedded.url)
        client.set("k", "v")
        port = embedded.port
        embedded.restart()
        assert embedded.port == port and redis_answers(embedded.url)
        assert redis.Redis.from_url(embedded.url).get("k") is None, "nothing is persisted across a restart"
    assert not redis_answers(f"redis://127.0.0.1:{port}/0")
