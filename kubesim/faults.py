"""Latency, fault injection and the request log: how tests make the API misbehave and see what was asked.

A fault rule matches requests by verb, resource, namespace and name, and fails the Nth match, a share of
matches (seeded, so runs repeat), or every match, with a chosen HTTP status or a hang ("timeout").
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

REQUEST_LOG_SIZE = 500_000


@dataclass
class RequestInfo:
    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    user_agent: str = ""

    @property
    def group_resource(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


@dataclass
class FaultRule:
    status: int | str
    """HTTP status to answer with, or "timeout" to hang and then drop the connection."""
    verb: str = "*"
    resource: str = "*"
    """Plural (`pods`), `resource.group` (`deployments.apps`) or `*`."""
    subresource: str = "*"
    namespace: str = "*"
    name: str = "*"
    user_agent: str = "*"
    """A prefix of the client's User-Agent (`kosmos-promote`: every request of the tool's workers), or `*`."""
    nth: int | None = None
    """Fail only the Nth matching request (1-based)."""
    ratio: float | None = None
    """Fail this share of matching requests."""
    times: int | None = None
    """Stop after failing this many requests (default: once for `nth`, unlimited otherwise)."""
    retry_after: int | None = None
    timeout_seconds: float = 30.0
    message: str = "injected fault"
    seed: int = 0
    id: int = 0
    matched: int = 0
    fired: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)
        if self.nth is not None and self.times is None:
            self.times = 1

    def _matches(self, info: RequestInfo) -> bool:
        return (
            self.verb in ("*", info.verb)
            and self.resource in ("*", info.resource, info.group_resource)
            and self.subresource in ("*", info.subresource)
            and self.namespace in ("*", info.namespace)
            and self.name in ("*", info.name)
            and (self.user_agent == "*" or info.user_agent.startswith(self.user_agent))
        )

    def should_fire(self, info: RequestInfo) -> bool:
        if not self._matches(info):
            return False
        self.matched += 1
        if self.times is not None and self.fired >= self.times:
            return False
        if self.nth is not None and self.matched != self.nth:
            return False
        if self.ratio is not None and self._rng.random() >= self.ratio:
            return False
        self.fired += 1
        return True

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


class Faults:
    """Per-server fault rules, latency and request accounting."""

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.latency_ms = latency_ms
        self.rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self.log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.counters: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0

    def add(self, **rule: Any) -> FaultRule:
        fault = FaultRule(**rule)
        fault.id = next(self._ids)
        self.rules.append(fault)
        return fault

    def clear(self) -> None:
        self.rules.clear()

    def pick(self, info: RequestInfo) -> FaultRule | None:
        for rule in self.rules:
            if rule.should_fire(info):
                return rule
        return None

    def started(self) -> float:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return time.time()

    def finished(
        self, info: RequestInfo, started: float, code: int, fault: FaultRule | None, *, informer_lag: float
    ) -> None:
        """`informer_lag` (seconds) is logged with each request, so a test reading the log knows how far
        behind the controllers were when it was served."""
        self.in_flight -= 1
        ended = time.time()
        self.counters[f"{info.verb} {info.group_resource}"] += 1
        self.log.append(
            {
                "seq": next(self._seq),
                "start": started,
                "end": ended,
                "verb": info.verb,
                "group": info.group,
                "resource": info.resource,
                "subresource": info.subresource,
                "namespace": info.namespace,
                "name": info.name,
                "user_agent": info.user_agent,
                "code": code,
                "fault": fault.id if fault else None,
                "informer_lag_ms": informer_lag * 1000,
            }
        )

    def stats(self) -> dict[str, Any]:
        return {
            "total": sum(self.counters.values()),
            "by_verb_resource": dict(self.counters),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "latency_ms": self.latency_ms,
        }
