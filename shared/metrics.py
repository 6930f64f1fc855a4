"""Prometheus metrics of the workers and the watcher, each process serving its own `/metrics`.

Counters are fed where the facts already are, so nothing here decides anything about a migration:
objects by `Progress.count` (once per unit of work, since Celery delivers at least once, and as each unit
is done, so a running step's objects show while it runs), Kubernetes requests and retries by the `Kube`
client, task durations, tasks in progress, failures and compensation outcomes by the worker's task hooks
(services/task_metrics.py: this module knows nothing of Celery),
namespaces and policies by phase by the watcher from the policy status it wrote.

Step durations are end to end and per namespace, whatever task, worker or delivery did the work: a step's
first task records its start in Redis beside the namespace's progress (`StepClock`), and the step's end
(its last task succeeding, or any of its tasks failing) observes the time since then once, however many
times Celery delivers either. Steps: backup (`backup.run`), detach (`detach.run`), rebuild (from
`rebuild.start` to the end of `rebuild.verify`), compensate and rollback (their task, retries included).

Queue lengths are read by the watcher from Redis on each scrape (`QueueLengths`), so the kit in
deploy/monitoring needs no redis-exporter. No `_created` series are exported.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import prometheus_client
import redis
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.models import NamespacePhase, PolicyPhase
from shared.models.conditions import CONTROLLED_IN_MEMBER, is_true

prometheus_client.disable_created_metrics()

PREFIX = "kosmos_promote."
COMPENSATE = f"{PREFIX}rollback.compensate"
STEP_OF_COUNT = {"backedUp": "backup", "detached": "detach", "rebuilt": "rebuild"}
"""`Progress.count` kinds -> the `step` label, named like the queues."""
TASKS = (
    "backup.run",
    "detach.run",
    "rebuild.start",
    "rebuild.tiers",
    "rebuild.batch",
    "rebuild.tier_done",
    "rebuild.verify",
    "rollback.compensate",
    "rollback.namespace",
)
"""Every task, as `<queue>.<task>` (the `task` label); their series exist from the worker's start."""
STEPS = ("backup", "detach", "rebuild", "compensate", "rollback")
STEP_STARTED_BY = {
    "backup.run": "backup",
    "detach.run": "detach",
    "rebuild.start": "rebuild",
    "rollback.compensate": "compensate",
    "rollback.namespace": "rollback",
}
STEP_ENDED_BY = {
    "backup.run": "backup",
    "detach.run": "detach",
    "rebuild.verify": "rebuild",
    "rollback.compensate": "compensate",
    "rollback.namespace": "rollback",
}
OUTCOMES = ("succeeded", "failed")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

OBJECTS = Counter(
    "kpromote_objects_total", "Objects handled, counted once per unit of work.", ["step", "resource"]
)
STEP_DURATION = Histogram(
    "kpromote_step_duration_seconds",
    "End-to-end duration of one step of one namespace (backup, detach, rebuild = rebuild.start to the end "
    "of verify, compensate, rollback), observed once when the step ends, by outcome.",
    ["step", "outcome"],
    buckets=DURATION_BUCKETS,
)
STEPS_STARTED = Counter(
    "kpromote_steps_started_total", "Steps of a namespace started (counted once per namespace).", ["step"]
)
TASK_DURATION = Histogram(
    "kpromote_task_duration_seconds",
    "Run time of one Celery task (`<queue>.<task>`), whatever its outcome.",
    ["task"],
    buckets=DURATION_BUCKETS,
)
TASKS_IN_PROGRESS = Gauge(
    "kpromote_tasks_in_progress", "Tasks this worker is running now (`<queue>.<task>`).", ["task"]
)
FAILURES = Counter("kpromote_failures_total", "Tasks that failed, by task (`<queue>.<task>`).", ["task"])
COMPENSATIONS = Counter(
    "kpromote_compensations_total",
    "Compensations of failed namespaces: rolled_back, failed_rollback (left for a person), retry, error.",
    ["outcome"],
)
API_REQUESTS = Counter(
    "kpromote_api_requests_total",
    "Kubernetes API answers, by cluster, HTTP verb and code.",
    ["cluster", "verb", "code"],
)
API_RETRIES = Counter("kpromote_api_retries_total", "Kubernetes API requests repeated.", ["cluster"])
NAMESPACES = Gauge("kpromote_namespaces", "Namespaces of existing policies, by phase.", ["phase"])
POLICY_PHASE = Gauge(
    "kpromote_policy_phase",
    "1 for the phase each PromotePolicy is in, 0 for the others.",
    ["policy", "phase"],
)
PODS_CONTROLLED_IN_MEMBER = Gauge(
    "kpromote_policy_controlled_in_member",
    "1 while promoted pods of a completed namespace of the policy have a controller in the member again "
    "(its condition ControlledInMember: an owner put back there manages them beside the control plane).",
    ["policy"],
)
STALLS = Counter(
    "kpromote_stalls_total",
    "Namespaces the watchdog found without progress for KPROMOTE_STALL_TIMEOUT (then resumed, "
    "compensated or re-published), by policy.",
    ["policy"],
)
COMPENSATION_OUTCOMES = ("rolled_back", "failed_rollback", "retry", "error")

