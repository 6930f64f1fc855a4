"""A worker's progress writes sent behind: in order, together, once per task at the latest, none lost
when Redis refuses a flush; the watcher's and the CLI's sent at once."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from shared.models import NamespacePhase
from shared.progress import Progress
from shared.progress_writes import ProgressWrites

UNUSED_PORT_URL = "redis://127.0.0.1:1/0"


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def progress(client: redis.Redis, writes: ProgressWrites) -> Progress:
    return Progress(client, f"writes-{uuid.uuid4().hex[:8]}", "run-1", writes)


def test_writes_go_at_once_unless_sent_behind(client: redis.Redis) -> None:
    at_once = progress(client, ProgressWrites(client))
    at_once.set("shop", phase="Detaching")
    [reading] = at_once.read(["shop"])
    assert reading.status.phase.value == "Detaching" and reading.updated is not None


def test_writes_sent_behind_land_together_in_order_when_flushed(client: redis.Redis) -> None:
    writes = ProgressWrites(client)
    writes.send_behind(60)  # no background send within the test: only the flush sends
    behind = progress(client, writes)
    behind.phase("shop", NamespacePhase.BACKING_UP, "list objects")
    behind.count("shop", "backedUp", "configmaps", 18)
    behind.count("shop", "backedUp", "configmaps", 18)  # the same unit again (a redelivery)
    behind.phase("shop", NamespacePhase.DETACHING, "delete owners (orphan)")
    [before] = behind.read(["shop"])
    assert before.updated is None and before.status.counts.backed_up == 0

    writes.flush()

    [after] = behind.read(["shop"])
    assert after.status.phase.value == "Detaching", "the later phase wins: the writes kept their order"
    assert after.status.step == "delete owners (orphan)"
    assert after.status.counts.backed_up == 18
    assert after.updated is not None
    assert all(client.ttl(f"{behind.prefix}:{key}") > 0 for key in ("ns:shop", "count:shop:backedUp"))


def test_a_worker_sends_its_writes_within_the_interval_without_a_flush(client: redis.Redis) -> None:
    writes = ProgressWrites(client)
    writes.send_behind(0.05)
    behind = progress(client, writes)
    behind.set("shop", step="seal backup")
    deadline = time.monotonic() + 5
    while behind.read(["shop"])[0].status.step != "seal backup":
        assert time.monotonic() < deadline, "the background send never came"
        time.sleep(0.01)


def test_writes_redis_refused_are_kept_in_order_for_the_next_flush(client: redis.Redis) -> None:
    writes = ProgressWrites(redis.Redis.from_url(UNUSED_PORT_URL, socket_connect_timeout=0.2))
    writes.send_behind(60)
    behind = progress(client, writes)
    behind.set("shop", backupLocation="/backups/shop.tar.gz")
    behind.set("shop", step="second")
    with pytest.raises(redis.ConnectionError):
        writes.flush()

    writes.client = client  # Redis is back
    behind.set("shop", step="third")
    writes.flush()

    [reading] = behind.read(["shop"])
    assert reading.status.backup_location == "/backups/shop.tar.gz", "the refused writes were kept"
    assert reading.status.step == "third", "and sent before the later one"
