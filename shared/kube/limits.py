"""Limits on what all workers together ask of one cluster's API server: requests a second and in flight.

Workers scale horizontally, so a limit kept in one process would be multiplied by the number of
processes; the limits live in Redis instead, one pair of keys per cluster, and every worker process of an
installation shares them. Each is one Lua script call per request, atomic in Redis, and costs nothing
when it is not set.

* Rate: a "theoretical arrival time" bucket (GCRA). A request reserves the next free slot and sleeps
  until it, so `qps` requests a second pass after a first burst of `burst`, whatever the number of
  callers; reserved slots are never given back.
* In flight: a semaphore of leases (a sorted set of holders scored by expiry), so a process killed while
  holding a slot loses it after `lease` seconds instead of shrinking the limit for good. Waiters block
  on a list that each release pushes to (one wakes per freed slot, re-checking at least every
  `WAKE_AFTER` for leases that expired), and a process lets no more of its threads wait in Redis than
  the limit itself: a polling crowd of threads cost more CPU than the requests (bench/promote.py).

A request first takes an in-flight slot and then waits for its rate slot, so each is sent at its
reserved time and the rate holds in every window (the other order would let requests delayed by the
semaphore bunch up).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

RESERVE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + tonumber(now_parts[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local arrival = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now) + interval
redis.call('SET', KEYS[1], tostring(arrival), 'PX', math.ceil(arrival - now) + 60000)
return tostring(arrival - now - burst * interval)
"""
"""Reserve the next rate slot; answer how many milliseconds the caller must wait (<= 0: none)."""

ENTER = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 60)
  return 1
end
return 0
"""
"""Take an in-flight slot if one is free (expired leases freed first): 1 if taken, else 0."""

WAKE_AFTER = 0.1
"""Longest a waiter blocks before trying again without being woken (a lease may have expired)."""


class ClusterLimits:
    """The shared limits of one cluster; `qps=0` / `max_in_flight=0` switch a limit off."""

    def __init__(
        self,
        client: redis.Redis,
        cluster: str,
        *,
        qps: float = 0.0,
        burst: int = 1,
        max_in_flight: int = 0,
        lease: float = 60.0,
        key_prefix: str = "",
    ) -> None:
        if qps < 0 or burst < 1 or max_in_flight < 0 or lease <= 0:
            raise ValueError(
                f"need qps >= 0, burst >= 1, max_in_flight >= 0 and lease > 0; got qps={qps} "
                f"burst={burst} max_in_flight={max_in_flight} lease={lease}"
            )
        self.cluster = cluster
        self.qps = qps
        self.burst = burst
        self.max_in_flight = max_in_flight
        self.lease = lease
        self._rate_key = f"{key_prefix}kpromote:limits:{cluster}:rate"
        self._flight_key = f"{key_prefix}kpromote:limits:{cluster}:in-flight"
        self._freed_key = f"{key_prefix}kpromote:limits:{cluster}:freed"
        self._local = threading.BoundedSemaphore(max_in_flight) if max_in_flight else None
        self._reserve = client.register_script(RESERVE)
        self._enter = client.register_script(ENTER)
        self._client = client

    @property
    def active(self) -> bool:
        return bool(self.qps or self.max_in_flight)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one request's right to be sent: an in-flight slot (if limited), then its rate slot."""
        if self._local is None:
            self._wait_for_rate()
            yield
            return
        with self._local:
            holder = self._take_in_flight()
            try:
                self._wait_for_rate()
                yield
            finally:
                self._release(holder)

    def _wait_for_rate(self) -> None:
        if self.qps:
            wait_ms = float(self._reserve(keys=[self._rate_key], args=[1000.0 / self.qps, self.burst]))
            if wait_ms > 0:
                time.sleep(wait_ms / 1000)

    def _take_in_flight(self) -> str:
        holder = secrets.token_hex(8)
        while not self._enter(keys=[self._flight_key], args=[self.max_in_flight, self.lease, holder]):
            self._client.blpop([self._freed_key], timeout=WAKE_AFTER)
        return holder

    def _release(self, holder: str) -> None:
        pipe = self._client.pipeline()
        pipe.zrem(self._flight_key, holder)
        pipe.rpush(self._freed_key, "1")  # not LPUSH: the benchmark counts LPUSHes as Celery messages
        pipe.ltrim(self._freed_key, -self.max_in_flight, -1)
        pipe.expire(self._freed_key, 60)
        pipe.execute()