log = logging.getLogger(__name__)
_BATCH_OFFSET = re.compile(r"\[\d+\]$")
_policies: dict[str, list[str]] = {}
_policy_phases: dict[str, set[str]] = {}
_policies_lock = threading.Lock()


def serve(port: int) -> bool:
    """Serve `/metrics` on all interfaces (Prometheus scrapes pods), in a daemon thread; 0 disables.

    A port already taken (two workers on one host network) costs the endpoint, not the process: the
    work matters more than its metrics, so this logs a warning and returns False."""
    if not port:
        return False
    try:
        start_http_server(port)
    except OSError as error:
        log.warning(
            "metrics port %d is not available (%s): running on without /metrics; set "
            "KPROMOTE_METRICS_PORT / KPROMOTE_WATCHER_METRICS_PORT to a free port (0 disables it)",
            port,
            error.strerror or error,
        )
        return False
    return True


SERIES_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum", ""),
}


def exported_names(registry: prometheus_client.CollectorRegistry = REGISTRY) -> set[str]:
    """Every series name a kosmos-promote process may serve (a counter's `_total`, a histogram's
    `_bucket`, `_count` and `_sum`; no `_created`): the registry's, plus the queue collector's, which only
    the watcher registers. What a dashboard or an alert may name."""
    families: list[Any] = list(QueueLengths._families())
    names: set[str] = set()
    for collector, registered in list(registry._collector_to_names.items()):  # no public listing
        describe = getattr(collector, "describe", None)
        if describe is None:  # the process and platform collectors: their names as registered
            names.update(registered)
        else:
            families.extend(describe())
    for family in families:
        names.update(family.name + suffix for suffix in SERIES_SUFFIXES.get(family.type, ("",)))
    return {name for name in names if not name.endswith("_created")}


# ------------------------------------------------------------------------------------ objects, API
def count_objects(kind: str, unit: str, value: int) -> None:
    """A unit recorded for the first time by `Progress.count`.

    Units name the resource, decorated by the step: `related <type>` for cluster objects a backup
    pulled in, `<type>[<offset>]` for a rebuild batch; the label is the bare resource.
    """
    resource = _BATCH_OFFSET.sub("", unit.removeprefix("related "))
    OBJECTS.labels(STEP_OF_COUNT.get(kind, kind), resource).inc(value)


# --------------------------------------------------------------------------------------- watcher
def observe_policy(type: str | None, name: str, status: Mapping[str, Any], **_: Any) -> None:
    """kopf event handler of the watcher: every PromotePolicy event carries the status as written, so
    the gauges follow the status (including the watcher's own patches) without polling anything."""
    with _policies_lock:
        if type == "DELETED":
            _policies.pop(name, None)
            for phase in _policy_phases.pop(name, set()):
                POLICY_PHASE.remove(name, phase)
            PODS_CONTROLLED_IN_MEMBER.remove(name)
        else:
            controlled = is_true(status.get("conditions"), CONTROLLED_IN_MEMBER)
            PODS_CONTROLLED_IN_MEMBER.labels(name).set(1 if controlled else 0)
            _policies[name] = [ns.get("phase") or "Pending" for ns in status.get("namespaces") or ()]
            current = status.get("phase") or PolicyPhase.PENDING.value
            phases = _policy_phases.setdefault(name, set())
            phases.update(phase.value for phase in PolicyPhase)
            phases.add(current)
            for phase in phases:
                POLICY_PHASE.labels(name, phase).set(1 if phase == current else 0)
        tally = Tally(phase for phases in _policies.values() for phase in phases)
        for phase in NamespacePhase:
            NAMESPACES.labels(phase.value).set(tally.get(phase.value, 0))


def namespace_stalled(policy: str) -> None:
    """The watchdog found a namespace of `policy` without progress for the stall timeout."""
    STALLS.labels(policy).inc()


class QueueLengths(Collector):
    """The Celery queues' backlog, read from Redis when Prometheus scrapes the watcher: one LLEN per queue
    (Celery's Redis transport keeps each queue as a list named like it, under the key prefix) and one HLEN
    of the messages delivered but not yet acknowledged, in one round trip. Redis not answering makes
    `kpromote_broker_up` 0 and leaves the lengths out rather than failing the scrape."""

    def __init__(
        self, client: Callable[[], redis.Redis], queues: Iterable[str], key_prefix: str = ""
    ) -> None:
        self.client = client
        self.queues = tuple(queues)
        self.key_prefix = key_prefix

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lengths, unacked, up = self._families()
        try:
            pipe = self.client().pipeline(transaction=False)
            for queue in self.queues:
                pipe.llen(self.key_prefix + queue)
            pipe.hlen(self.key_prefix + "unacked")
            *counts, delivered = pipe.execute()
        except (redis.RedisError, OSError) as error:
            log.debug("queue lengths not read: %s", error)
            up.add_metric([], 0)
            yield up
            return
        for queue, count in zip(self.queues, counts, strict=True):
            lengths.add_metric([queue], count)
        unacked.add_metric([], delivered)
        up.add_metric([], 1)
        yield from (lengths, unacked, up)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "kpromote_queue_length", "Tasks waiting in each Celery queue (Redis LLEN).", labels=["queue"]
            ),
            GaugeMetricFamily(
                "kpromote_tasks_unacked",
                "Tasks delivered to a worker and not yet acknowledged (running, or prefetched).",
            ),
            GaugeMetricFamily("kpromote_broker_up", "1 when the watcher could read the queues from Redis."),
        )


def watch_queues(
    broker_url: str,
    queues: Iterable[str],
    key_prefix: str = "",
    registry: prometheus_client.CollectorRegistry = REGISTRY,
) -> QueueLengths:
    """Register the queue collector (the watcher's; one per process). Its own client with short timeouts:
    a scrape must not hang on a Redis that does not answer."""
    made: list[redis.Redis] = []

    def client() -> redis.Redis:
        if not made:
            made.append(redis.Redis.from_url(broker_url, socket_timeout=3, socket_connect_timeout=3))
        return made[0]

    collector = QueueLengths(client, queues, key_prefix)
    registry.register(collector)
    return collector


# ------------------------------------------------------------------------------------ step clock
class StepClock:
    """When each step of a namespace started, in Redis beside its progress, so that the step's end,
    perhaps on another worker, observes its whole duration, once.

    `kpromote:<policy>:<run>:steps:<namespace>` holds `<step>:start` (the first start wins: a
    redelivered or resumed first task does not move it) and `<step>:observed` (set by the first end, which
    alone observes: a redelivered last task, or a second failing batch, does not observe again)."""

    KEY_TTL = 14 * 24 * 3600

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @staticmethod
    def key(policy: str, run_id: str, namespace: str) -> str:
        return f"kpromote:{policy}:{run_id}:steps:{namespace}"

    def start(self, policy: str, run_id: str, namespace: str, step: str, now: float | None = None) -> bool:
        """Record the step's start unless it has one; True when this was the first."""
        key = self.key(policy, run_id, namespace)
        pipe = self.client.pipeline()
        pipe.hsetnx(key, f"{step}:start", repr(time.time() if now is None else now))
        pipe.expire(key, self.KEY_TTL)
        first = bool(pipe.execute()[0])
        if first:
            STEPS_STARTED.labels(step).inc()
        return first

    def end(
        self,
        policy: str,
        run_id: str,
        namespace: str,
        step: str,
        outcome: str,
        now: float | None = None,
    ) -> float | None:
        """Observe the step's duration if no end has yet; the seconds observed, else None."""
        key = self.key(policy, run_id, namespace)
        pipe = self.client.pipeline()  # MULTI/EXEC: one end claims the observation
        pipe.hsetnx(key, f"{step}:observed", outcome)
        pipe.hget(key, f"{step}:start")
        pipe.expire(key, self.KEY_TTL)
        first, started, _ = pipe.execute()
        if not first or started is None:  # observed already, or the start was lost with Redis
            return None
        seconds = max(0.0, (time.time() if now is None else now) - float(started))
        STEP_DURATION.labels(step, outcome).observe(seconds)
        return seconds
